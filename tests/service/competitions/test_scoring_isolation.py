"""What a model being scored can reach: its process is predict's own (service/serving), whose
sandbox holds the service's code and the model file alone, never the hidden test set; and the
test inputs students download never carry the target column."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

import service
from service.competitions.spec import ModelToScore, ScoreRun
from service.competitions.testset import inputs_csv, read_test_set
from service.serving.process import MODEL_DIR
from workers.trainers.score import model_process

pytestmark = pytest.mark.fast


def test_the_models_sandbox_holds_its_file_and_not_the_test_set(settings, tmp_path):
    test_path, model_path = tmp_path / "hidden.csv", tmp_path / "models" / "m.skops"
    model_path.parent.mkdir()
    model_path.write_bytes(b"model")
    test_path.write_text("id,a,label\n1,0.5,qx-alpha\n2,0.7,qx-beta\n")
    run = ScoreRun(
        competition="c",
        submission="s",
        metric="accuracy",
        test_path=str(test_path),
        target="label",
        id_column="id",
        public_fraction=0.5,
        model=ModelToScore(
            predictor="service.classic.predict:SklearnPredictor",
            fields={"id": "m"},
            path=str(model_path),
            columns=["a"],
        ),
    )
    server = model_process(run, settings)
    mounts = server._spec().mounts
    sources = {Path(m.source).resolve() for m in mounts}
    assert sources == {Path(service.__file__).resolve().parent, model_path.resolve()}
    assert not any(test_path.resolve().is_relative_to(source) for source in sources)
    assert server.model["artifact_path"] == f"{MODEL_DIR}/m.skops"


def test_the_test_inputs_never_carry_the_target(tmp_path):
    for header, rows in (
        ("id,a,label", ["7,0.5,qx-alpha", "9,0.7,qx-beta"]),
        ("a,label", ["0.5,qx-alpha", "0.7,qx-beta"]),
    ):
        path = tmp_path / "hidden.csv"
        path.write_text("\n".join([header, *rows]) + "\n")
        column = "id" if header.startswith("id") else None
        sent = inputs_csv(read_test_set(path, "label", column), column)
        frame = pd.read_csv(io.BytesIO(sent))
        assert list(frame.columns) == ["id", "a"] and b"qx-" not in sent
        assert list(frame["id"]) == ([7, 9] if column else [1, 2])
