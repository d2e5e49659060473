"""A code job's TensorBoard event files become its curves: the scalars of torch's SummaryWriter
and Keras's TensorBoard callback as the job's `metrics` events, read while it runs and once it
ended, one point per tag and step; and files that are hostile (a link, random bytes, a record's
length past any file, a record cut short) stop the reading of themselves alone, with one line in
the job's log.

The reader on files written here (fast), then the code trainer in process on real sandboxes."""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

from service.core import storage
from service.core.config import Settings
from tests.support.code_trainer import code_job, sandbox_settings
from tests.support.trainers import ListReporter
from workers.trainers import code as code_trainer
from workers.trainers.base import Allotment
from workers.trainers.code.tensorboard import TensorBoardScalars

MB = 1024 * 1024


def scalar(tag: str, value: float) -> summary_pb2.Summary.Value:
    return summary_pb2.Summary.Value(tag=tag, simple_value=value)


def tensor_scalar(tag: str, value: float, first: bool = True) -> summary_pb2.Summary.Value:
    """As TF2's tf.summary.scalar writes it: a rank-0 tensor, its metadata with the tag's first value only."""
    metadata = scalar_metadata.create_summary_metadata(display_name=tag, description="") if first else None
    return summary_pb2.Summary.Value(tag=tag, metadata=metadata, tensor=tensor_util.make_tensor_proto(value))


def write_events(folder: Path, steps: dict[int, list[summary_pb2.Summary.Value]]) -> Path:
    """An event file in `folder` (TensorBoard's own writer), one event per step; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(folder))
    for step, values in steps.items():
        writer.add_event(event_pb2.Event(step=step, wall_time=1.0, summary=summary_pb2.Summary(value=values)))
    writer.close()
    return Path(writer.get_logdir()) / next(p.name for p in folder.iterdir() if "tfevents" in p.name)


def record(data: bytes) -> bytes:
    """One TFRecord: its length, the length's masked CRC, the data, its masked CRC."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def points(reporter: ListReporter) -> dict[str, list[tuple[int, float]]]:
    """Each key's (step, value) in the order the metrics events gave them."""
    found: dict[str, list[tuple[int, float]]] = {}
    for kind, data in reporter.events:
        if kind == "metrics":
            assert data["source"] == "tensorboard"
            for key, value in data.items():
                if key not in ("step", "source"):
                    found.setdefault(key, []).append((data["step"], value))
    return found


def logged(reporter: ListReporter) -> list[str]:
    return [data["message"] for kind, data in reporter.events if kind == "log"]


def reader(outputs: Path, reporter: ListReporter, max_points: int = 100_000) -> TensorBoardScalars:
    return TensorBoardScalars(outputs, reporter, max_points, 512 * MB)


@pytest.mark.fast
def test_scalars_are_read_as_they_are_written_one_event_per_step(tmp_path):
    reporter = ListReporter()
    scalars = reader(tmp_path, reporter)
    assert scalars.read() == {}  # nothing yet
    first = write_events(
        tmp_path / "tensorboard", {0: [scalar("loss", 1.0), scalar("acc", 0.5)], 1: [scalar("loss", 0.5)]}
    )
    assert scalars.read() == {"loss": 0.5, "acc": 0.5}
    with open(first, "ab") as more:  # the writer goes on
        more.write(
            record(
                event_pb2.Event(step=2, summary=summary_pb2.Summary(value=[scalar("loss", 0.25)])).SerializeToString()
            )
        )
    assert scalars.read() == {"loss": 0.25}
    assert scalars.read() == {}  # nothing new
    metrics = [data for kind, data in reporter.events if kind == "metrics"]
    assert metrics == [
        {"step": 0, "source": "tensorboard", "loss": 1.0, "acc": 0.5},
        {"step": 1, "source": "tensorboard", "loss": 0.5},
        {"step": 2, "source": "tensorboard", "loss": 0.25},
    ]
    assert logged(reporter) == []


@pytest.mark.fast
def test_tf2_scalar_tensors_count_and_other_tensors_do_not(tmp_path):
    reporter = ListReporter()
    image = summary_pb2.Summary.Value(tag="picture", tensor=tensor_util.make_tensor_proto([[1.0, 2.0]]))
    write_events(
        tmp_path / "logs",
        {
            0: [tensor_scalar("epoch_loss", 0.75), image],
            1: [tensor_scalar("epoch_loss", 0.5, first=False), tensor_scalar("count", 3)],
        },
    )
    reader(tmp_path, reporter).finish()
    assert points(reporter) == {"epoch_loss": [(0, 0.75), (1, 0.5)], "count": [(1, 3.0)]}


@pytest.mark.fast
def test_runs_in_several_folders_prefix_their_tags_and_a_lone_one_does_not(tmp_path):
    reporter = ListReporter()
    write_events(tmp_path / "tensorboard" / "train", {0: [tensor_scalar("epoch_loss", 0.9)]})
    write_events(tmp_path / "tensorboard" / "validation", {0: [tensor_scalar("epoch_loss", 1.1)]})
    reader(tmp_path, reporter).finish()
    assert points(reporter) == {
        "train/epoch_loss": [(0, pytest.approx(0.9))],
        "validation/epoch_loss": [(0, pytest.approx(1.1))],
    }

    alone = ListReporter()
    write_events(tmp_path / "other" / "runs" / "exp1", {4: [scalar("loss", 2.0)]})
    reader(tmp_path / "other", alone).finish()
    assert points(alone) == {"loss": [(4, 2.0)]}


@pytest.mark.fast
def test_one_point_per_tag_and_step_non_finite_values_left_out_and_the_points_capped(tmp_path):
    reporter = ListReporter()
    write_events(tmp_path / "a", {0: [scalar("loss", 1.0), scalar("bad", math.nan), scalar("worse", math.inf)]})
    write_events(tmp_path / "a", {0: [scalar("loss", 9.0)], 1: [scalar("loss", 0.5)], 2: [scalar("loss", 0.25)]})
    scalars = reader(tmp_path, reporter, max_points=2)
    scalars.finish()
    assert points(reporter) == {"loss": [(0, 1.0), (1, 0.5)]}  # the older file's step 0; the cap at 2
    assert sum("LABTRAIN_TENSORBOARD_MAX_POINTS" in line for line in logged(reporter)) == 1
    assert not scalars.due()  # full: no more reads


def hostile_files(folder: Path, good: Path) -> dict[str, str]:
    """Beside a good event file: a link out, random bytes, a record saying 2**62 bytes, the good
    file cut short; each name and what its log line says."""
    os.symlink("/etc/passwd", folder / "events.out.tfevents.link")
    (folder / "events.out.tfevents.random").write_bytes(os.urandom(4096))
    length = struct.pack("<Q", 2**62)
    (folder / "events.out.tfevents.huge").write_bytes(length + struct.pack("<I", masked_crc32c(length)) + b"x" * 64)
    (folder / "events.out.tfevents.truncated").write_bytes(good.read_bytes()[:-7])
    return {
        "events.out.tfevents.link": "no regular file",
        "events.out.tfevents.random": "no event record at byte 0",
        "events.out.tfevents.huge": f"says it holds {2**62} bytes",
        "events.out.tfevents.truncated": "ends in a truncated record",
    }


@pytest.mark.fast
def test_hostile_files_stop_only_themselves_with_one_log_line_each(tmp_path):
    reporter = ListReporter()
    folder = tmp_path / "tensorboard"
    good = write_events(folder, {0: [scalar("loss", 1.0)], 1: [scalar("loss", 0.5)], 2: [scalar("loss", 0.25)]})
    said = hostile_files(folder, good)
    (folder / "not-an-event.bin").write_bytes(os.urandom(64))  # no "tfevents" in its name: never opened
    scalars = reader(tmp_path, reporter)
    for _ in range(3):  # read again and again, as while the job runs: still one line each
        scalars.read()
    scalars.finish()
    assert points(reporter) == {"loss": [(0, 1.0), (1, 0.5), (2, 0.25)]}
    lines = logged(reporter)
    for name, says in said.items():
        about = [line for line in lines if name in line]
        assert len(about) == 1 and says in about[0], (name, lines)
    assert len(lines) == len(said)


@pytest.mark.fast
def test_a_corrupt_record_keeps_what_came_before_it(tmp_path):
    reporter = ListReporter()
    good = write_events(tmp_path, {0: [scalar("loss", 1.0)], 1: [scalar("loss", 0.5)]})
    data = bytearray(good.read_bytes())
    data[-6] ^= 0xFF  # inside the last record's data: its checksum no longer matches
    good.write_bytes(bytes(data))
    reader(tmp_path, reporter).finish()
    assert points(reporter) == {"loss": [(0, 1.0)]}
    assert [line for line in logged(reporter) if "checksum" in line] == logged(reporter) and len(logged(reporter)) == 1


# -- code jobs in the real sandbox ----------------------------------------------------------------

TORCH_WRITER = """
    import os
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(os.environ["LABTRAIN_TENSORBOARD_DIR"])
    for step in range(3):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
        writer.add_scalar("accuracy", 0.5 + step / 10, step)
    writer.close()
"""

KERAS_CALLBACK = """
    import json, os
    import numpy as np
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    board = keras.callbacks.TensorBoard(os.environ["LABTRAIN_TENSORBOARD_DIR"], write_graph=False)
    history = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0, callbacks=[board])
    print("HISTORY", json.dumps(history.history))
"""

HOSTILE_JOB = """
    import os, struct
    from torch.utils.tensorboard import SummaryWriter
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    folder = os.environ["LABTRAIN_TENSORBOARD_DIR"]
    writer = SummaryWriter(folder)
    for step in range(3):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.close()
    good = os.path.join(folder, next(name for name in os.listdir(folder) if "tfevents" in name))
    os.symlink("/etc/passwd", os.path.join(folder, "events.out.tfevents.link"))
    with open(os.path.join(folder, "events.out.tfevents.random"), "wb") as f:
        f.write(os.urandom(4096))
    length = struct.pack("<Q", 2**62)
    with open(os.path.join(folder, "events.out.tfevents.huge"), "wb") as f:
        f.write(length + struct.pack("<I", masked_crc32c(length)) + b"x" * 64)
    with open(good, "rb") as f, open(os.path.join(folder, "events.out.tfevents.truncated"), "wb") as cut:
        cut.write(f.read()[:-7])
"""


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return sandbox_settings(tmp_path_factory.mktemp("code-tensorboard"))


def artifacts(settings: Settings, name: str) -> list[str]:
    return [path for path, _ in storage.regular_files(storage.job_outputs_dir(settings, f"job-{name}"))]


def test_a_summary_writers_scalars_become_the_jobs_metrics_events(settings, tmp_path):
    reporter = ListReporter()
    run, inputs = code_job(settings, "torch-writer", TORCH_WRITER)
    result = code_trainer.train(run, inputs, reporter, Allotment(checkpoint_dir=tmp_path))
    assert points(reporter) == {
        "loss": [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))],
        "accuracy": [(0, 0.5), (1, pytest.approx(0.6)), (2, pytest.approx(0.7))],
    }
    assert result.metrics["loss"] == pytest.approx(1 / 3) and result.metrics["accuracy"] == pytest.approx(0.7)
    assert reporter.progress_calls[-1]["metrics"]["loss"] == pytest.approx(1 / 3)
    kept = artifacts(settings, "torch-writer")
    assert len(kept) == 1 and kept[0].startswith("tensorboard/events.out.tfevents.")  # still the job's artifact


def test_a_keras_tensorboard_callback_gives_train_and_validation_curves(settings, tmp_path):
    reporter = ListReporter()
    run, inputs = code_job(settings, "keras-callback", KERAS_CALLBACK)
    code_trainer.train(run, inputs, reporter, Allotment(checkpoint_dir=tmp_path))
    history = json.loads(reporter.printed().split("HISTORY", 1)[1].strip().splitlines()[0])
    found = points(reporter)
    assert found["train/epoch_loss"] == [(epoch, pytest.approx(v, rel=1e-5)) for epoch, v in enumerate(history["loss"])]
    assert found["validation/epoch_loss"] == [
        (epoch, pytest.approx(v, rel=1e-5)) for epoch, v in enumerate(history["val_loss"])
    ]


def test_hostile_event_files_leave_the_job_succeeding_with_the_good_files_scalars(settings, tmp_path):
    reporter = ListReporter()
    run, inputs = code_job(settings, "hostile-events", HOSTILE_JOB)
    result = code_trainer.train(run, inputs, reporter, Allotment(checkpoint_dir=tmp_path))
    assert result.result["exit_code"] == 0
    assert points(reporter) == {"loss": [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]}
    lines = [line for line in logged(reporter) if line.startswith("tensorboard:")]
    for name in ("link", "random", "huge", "truncated"):
        assert len([line for line in lines if f"events.out.tfevents.{name}" in line]) == 1, lines
    assert len(lines) == 4
    assert "tensorboard/events.out.tfevents.link" not in artifacts(settings, "hostile-events")  # links stay behind
