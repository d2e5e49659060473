"""What the worker does with a model a job left: it loads it once in a model's process of its own
(a real sandbox: bubblewrap and a cgroup), never in its own process. A hostile file is refused
there with a message that says why, and whatever the file tried happens nowhere on the host."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
import skops.io
from onnx import helper, numpy_helper
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from service.classic.predict import SklearnPredictor
from service.code.predict import OnnxPredictor
from service.core.config import Settings
from service.serving.check import ModelRefused, check_model
from tests.service.code.test_onnx_check import SECRET, external, indices, model
from tests.service.core.test_sklearn_files import Y_CLASS, X, call, skops_file, value

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a model's sandbox needs root here (bubblewrap and cgroups)")

SKLEARN_FIELDS = {"id": "candidate", "framework": "sklearn", "task": "classification", "meta": {}}
ONNX_FIELDS = {"id": "candidate", "framework": "onnx", "task": "output", "input": {"shape": [4], "dtype": "float32"}}


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env_map({"LABTRAIN_HOME": str(tmp_path / "home")})


def sklearn_fields(features: list[str]) -> dict:
    return {**SKLEARN_FIELDS, "input": {"features": features}, "classes": [0, 1, 2], "class_names": None}


def onnx_fields() -> dict:
    return {**ONNX_FIELDS, "meta": {"outputs_probabilities": False}, "classes": None, "class_names": None}


def test_a_real_model_loads_in_its_own_process(settings, tmp_path):
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, Y_CLASS)
    (tmp_path / "model.skops").write_bytes(skops.io.dumps(pipeline))
    check_model(settings, SklearnPredictor(), sklearn_fields(list(X.columns)), tmp_path / "model.skops")
    weight = numpy_helper.from_array(np.ones(4, np.float32), "W")
    onnx.save(model([], initializers=[weight]), tmp_path / "model.onnx")
    check_model(settings, OnnxPredictor(), onnx_fields(), tmp_path / "model.onnx")


def test_a_skops_file_that_writes_a_file_is_refused_and_writes_nothing(settings, tmp_path):
    target = tmp_path / "written-by-the-model.txt"
    (tmp_path / "model.skops").write_bytes(skops_file(call("numpy", "savetxt", value(str(target)), value([[1]]))))
    with pytest.raises(ModelRefused) as refused:
        check_model(settings, SklearnPredictor(), sklearn_fields(["a"]), tmp_path / "model.skops")
    assert "numpy.savetxt" in str(refused.value)
    assert not target.exists()


def test_an_onnx_file_that_reads_a_file_is_refused(settings, tmp_path):
    attack = model([], sparse=[helper.make_sparse_tensor(external("W"), indices("W_indices"), [4])])
    onnx.save(attack, tmp_path / "model.onnx")
    (tmp_path / "secret.bin").write_bytes(SECRET)
    with pytest.raises(ModelRefused) as refused:
        check_model(settings, OnnxPredictor(), onnx_fields(), tmp_path / "model.onnx")
    assert "external data" in str(refused.value)


def test_a_file_that_is_no_model_is_refused_with_what_went_wrong(settings, tmp_path):
    (tmp_path / "model.skops").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelRefused) as refused:
        check_model(settings, SklearnPredictor(), sklearn_fields(["a"]), tmp_path / "model.skops")
    assert "cannot be" in str(refused.value)
