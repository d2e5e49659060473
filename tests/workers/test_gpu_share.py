"""A job's share of a GPU: the limits each framework is given (the GPU simulated: these CPU
builds have none), the environment a code job gets, and GPU out-of-memory errors told apart
from the rest, from real exception classes and from a program's stderr."""

from __future__ import annotations

import types

import pytest
import tensorflow as tf
import torch

from workers import gpu_share
from workers.trainers.base import Allotment, Cancelled, JobFailed

pytestmark = pytest.mark.fast

H200_MB = 143_771


@pytest.fixture
def cuda(monkeypatch):
    """A CUDA device of an H200's size; the fractions set are recorded."""
    fractions = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda index: types.SimpleNamespace(total_memory=H200_MB * gpu_share.MB)
    )
    monkeypatch.setattr(
        torch.cuda,
        "set_per_process_memory_fraction",
        lambda fraction, device=None: fractions.append((fraction, device)),
    )
    return fractions


def test_pytorch_gets_its_share_as_a_fraction_of_the_card(cuda):
    fraction = gpu_share.limit_torch(4096, torch.device("cuda"))
    assert fraction == pytest.approx(4096 / H200_MB)
    assert cuda == [(pytest.approx(4096 / H200_MB), 0)]
    gpu_share.limit_torch(2048, torch.device("cuda", 0))
    assert cuda[-1] == (pytest.approx(2048 / H200_MB), 0)


def test_pytorch_is_left_alone_without_a_share_a_gpu_or_a_cuda_device(cuda, monkeypatch):
    assert gpu_share.limit_torch(None, torch.device("cuda")) is None
    assert gpu_share.limit_torch(4096, torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_share.limit_torch(4096) is None
    assert cuda == []


def test_a_share_larger_than_the_card_is_the_whole_card(cuda):
    assert gpu_share.limit_torch(H200_MB * 2) == 1.0


@pytest.fixture
def tf_gpus(monkeypatch):
    """Two visible GPUs for TensorFlow; the logical devices configured are recorded."""
    gpus = ["GPU:0", "GPU:1"]
    configured = []
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(
        tf.config, "set_logical_device_configuration", lambda device, configs: configured.append((device, configs))
    )
    return configured


def test_tensorflow_gets_a_logical_device_of_its_share_on_the_first_gpu(tf_gpus):
    assert gpu_share.limit_tensorflow(3000) is True
    [(device, [config])] = tf_gpus
    assert device == "GPU:0" and config.memory_limit == 3000


def test_tensorflow_without_a_share_or_a_gpu_gets_no_limit(tf_gpus, monkeypatch):
    assert gpu_share.limit_tensorflow(None) is False
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    assert gpu_share.limit_tensorflow(3000) is False
    assert tf_gpus == []


def test_tensorflow_already_initialised_keeps_what_it_has(monkeypatch):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"])

    def too_late(device, configs):
        raise RuntimeError("Virtual devices cannot be modified after being initialized")

    monkeypatch.setattr(tf.config, "set_logical_device_configuration", too_late)
    assert gpu_share.limit_tensorflow(3000) is False


def test_the_keras_trainer_sets_the_limit_instead_of_memory_growth(tf_gpus, monkeypatch):
    from workers.trainers.network import keras_trainer

    grown = []
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda gpu, on: grown.append(gpu))
    monkeypatch.setattr(keras_trainer, "_train_keras", lambda run, data, report, allotted: "trained")
    assert keras_trainer.train_keras(None, None, None, Allotment(gpu_memory_mb=2500)) == "trained"
    assert [(d, c[0].memory_limit) for d, c in tf_gpus] == [("GPU:0", 2500)] and grown == []
    keras_trainer.train_keras(None, None, None, Allotment())  # the whole card: memory growth, as before
    assert grown == ["GPU:0", "GPU:1"]


def test_the_torch_trainer_holds_a_cuda_job_to_its_share(cuda, monkeypatch):
    from workers.trainers.network import torch_trainer

    seen = []
    monkeypatch.setattr(torch_trainer, "_train_torch", lambda run, data, report, allotted, device: seen.append(device))
    torch_trainer.train_torch(types.SimpleNamespace(device="gpu"), None, None, Allotment(gpu_memory_mb=1024))
    assert cuda == [(pytest.approx(1024 / H200_MB), 0)] and seen[0].type == "cuda"


def real_torch_oom() -> BaseException:
    return torch.cuda.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 139.81 GiB"
    )


def real_tf_oom(device: str = "GPU:0") -> BaseException:
    return tf.errors.ResourceExhaustedError(
        None,
        None,
        f"OOM when allocating tensor with shape[60000,784] and type float on "
        f"/job:localhost/replica:0/task:0/device:{device} by allocator GPU_0_bfc",
    )


def test_gpu_out_of_memory_errors_are_told_from_the_frameworks_own_exceptions():
    assert gpu_share.is_gpu_oom(real_torch_oom())
    assert gpu_share.is_gpu_oom(real_tf_oom())
    assert gpu_share.is_gpu_oom(RuntimeError("CUDA error: out of memory"))  # older PyTorch, the driver's
    try:
        try:
            raise real_torch_oom()
        except Exception as inner:
            raise ValueError("the batch failed") from inner
    except ValueError as outer:
        assert gpu_share.is_gpu_oom(outer)  # what it was raised from counts


def test_other_errors_are_not_gpu_out_of_memory():
    assert not gpu_share.is_gpu_oom(MemoryError("Unable to allocate 3.00 GiB for an array"))
    assert not gpu_share.is_gpu_oom(ValueError("shapes (3,4) and (5,6) not aligned"))
    cpu = tf.errors.ResourceExhaustedError(
        None, None, "OOM when allocating tensor with shape[9] on /job:localhost/replica:0/task:0/device:CPU:0"
    )
    assert not gpu_share.is_gpu_oom(cpu)
    assert not gpu_share.is_gpu_oom(Cancelled())


def test_gpu_out_of_memory_in_a_programs_stderr():
    torch_tail = [
        '  File "train.py", line 40, in <module>',
        "    loss = model(x).sum()",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity "
        "of 139.81 GiB of which 1.2 GiB is free. Process 12 has 3.00 GiB memory in use.",
    ]
    tf_tail = [
        "tensorflow.python.framework.errors_impl.ResourceExhaustedError: {{function_node __wrapped__MatMul}} "
        "OOM when allocating tensor with shape[8192,8192] and type float on "
        "/job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc [Op:MatMul]",
    ]
    xla_tail = ["RESOURCE_EXHAUSTED: Out of memory while trying to allocate 17179869184 bytes."]
    for tail in (torch_tail, tf_tail, xla_tail, ["CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"]):
        assert gpu_share.is_gpu_oom_text(tail), tail
    for tail in (
        ["Traceback (most recent call last):", "ZeroDivisionError: division by zero"],
        ["numpy._core._exceptions._ArrayMemoryError: Unable to allocate 74.5 GiB for an array"],
        ["ResourceExhaustedError: OOM when allocating tensor with shape[9] on /job:localhost/device:CPU:0"],
        [],
    ):
        assert not gpu_share.is_gpu_oom_text(tail), tail


def test_a_gpu_out_of_memory_fails_the_job_with_its_own_code_and_the_rest_passes():
    with pytest.raises(JobFailed) as failed, gpu_share.failing_on_gpu_oom(4096):
        raise real_torch_oom()
    assert failed.value.code == "gpu_memory_exceeded"
    assert "4096 MB share" in failed.value.message and "resources.gpu_memory_mb" in failed.value.message
    with pytest.raises(JobFailed, match="more than the card has"), gpu_share.failing_on_gpu_oom(None):
        raise real_tf_oom()
    with pytest.raises(Cancelled), gpu_share.failing_on_gpu_oom(4096):
        raise Cancelled()
    with pytest.raises(ValueError), gpu_share.failing_on_gpu_oom(4096):
        raise ValueError("not about memory")


def test_a_code_jobs_environment_carries_its_share_and_the_mps_client_limits():
    assert gpu_share.sandbox_env(None, H200_MB) == {}
    env = gpu_share.sandbox_env(4096, H200_MB)
    assert env["LABTRAIN_GPU_MEMORY_MB"] == "4096"
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=4096M"
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "3"
    assert gpu_share.sandbox_env(100, H200_MB)["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "1"  # at least 1
    assert "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" not in gpu_share.sandbox_env(4096, None)  # size unknown
