"""Models answer from processes of their own, on a real deployment (PostgreSQL, Redis, a
dispatcher, a worker with its sandbox, the API): a model that asks for 2 GB on a prediction, or
loops 60 million times, is stopped at its process's limits with prediction_limit_exceeded, while
20 predictions at once on another model are answered, and the API neither grows nor stops."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import psutil
import pytest

from service.serving.process import ModelProcess, ProcessLimits
from tests.support.labs import LabSetup

HOSTILE = Path(__file__).parents[1] / "code" / "scripts" / "hostile_models.py"
MEMORY_MB = 512
TIME_LIMIT_S = 3


LAB = LabSetup(
    "serving-lab",
    workers=(["--queues", "cpu", "--concurrency", "1"],),
    env={
        "LABTRAIN_PREDICT_MEMORY_MB": str(MEMORY_MB),
        "LABTRAIN_PREDICT_TIME_LIMIT_S": str(TIME_LIMIT_S),
        "LABTRAIN_PREDICT_SANDBOX": "required",  # never a plain process in this test
    },
)


@pytest.fixture(scope="module")
def models(lab) -> dict[str, str]:
    created = lab.client.post("/api/v1/sources", files={"file": ("hostile_models.py", HOSTILE.read_bytes())})
    assert created.status_code == 201, created.text
    source = created.json()["id"]
    jobs = {kind: lab.submit({"code": {"source": source, "args": [kind]}}) for kind in ("linear", "memory", "loop")}
    found = {}
    for kind, job_id in jobs.items():
        job = lab.client.wait_for(job_id, timeout=180)
        assert job["status"] == "succeeded", job["error"]
        found[kind] = job["result"]["model_id"]
    return found


def predict(lab, model_id: str, rows: list[list[float]]):
    return lab.client.post(f"/api/v1/models/{model_id}/predict", json={"instances": rows})


def api_memory_mb(lab) -> float:
    api = psutil.Process(lab.processes[-1].proc.pid)
    return sum(p.memory_info().rss for p in [api, *api.children(recursive=True)]) / 2**20


def test_a_model_past_its_memory_or_time_is_stopped_while_others_are_answered(lab, models):
    assert predict(lab, models["linear"], [[1, 2, 3, 4]]).json()["predictions"] == [[10.0, 10.0]]
    before = api_memory_mb(lab)
    rows = [[float(i), 1.0, 1.0, 1.0] for i in range(20)]
    with concurrent.futures.ThreadPoolExecutor(22) as pool:
        hostile = {kind: pool.submit(predict, lab, models[kind], [[1, 2, 3, 4]]) for kind in ("memory", "loop")}
        good = [pool.submit(predict, lab, models["linear"], [row]) for row in rows]
        answers = [future.result() for future in good]
        stopped = {kind: future.result() for kind, future in hostile.items()}
    for row, answer in zip(rows, answers):
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [[row[0] + 3.0] * 2]
    for kind, limit in (("memory", "memory"), ("loop", "time")):
        error = stopped[kind].json()["error"]
        assert stopped[kind].status_code == 422 and error["code"] == "prediction_limit_exceeded", error
        assert error["details"]["limit"] == limit and error["details"]["field"] == "id", error
    assert f"{MEMORY_MB} MB" in stopped["memory"].json()["error"]["message"]
    assert f"{TIME_LIMIT_S} s" in stopped["loop"].json()["error"]["message"]
    # The API did the model's work nowhere in its own processes, and goes on serving.
    assert api_memory_mb(lab) - before < 300
    assert lab.client.get("/healthz").status_code == 200
    again = predict(lab, models["memory"], [[1, 2, 3, 4]])
    assert again.status_code == 422 and again.json()["error"]["code"] == "prediction_limit_exceeded"
    assert predict(lab, models["linear"], [[0, 0, 0, 1]]).json()["predictions"] == [[1.0, 1.0]]


def test_the_attacks_are_real_where_the_limits_allow_them(lab, models, tmp_path):
    """Controls: given the memory, the 2 GB model answers (so the limit is what stopped it);
    the looping model's graph answers once its loop is short (so the time is what stopped it)."""
    model_file = next((lab.home / "artifacts" / "models").glob(f"{models['memory']}.*"))
    fields = {
        "id": models["memory"],
        "framework": "onnx",
        "task": "output",
        "input": {"shape": [4], "dtype": "float32"},
        "meta": {"outputs_probabilities": False},
        "classes": None,
        "class_names": None,
    }
    roomy = ModelProcess(
        "service.code.predict:OnnxPredictor", fields, model_file, ProcessLimits(3500, 1, 60, 60, "required")
    )
    try:
        roomy.start()
        answer = roomy.predict([[0, 0, 0, 0]], None)["predictions"][0]
        # The sum of 512 Mi ones (float32 stops counting exactly past 2**24): the tensor was made.
        assert len(answer) == 4 and min(answer) > 2**26, answer
    finally:
        roomy.close()
    created = lab.client.post("/api/v1/sources", files={"file": ("hostile_models.py", HOSTILE.read_bytes())})
    job = lab.client.wait_for(lab.submit({"code": {"source": created.json()["id"], "args": ["loop", "1000"]}}))
    assert job["status"] == "succeeded", job["error"]
    assert predict(lab, job["result"]["model_id"], [[1, 2, 3, 4]]).json()["predictions"] == [
        [1001.0, 1002.0, 1003.0, 1004.0]
    ]
