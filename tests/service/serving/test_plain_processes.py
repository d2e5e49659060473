"""Where no sandbox can be made (LABTRAIN_PREDICT_SANDBOX=off here), a model still answers from a
plain process of its own, held to its memory and its time: the 2 GB and the endless models of
tests/service/code/scripts/hostile_models.py are stopped there too, and the linear one answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.serving.process import ModelProcess, PredictionLimitExceeded, ProcessLimits

HOSTILE = Path(__file__).parents[1] / "code" / "scripts" / "hostile_models.py"
FIELDS = {
    "framework": "onnx",
    "task": "output",
    "input": {"shape": [4], "dtype": "float32"},
    "meta": {"outputs_probabilities": False},
    "classes": None,
    "class_names": None,
}


def made(tmp_path: Path, *args: str) -> Path:
    """The model hostile_models.py writes, run here as a plain script."""
    outputs = tmp_path / args[0]
    env = {**os.environ, "JOB_OUTPUTS_DIR": str(outputs), "PYTHONPATH": str(Path(__file__).parents[3])}
    subprocess.run([sys.executable, str(HOSTILE), *args], env=env, check=True, capture_output=True, timeout=60)
    return outputs / "model" / "model.onnx"


def answer(path: Path, memory_mb: int = 400, time_limit_s: float = 2) -> dict:
    process = ModelProcess(
        "service.code.predict:OnnxPredictor", {"id": "m", **FIELDS}, path, limits(memory_mb, time_limit_s)
    )
    try:
        process.start()
        return process.predict([[1, 2, 3, 4]], None)
    finally:
        process.close()


def limits(memory_mb: int, time_limit_s: float) -> ProcessLimits:
    return ProcessLimits(memory_mb=memory_mb, cpus=1, time_limit_s=time_limit_s, load_time_limit_s=60, sandbox="off")


@pytest.mark.fast
def test_a_plain_process_answers(tmp_path):
    assert answer(made(tmp_path, "linear")) == {"predictions": [[10.0, 10.0]]}


def test_a_plain_process_is_held_to_its_memory_and_its_time(tmp_path):
    with pytest.raises(PredictionLimitExceeded) as memory:
        answer(made(tmp_path, "memory"))
    with pytest.raises(PredictionLimitExceeded) as time:
        answer(made(tmp_path, "loop"))
    assert memory.value.details["limit"] == "memory" and time.value.details["limit"] == "time"


def test_the_controls_answer_where_the_limits_allow(tmp_path):
    assert answer(made(tmp_path, "loop", "10")) == {"predictions": [[11.0, 12.0, 13.0, 14.0]]}
    # An rlimit counts what is reserved, not what is touched: onnxruntime's arena asks for more.
    # Filling and summing 2 GB takes seconds on a busy machine; the time allowed is not what is
    # under test here, so it is generous.
    big = answer(made(tmp_path, "memory"), memory_mb=8000, time_limit_s=120)
    assert min(big["predictions"][0]) > 2**26
