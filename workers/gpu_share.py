"""Holding a job to its share of a GPU that other jobs use too.

A GPU worker runs several jobs on one card, each in its own process, each holding
`gpu_memory_mb` of it (Reporter.gpu_memory_mb; None: no GPU, or the whole card). A network
trainer holds its framework to that share before it trains: PyTorch through its caching
allocator's per-process fraction, TensorFlow through a logical device with a memory limit
(set before TensorFlow initialises the GPU, instead of memory growth: a device takes one or
the other). A code job gets the share in its environment (`sandbox_env`): the job-side module
applies the same limits (labtrain_job), and NVIDIA MPS clients their pinned-memory limit and
active-thread percentage where the worker runs an MPS daemon.

A job that allocates past its share gets its framework's out-of-memory error, which fails
that job alone with `gpu_memory_exceeded` (`failing_on_gpu_oom`, `is_gpu_oom_text`); its
neighbours on the card go on.

The frameworks load only inside these functions: the code trainer and the worker's main
process must not load them (nor create a CUDA context before a job's process forks).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from workers.trainers.base import JobFailed

MB = 1024 * 1024
GPU_MEMORY_ENV = "LABTRAIN_GPU_MEMORY_MB"

# What frameworks write when a GPU allocation fails (PyTorch, its cuBLAS and cuDNN handles,
# TensorFlow's allocator, XLA's).
_OOM_TEXTS = re.compile(
    r"CUDA out of memory|CUDA error: out of memory|torch(?:\.cuda)?\.OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED"
    r"|CUDNN_STATUS_ALLOC_FAILED|cudaErrorMemoryAllocation|CUDA_ERROR_OUT_OF_MEMORY"
    r"|by allocator GPU_\d+_bfc|Out of memory while trying to allocate",
)
# TensorFlow's message names the device; on the CPU it is the host's memory, not the GPU's.
_TF_OOM = re.compile(r"OOM when allocating(?![^\n]*device:CPU)")


def limit_torch(mb: int | None, device: Any = None) -> float | None:
    """Cap PyTorch's allocations on `device` (default: the current CUDA device) at `mb`: the
    fraction of the card set, or None where there is no share or no CUDA device."""
    import torch  # the job's own process only

    if mb is None or not torch.cuda.is_available():
        return None
    device = torch.device("cuda") if device is None else torch.device(device)
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    total_mb = torch.cuda.get_device_properties(index).total_memory / MB
    fraction = min(1.0, mb / total_mb)
    torch.cuda.set_per_process_memory_fraction(fraction, index)
    return fraction


def limit_tensorflow(mb: int | None) -> bool:
    """Give TensorFlow a logical GPU of `mb` on the first visible GPU. Must run before
    TensorFlow initialises its GPUs; a device takes a limit or memory growth, not both, so the
    caller asks for growth where this returns False (no share, no GPU, or too late)."""
    import tensorflow as tf  # the job's own process only

    if mb is None:
        return False
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return False
    try:
        tf.config.set_logical_device_configuration(gpus[0], [tf.config.LogicalDeviceConfiguration(memory_limit=mb)])
    except RuntimeError:  # already initialised in this process: it keeps what it has
        return False
    return True


def is_gpu_oom(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from) is a GPU running out of memory."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_framework_oom(current) or is_gpu_oom_text([str(current)]):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_framework_oom(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, getattr(torch.cuda, "OutOfMemoryError", ())):
        return True
    tf = sys.modules.get("tensorflow")
    exhausted = getattr(getattr(tf, "errors", None), "ResourceExhaustedError", None) if tf is not None else None
    return exhausted is not None and isinstance(exc, exhausted) and "device:CPU" not in str(exc)


def is_gpu_oom_text(lines: Iterable[str]) -> bool:
    """Whether a program's last lines of stderr (a code job's) show a GPU out-of-memory error."""
    text = "\n".join(lines)
    return bool(_OOM_TEXTS.search(text) or _TF_OOM.search(text))


def oom_message(mb: int | None) -> str:
    if mb is None:
        return (
            "the job ran out of GPU memory: it needs more than the card has; "
            "use a smaller batch size or a smaller model"
        )
    return (
        f"the job used more than its {mb} MB share of the GPU and its allocation failed; "
        "ask for more with resources.gpu_memory_mb, or use a smaller batch size or model"
    )


@contextmanager
def failing_on_gpu_oom(mb: int | None) -> Iterator[None]:
    """A GPU out-of-memory error inside becomes JobFailed("gpu_memory_exceeded"); anything else
    (a cancel, another failure) passes unchanged."""
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, JobFailed) and is_gpu_oom(exc):
            raise JobFailed("gpu_memory_exceeded", oom_message(mb)) from exc
        raise


def gpu_handle():
    """The NVML handle (nvidia-ml-py, which creates no CUDA context) of this worker's GPU: the
    first of CUDA_VISIBLE_DEVICES, by index or by UUID (a MIG instance); None where there is none."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
        return (
            pynvml.nvmlDeviceGetHandleByIndex(int(visible))
            if visible.isdigit()
            else pynvml.nvmlDeviceGetHandleByUUID(visible)
        )
    except Exception:  # no driver or no device: a CPU-only host
        return None


def gpu_details(handle) -> tuple[str | None, int | None]:
    """The GPU's name and memory in MB; (None, None) where NVML cannot tell."""
    if handle is None:
        return None, None
    import pynvml

    try:
        name = pynvml.nvmlDeviceGetName(handle)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total // MB
    except Exception:
        return None, None
    return (name.decode() if isinstance(name, bytes) else name), int(memory)


@cache
def gpu_total_mb() -> int | None:
    """This worker's GPU's memory in MB; None where it cannot tell."""
    return gpu_details(gpu_handle())[1]


def sandbox_env(mb: int | None, total_mb: int | None) -> dict[str, str]:
    """A code job's share in its environment: for labtrain_job (which applies it to the
    student's framework), TensorFlow (grow, never take the card at start) and the MPS client
    (pinned memory on the job's only visible device, and its share of the GPU's threads)."""
    if mb is None:
        return {}
    env = {
        GPU_MEMORY_ENV: str(mb),
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": f"0={mb}M",
    }
    if total_mb:
        env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(max(1, min(100, round(100 * mb / total_mb))))
    return env
