"""What a worker accepts as a model from students' code (outputs/model/, written by the job and
so untrusted), and how the API lays pictures out for an ONNX model, without a service."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.code.onnx_check import ModelRefused
from service.code.onnx_check import check as check_onnx_file
from service.code.predict import image_layout
from workers.trainers.base import JobFailed
from workers.trainers.code.served import saved_model

pytestmark = pytest.mark.fast


def linear_model(*, inputs: int = 1, domain: str = "", width: int = 4) -> onnx.ModelProto:
    """y = x @ W for x of shape (batch, width): the smallest model a student could serve."""
    weight = numpy_helper.from_array(np.ones((width, 2), dtype=np.float32), "W")
    graph_inputs = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, ["batch", width]) for i in range(inputs)]
    node = helper.make_node("MatMul", ["x0", "W"], ["y"], domain=domain)
    graph = helper.make_graph(
        [node], "g", graph_inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])], [weight]
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets)


def saved(folder: Path, model: onnx.ModelProto, **manifest) -> Path:
    (folder / "model").mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model" / "model.onnx"))
    values = {
        "format": "onnx",
        "trained_with": "pytorch",
        "file": "model.onnx",
        "input": {"shape": [4], "dtype": "float32"},
        "output": {"shape": [2]},
        "task": "classification",
        "class_names": ["no", "yes"],
        **manifest,
    }
    (folder / "model" / "model.json").write_text(json.dumps(values))
    return folder


def refusal(call) -> str:
    with pytest.raises((JobFailed, ModelRefused)) as refused:
        call()
    assert not isinstance(refused.value, JobFailed) or refused.value.code == "model_export_failed"
    return str(refused.value)


def test_a_plain_model_becomes_a_served_model(tmp_path):
    trained = saved_model(saved(tmp_path, linear_model()), {"accuracy": 0.5}, {})
    assert trained is not None
    assert trained.framework == "onnx" and trained.class_names == ["no", "yes"] and trained.classes == [0, 1]


def test_no_manifest_means_no_model(tmp_path):
    assert saved_model(tmp_path, {}, {}) is None


def test_weights_kept_outside_the_file_are_refused(tmp_path):
    model = linear_model()
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True, size_threshold=0, location="w.bin")
    assert "external data" in refusal(lambda: check_onnx_file(tmp_path / "m.onnx", [4]))


def test_operators_outside_onnx_are_refused(tmp_path):
    onnx.save(linear_model(domain="com.student.ops"), str(tmp_path / "m.onnx"))
    assert "com.student.ops" in refusal(lambda: check_onnx_file(tmp_path / "m.onnx", [4]))


def test_two_inputs_and_a_shape_other_than_recorded_are_refused(tmp_path):
    onnx.save(linear_model(inputs=2), str(tmp_path / "two.onnx"))
    assert "2 inputs" in refusal(lambda: check_onnx_file(tmp_path / "two.onnx", [4]))
    onnx.save(linear_model(width=5), str(tmp_path / "five.onnx"))
    assert "not the [4]" in refusal(lambda: check_onnx_file(tmp_path / "five.onnx", [4]))


def test_a_file_that_is_not_onnx_is_refused(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"\x00not a model" * 10)
    assert "DecodeError" in refusal(lambda: check_onnx_file(tmp_path / "m.onnx", [4]))


@pytest.mark.parametrize(
    "change",
    [
        {"file": "../../../etc/passwd"},
        {"format": "pickle"},
        {"input": {"shape": [0], "dtype": "float32"}},
        {"input": {"shape": [4], "dtype": "object"}},
        {"preprocess": {"size": [28, 28], "std": [0.0]}},
        {"extra": "field"},
    ],
)
def test_a_manifest_save_model_would_not_write_is_refused(tmp_path, change):
    assert "save_model" in refusal(lambda: saved_model(saved(tmp_path, linear_model(), **change), {}, {}))


def test_a_model_file_that_is_a_link_is_refused(tmp_path):
    folder = saved(tmp_path, linear_model())
    (folder / "model" / "model.onnx").rename(tmp_path / "elsewhere.onnx")
    (folder / "model" / "model.onnx").symlink_to(tmp_path / "elsewhere.onnx")
    assert "not model/model.onnx" in refusal(lambda: saved_model(folder, {}, {}))


def test_class_names_must_match_the_outputs(tmp_path):
    folder = saved(tmp_path, linear_model(), class_names=["one", "two", "three"])
    assert "3 class names for a model of 2 classes" in refusal(lambda: saved_model(folder, {}, {}))


@pytest.mark.parametrize(
    ("shape", "preprocess", "layout"),
    [
        ([1, 28, 28], None, (28, 28, 1, "chw")),  # PyTorch's
        ([28, 28, 1], None, (28, 28, 1, "hwc")),  # Keras's
        ([3, 32, 32], None, (32, 32, 3, "chw")),
        ([28, 28], None, (28, 28, 1, "hw")),
        ([784], None, (28, 28, 1, "flat")),  # a flattened MNIST digit
        ([3072], {"size": [32, 32], "channels": 3}, (32, 32, 3, "flat")),
        ([3072], None, None),  # a flat vector of unknown size is not a picture
        ([10], {"size": [32, 32]}, None),
        ([40, 1], None, None),  # a sequence of 40 values, not a picture
        ([40, 3, 1], None, None),
    ],
)
def test_pictures_are_laid_out_as_the_model_takes_them(shape, preprocess, layout):
    assert image_layout(shape, preprocess) == layout
