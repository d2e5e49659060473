"""Every course example in examples/ runs as a code job through the real service (PostgreSQL,
Redis, a dispatcher, a sandboxing worker running two jobs at once, the API), with small
arguments: it succeeds, reports each epoch with its metrics, and a model it saves answers
predict with JSON instances of its input shape (and, for the MNIST and image-folder ones,
with uploaded pictures). All jobs are submitted at once, before the first test waits."""

from __future__ import annotations

import datetime
import io
import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest

from tests.support.digit_images import encode as encode_digit
from tests.support.digit_images import load_mnist_8k, picture
from tests.support.labs import CodeLab as Lab
from tests.support.labs import LabSetup
from tests.support.shape_images import SHAPES, shape_image
from tests.support.shape_images import encode as encode_shape

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WAIT_S = 900  # a job's wait includes the jobs queued before it


@dataclass
class Case:
    args: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)  # a notebook's
    dataset: str | None = None  # "mnist", or "shapes": the image-folder data set made by examples/make_shapes.py
    epochs: int = 1
    metrics: tuple[str, ...] = ("loss",)  # reported every epoch


# The slowest first: the worker takes them in order, two at a time.
CASES = {
    "01_keras_quickstart.ipynb": Case(
        parameters={"epochs": 1, "limit": 2000}, dataset="mnist", metrics=("loss", "accuracy", "val_accuracy")
    ),
    "09_seq2seq_characters.py": Case(
        ["--epochs", "3", "--samples", "3000"], epochs=3, metrics=("loss", "val_loss", "sequence_accuracy")
    ),
    "07_transformer_encoder.py": Case(["--epochs", "6"], epochs=6, metrics=("loss", "accuracy", "val_accuracy")),
    "06_rnn_sequences.py": Case(["--epochs", "10"], epochs=10, metrics=("loss", "accuracy", "val_accuracy")),
    "11_tiny_gpt.py": Case(
        ["--epochs", "2", "--steps", "40", "--sample", "100"], epochs=2, metrics=("loss", "val_loss")
    ),
    "10_tiny_bert_mlm.py": Case(
        ["--epochs", "1", "--max-words", "20000"], metrics=("loss", "val_loss", "masked_accuracy")
    ),
    "03_cnn_image_folder.py": Case(
        ["--epochs", "6"], dataset="shapes", epochs=6, metrics=("loss", "accuracy", "val_accuracy")
    ),
    "12_audio_spectrogram.py": Case(
        ["--epochs", "2", "--samples", "400"], epochs=2, metrics=("loss", "accuracy", "val_accuracy")
    ),
    "02_pytorch_basics.py": Case(
        ["--epochs", "1", "--limit", "2000"], dataset="mnist", metrics=("loss", "accuracy", "val_accuracy")
    ),
    "05_autoencoder_mnist.py": Case(
        ["--epochs", "1", "--limit", "2000"], dataset="mnist", metrics=("loss", "val_loss", "val_mse")
    ),
    "04_gan_mnist.py": Case(
        ["--epochs", "1", "--limit", "1000"], dataset="mnist", metrics=("d_loss", "g_loss", "d_real", "d_fake")
    ),
    "08_word2vec_skipgram.py": Case(["--epochs", "1", "--max-words", "40000"], metrics=("loss", "pairs")),
}


def test_every_example_has_a_case():
    assert sorted(CASES) == sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*") if p.suffix in (".py", ".ipynb"))


LAB = LabSetup(
    "examples-lab",
    workers=(["--queues", "cpu", "--concurrency", "2", "--name", "w1"],),
    env={"LABTRAIN_CODE_MEMORY_MB": "3000"},
)


@pytest.fixture(scope="module")
def shapes(lab, tmp_path_factory) -> dict:
    """The image-folder data set, made as the example's docstring says: examples/make_shapes.py, uploaded."""
    archive = tmp_path_factory.mktemp("shapes") / "shapes.zip"
    made = subprocess.run(
        [sys.executable, str(EXAMPLES / "make_shapes.py"), str(archive), "--per-class", "100"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    created = lab.client.post("/api/v1/datasets", files={"file": ("shapes.zip", archive.read_bytes())})
    assert created.status_code == 201, created.text
    dataset = created.json()
    assert dataset["classes"] == ["circle", "square", "triangle"] and dataset["image_size"] == [32, 32]
    return dataset


@pytest.fixture(scope="module")
def submitted(lab, shapes) -> dict[str, str]:
    """Every example submitted as a job, before any test waits: {file name: job id}."""
    jobs = {}
    for name, case in CASES.items():
        source = lab.client.post("/api/v1/sources", files={"file": (name, (EXAMPLES / name).read_bytes())})
        assert source.status_code == 201, source.text
        code: dict[str, Any] = {"source": source.json()["id"], "entrypoint": name}
        if case.parameters:
            code["parameters"] = case.parameters
        else:
            code["args"] = case.args
        spec: dict[str, Any] = {"code": code, "name": name}
        if case.dataset == "shapes":
            spec["dataset"] = {"id": shapes["id"]}
        elif case.dataset:
            spec["dataset"] = case.dataset
        jobs[name] = lab.submit(spec)
    return jobs


# --- helpers ----------------------------------------------------------------------------------


def artifact(lab: Lab, job_id: str, path: str) -> bytes:
    response = lab.client.get(f"/api/v1/jobs/{job_id}/artifacts/{path}")
    assert response.status_code == 200, (path, response.text[:300])
    return response.content


def model_of(lab: Lab, job: dict) -> dict:
    model_id = job["result"].get("model_id")
    assert model_id, f"{job['name']} saved no model: {job['result']}"
    model = lab.client.get(f"/api/v1/models/{model_id}")
    assert model.status_code == 200, model.text
    return model.json()


def predict(lab: Lab, model: dict, **kwargs) -> dict:
    answer = lab.client.post(f"/api/v1/models/{model['id']}/predict", **kwargs)
    assert answer.status_code == 200, answer.text[:500]
    return answer.json()


def mnist_test(n: int) -> tuple[np.ndarray, np.ndarray]:
    _, _, x_test, y_test = load_mnist_8k()
    return x_test[-n:], y_test[-n:]  # the last ones: digits the examples held out and never showed their model


def check_mnist_classifier(lab: Lab, job: dict) -> None:
    """Test digits as (28, 28) arrays of 0..1, then as pictures prepared the way MNIST was."""
    model = model_of(lab, job)
    assert model["input"] == {"shape": [28, 28], "dtype": "float32"} and model["task"] == "classification"
    assert model["class_names"] == [str(d) for d in range(10)]
    x, y = mnist_test(50)
    by_rows = predict(lab, model, json={"instances": (x / 255.0).tolist()})
    assert np.mean(np.asarray(by_rows["predictions"]) == y) >= 0.6, by_rows["predictions"]
    assert np.allclose(np.sum(by_rows["probabilities"], axis=1), 1.0, atol=1e-4)
    files = [("file", (f"{i}.png", encode_digit(picture(x[i])), "image/png")) for i in range(20)]
    by_pictures = predict(lab, model, files=files)
    assert np.mean(np.asarray(by_pictures["predictions"]) == y[:20]) >= 0.5, by_pictures["predictions"]
    assert by_pictures["labels"] == [str(p) for p in by_pictures["predictions"]]


# --- each example's own checks ------------------------------------------------------------------


def check_01_keras_quickstart(lab: Lab, job: dict) -> None:
    assert job["result"]["notebook"] == {
        "executed": "01_keras_quickstart.ipynb",
        "cells": 10,
        "page": True,
    }
    for way in ("sequential", "functional", "subclassing"):  # the same network three ways, each trained
        assert job["metrics"][f"{way}_test_accuracy"] >= 0.6, job["metrics"]
    executed = nbformat.reads(artifact(lab, job["id"], "01_keras_quickstart.ipynb").decode(), as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert "injected-parameters" in code[1].metadata["tags"] and "limit = 2000" in code[1].source
    assert any("image/png" in output.get("data", {}) for cell in code for output in cell.outputs)  # the figure
    page = lab.client.get(f"/api/v1/jobs/{job['id']}/notebook")  # rendered by the worker
    assert page.status_code == 200 and "data:image/png;base64," in page.text
    model = model_of(lab, job)
    assert model["trained_with"] == "tensorflow" and model["algorithm"] == "Sequential"
    check_mnist_classifier(lab, job)


def check_02_pytorch_basics(lab: Lab, job: dict) -> None:
    assert job["metrics"]["val_accuracy"] >= 0.6, job["metrics"]
    assert model_of(lab, job)["trained_with"] == "pytorch"
    check_mnist_classifier(lab, job)


def check_03_cnn_image_folder(lab: Lab, job: dict) -> None:
    assert job["metrics"]["val_accuracy"] >= 0.7, job["metrics"]  # chance: a third
    model = model_of(lab, job)
    assert model["input"] == {"shape": [3, 32, 32], "dtype": "float32"}
    assert model["class_names"] == ["circle", "square", "triangle"]
    # New pictures drawn by another hand (tests/support), at the training size and larger.
    rng = np.random.default_rng(7)
    truth = [SHAPES[i % 2] for i in range(20)]
    files = [
        ("file", (f"{i}.png", encode_shape(shape_image(shape, rng, side=32 if i < 10 else 48)), "image/png"))
        for i, shape in enumerate(truth)
    ]
    labels = predict(lab, model, files=files)["labels"]
    assert np.mean(np.array(labels) == np.array(truth)) >= 0.7, labels
    rows = predict(lab, model, json={"instances": rng.uniform(0, 1, (3, 3, 32, 32)).tolist()})
    assert np.asarray(rows["probabilities"]).shape == (3, 3) and set(rows["labels"]) <= set(model["class_names"])


def check_04_gan_mnist(lab: Lab, job: dict) -> None:
    model = model_of(lab, job)
    assert model["input"] == {"shape": [32], "dtype": "float32"} and model["task"] == "output"
    noise = np.random.default_rng(0).normal(size=(3, 32))
    images = np.asarray(predict(lab, model, json={"instances": noise.tolist()})["predictions"])
    assert images.shape == (3, 1, 28, 28) and images.min() >= -1 and images.max() <= 1  # tanh
    assert artifact(lab, job["id"], "samples.png").startswith(b"\x89PNG")


def check_05_autoencoder_mnist(lab: Lab, job: dict) -> None:
    model = model_of(lab, job)
    assert model["input"] == {"shape": [1, 28, 28], "dtype": "float32"} and model["task"] == "output"
    x, _ = mnist_test(4)
    rebuilt = np.asarray(predict(lab, model, json={"instances": (x[:, None] / 255.0).tolist()})["predictions"])
    assert rebuilt.shape == (4, 1, 28, 28) and rebuilt.min() >= 0 and rebuilt.max() <= 1  # sigmoid
    drawn = predict(lab, model, files=[("file", ("digit.png", encode_digit(picture(x[0])), "image/png"))])
    assert np.asarray(drawn["predictions"]).shape == (1, 1, 28, 28)
    assert artifact(lab, job["id"], "reconstructions.png").startswith(b"\x89PNG")


WAVES = ["sine", "square", "triangle", "sawtooth"]


def waves(n: int, length: int = 40) -> tuple[np.ndarray, list[str]]:
    """Clean waves of each kind, as examples/06 makes them (without the noise)."""
    rng = np.random.default_rng(3)
    labels = [WAVES[i % 4] for i in range(n)]
    phase = (np.arange(length) / length * rng.uniform(1.5, 4.0, (n, 1)) + rng.uniform(0, 1, (n, 1))) % 1.0
    shapes = {
        "sine": np.sin(2 * np.pi * phase),
        "square": np.where(phase < 0.5, 1.0, -1.0),
        "triangle": 4 * np.abs(phase - 0.5) - 1,
        "sawtooth": 2 * phase - 1,
    }
    return np.stack([shapes[label][i] for i, label in enumerate(labels)])[..., None], labels


def check_06_rnn_sequences(lab: Lab, job: dict) -> None:
    assert job["metrics"]["val_accuracy"] >= 0.6, job["metrics"]  # chance: a quarter
    model = model_of(lab, job)
    assert model["input"] == {"shape": [40, 1], "dtype": "float32"} and model["class_names"] == WAVES
    x, truth = waves(20)
    labels = predict(lab, model, json={"instances": x.tolist()})["labels"]
    assert np.mean(np.array(labels) == np.array(truth)) >= 0.6, list(zip(truth, labels))


def check_07_transformer_encoder(lab: Lab, job: dict) -> None:
    assert job["metrics"]["val_accuracy"] >= 0.6, job["metrics"]  # the most common class: 0.38
    model = model_of(lab, job)
    assert model["input"] == {"shape": [12], "dtype": "int64"}
    tokens = np.random.default_rng(5).integers(0, 10, (30, 12))
    truth = [["0", "1", "2", "3", "4+"][min(4, int((row[1:] == row[0]).sum()))] for row in tokens]
    labels = predict(lab, model, json={"instances": tokens.tolist()})["labels"]
    assert np.mean(np.array(labels) == np.array(truth)) >= 0.6, list(zip(truth, labels))


def check_08_word2vec_skipgram(lab: Lab, job: dict) -> None:
    assert job["result"].get("model_id") is None  # vectors, not a model
    words = artifact(lab, job["id"], "metadata.tsv").decode().splitlines()
    vectors = np.loadtxt(io.BytesIO(artifact(lab, job["id"], "vectors.tsv")), delimiter="\t")
    assert vectors.shape == (len(words), 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    neighbours = artifact(lab, job["id"], "neighbours.txt").decode()
    assert neighbours.startswith("file: ") and "socket: " in neighbours


INPUT_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 ,./"
DATES = {  # in the spellings the example generates (with the right weekdays)
    "march 3, 2021": "2021-03-03",
    "3 mar 2021": "2021-03-03",
    "17 september 1984": "1984-09-17",
    "25.12.1999": "1999-12-25",
    "01/07/2030": "2030-07-01",
    "wed 14 jun 2006": "2006-06-14",
    "sun, oct 30 1966": "1966-10-30",
    "february 28, 2012": "2012-02-28",
}


def check_09_seq2seq_characters(lab: Lab, job: dict) -> None:
    assert job["metrics"]["sequence_accuracy"] >= 0.5, job["metrics"]
    model = model_of(lab, job)
    assert model["input"] == {"shape": [20], "dtype": "int64"} and model["task"] == "output"
    alphabet = json.loads(artifact(lab, job["id"], "alphabet.json"))
    assert alphabet["input"] == INPUT_CHARS
    rows = [[0] * (20 - len(text)) + [INPUT_CHARS.index(c) + 1 for c in text] for text in DATES]
    ids = np.asarray(predict(lab, model, json={"instances": rows})["predictions"])
    assert ids.shape == (len(DATES), 10) and ids.min() >= 0 and ids.max() < len(alphabet["output"])
    answers = ["".join(alphabet["output"][int(i)] for i in row) for row in ids]
    right = [a == iso for a, iso in zip(answers, DATES.values())]
    assert sum(right) >= len(DATES) // 2, list(zip(DATES, answers))
    assert " -> " in artifact(lab, job["id"], "translations.txt").decode()


def check_10_tiny_bert_mlm(lab: Lab, job: dict) -> None:
    assert job["metrics"]["masked_accuracy"] > 0.02, job["metrics"]  # uniform guessing: 1 / 2000
    vocab = artifact(lab, job["id"], "vocab.txt").decode().splitlines()
    assert vocab[:2] == ["[UNK]", "[MASK]"] and 100 < len(vocab) <= 2000
    model = model_of(lab, job)
    assert model["input"] == {"shape": [24], "dtype": "int64"} and model["task"] == "output"
    words = re.findall(
        r"[a-z]+", "Return the value of the given object as a string; if it is None, raise an error.".lower()
    )
    ids = [vocab.index(w) if w in vocab else 0 for w in (words * 2)[:24]]
    masked = list(ids)
    masked[1] = masked[6] = 1  # [MASK]
    filled = np.asarray(predict(lab, model, json={"instances": [ids, masked]})["predictions"])
    assert filled.shape == (2, 24) and filled.min() >= 0 and filled.max() < len(vocab)
    assert "[" in artifact(lab, job["id"], "fill_mask.txt").decode()


def check_11_tiny_gpt(lab: Lab, job: dict) -> None:
    chars = json.loads(artifact(lab, job["id"], "vocab.json"))
    assert job["metrics"]["val_loss"] < 0.85 * math.log(len(chars)), job["metrics"]  # a uniform guess: ln(vocab)
    sample = artifact(lab, job["id"], "sample.txt").decode()
    assert sample.startswith("Return the ") and len(sample) == len("Return the ") + 100 + 1
    model = model_of(lab, job)
    assert model["input"] == {"shape": [64], "dtype": "int64"} and model["class_names"] == chars
    text = "Return a new list containing all items from the iterable in order"[:64]
    rows = [[chars.index(c) for c in text], [chars.index(c) for c in text[::-1]]]
    answer = predict(lab, model, json={"instances": rows})
    assert len(answer["labels"]) == 2 and set(answer["labels"]) <= set(chars)
    assert np.asarray(answer["probabilities"]).shape == (2, len(chars))


def sound_spectrogram(kind: str) -> np.ndarray:
    """A tone or a noise burst as examples/12 makes them (8 kHz, 0.5 s, log-magnitude STFT)."""
    import torch

    rng = np.random.default_rng(11)
    t = np.arange(4000) / 8000
    sound = np.sin(2 * np.pi * 440 * t) if kind == "tone" else rng.normal(0, 0.5, len(t)).clip(-1, 1)
    envelope = np.minimum(1, np.minimum(t, t[-1] - t) / 0.02)
    sound = (0.6 * envelope * sound + rng.normal(0, 0.02, len(t))).astype(np.float32)
    stft = torch.stft(torch.tensor(sound), 256, hop_length=128, window=torch.hann_window(256), return_complex=True)
    return torch.log1p(stft.abs())[None].numpy()


def check_12_audio_spectrogram(lab: Lab, job: dict) -> None:
    assert job["metrics"]["val_accuracy"] >= 0.7, job["metrics"]  # chance: a quarter
    model = model_of(lab, job)
    assert model["input"] == {"shape": [1, 129, 32], "dtype": "float32"}
    assert model["class_names"] == ["tone", "chord", "chirp", "noise"]
    instances = [sound_spectrogram("tone").tolist(), sound_spectrogram("noise").tolist()]
    assert predict(lab, model, json={"instances": instances})["labels"] == ["tone", "noise"]
    for kind in ("tone", "chord", "chirp", "noise"):
        assert artifact(lab, job["id"], f"{kind}.wav").startswith(b"RIFF")


CHECKS: dict[str, Callable[[Lab, dict], None]] = {name: globals()[f"check_{Path(name).stem}"] for name in CASES}


@pytest.mark.parametrize("name", list(CASES))
def test_the_example_runs_as_a_job_reports_its_epochs_and_serves_its_model(lab, submitted, name):
    case = CASES[name]
    job = lab.client.wait_for(submitted[name], timeout=WAIT_S, poll=0.5)
    assert job["status"] == "succeeded", (job["error"], lab.log(job["id"])[-3000:])
    epochs = lab.epochs(job["id"])
    assert [e["epoch"] for e in epochs] == list(range(1, case.epochs + 1)), epochs
    for epoch in epochs:
        assert all(math.isfinite(epoch[metric]) for metric in case.metrics), epoch
    seconds = (
        datetime.datetime.fromisoformat(job["finished_at"]) - datetime.datetime.fromisoformat(job["started_at"])
    ).total_seconds()
    print(f"{name}: {seconds:.1f} s, {json.dumps(job['metrics'])}")
    CHECKS[name](lab, job)
