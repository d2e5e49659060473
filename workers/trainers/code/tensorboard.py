"""A code job's TensorBoard event files read into its curves while it runs.

A script that writes event files anywhere under outputs/ (torch's SummaryWriter, Keras's
TensorBoard callback, tf.summary; LABTRAIN_TENSORBOARD_DIR names outputs/tensorboard for
scripts that ask) has their scalars become the job's `metrics` events: {"step", "source":
"tensorboard", "<tag>": value}, one event per step and read, one point per (tag, step). The files
stay where they are, and become the job's artifacts like everything else in outputs/.

Everything in them is the job's, so hostile: outputs/ is walked without following a link, each
file is read through a descriptor opened without following one, each read is bounded (records,
bytes, files, tags, and the job's points: LABTRAIN_TENSORBOARD_MAX_POINTS), and a file that is
no event file, a corrupt or truncated record or a length no record has stops the reading of that
file alone, with one line in the job's log. The records are framed as TensorFlow's TFRecord files
are (a length, its checksum, the data, its checksum), checked with TensorBoard's own CRC-32C and
parsed with its own Event message.
"""

from __future__ import annotations

import math
import os
import stat
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2, types_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.plugins.scalar.metadata import PLUGIN_NAME as SCALARS_PLUGIN
from tensorboard.util import tensor_util

from service.core import storage
from workers.trainers.base import Cancelled, Reporter

READ_EVERY_S = 2.0
FINAL_READS = 10  # once the job ended: reads until nothing is new, at most this many
MAX_BYTES_PER_READ = 2 * 1024 * 1024  # TensorBoard's CRC is Python's: about 8 MB a second
MAX_RECORDS_PER_READ = 10_000
# Graphs, images and histograms can be large records; scalars never are: those are passed over unread.
MAX_SCALAR_RECORD_BYTES = 256 * 1024
MAX_FILES = 100  # event files one job's reads follow
MAX_TAGS = 500  # distinct keys one job's scalars may add
MAX_KEY_CHARS = 250  # MLflow's limit on a metric's key
RESERVED_KEYS = ("step", "source")  # the metrics event's own fields
HEADER, FOOTER = 12, 4  # uint64 length + uint32 its masked CRC; uint32 the data's masked CRC
# Numbers a scalar tensor may hold (rank 0, checked before it is decoded).
NUMBER_TYPES = {
    types_pb2.DT_FLOAT,
    types_pb2.DT_DOUBLE,
    types_pb2.DT_HALF,
    types_pb2.DT_BFLOAT16,
    types_pb2.DT_INT8,
    types_pb2.DT_INT16,
    types_pb2.DT_INT32,
    types_pb2.DT_INT64,
    types_pb2.DT_UINT8,
    types_pb2.DT_UINT16,
    types_pb2.DT_UINT32,
    types_pb2.DT_UINT64,
}


class _Stop(Exception):
    """This file is read no further; the message says why (one line of the job's log)."""


def is_event_file(name: str) -> bool:
    """TensorBoard's own rule (io_wrapper.IsTensorFlowEventsFile): "tfevents" in the name."""
    return "tfevents" in name


@dataclass
class _EventFile:
    relative: str
    identity: tuple[int, int]  # (device, inode): a file put in its place is another file
    offset: int = 0
    size: int = 0  # as the last read saw it
    run: str | None = None  # the prefix of its tags, fixed when it gives its first point
    plugins: dict[str, str] = field(default_factory=dict)  # tag -> plugin, from the first value that said
    stopped: bool = False


@dataclass
class _Budget:
    bytes: int = MAX_BYTES_PER_READ
    records: int = MAX_RECORDS_PER_READ

    def spent(self) -> bool:
        return self.bytes <= 0 or self.records <= 0


class TensorBoardScalars:
    """Follows the event files under one job's outputs/ folder (`outputs`, as the worker sees it)."""

    def __init__(self, outputs: Path, report: Reporter, max_points: int, max_record_bytes: int):
        self.outputs, self.report = outputs, report
        self.max_points = max_points
        self.max_record_bytes = max_record_bytes  # no record is larger than outputs/ may hold
        self.files: dict[str, _EventFile] = {}
        self.runs: set[str] = set()  # the folders event files were found in
        self.points: set[tuple[str, int]] = set()  # (key, step) reported in this attempt
        self.latest: dict[str, tuple[int, float]] = {}  # key -> (step, value) of its highest step
        self.told: set[str] = set()  # what the log said once already
        self.full = False
        self.next_read = 0.0
        self.turn = 0  # where the next read starts among the files, so none starves the others

    def due(self) -> bool:
        return not self.full and time.monotonic() >= self.next_read

    def read(self) -> dict[str, float]:
        """Reports what the files hold that is new, as metrics events; returns the latest value
        (at its highest step) of each key it reported now, for the job's metrics."""
        self.next_read = time.monotonic() + READ_EVERY_S
        try:
            return self._read()
        except Cancelled:
            raise
        except Exception as exc:  # whatever a file holds, the job goes on: only its curves stop here
            self.full = True
            self._tell(f"tensorboard: reading stopped ({type(exc).__name__}: {exc})")
            return {}

    def _read(self) -> dict[str, float]:
        if self.full:
            return {}
        read: list[tuple[_EventFile, str, int, float]] = []  # (file, tag, step, value)
        budget = _Budget()
        opened = self._open_files()
        try:
            for event_file, descriptor in opened:
                if event_file.stopped or budget.spent() or self.full:
                    continue
                try:
                    self._read_file(event_file, descriptor, budget, read)
                except (_Stop, OSError) as why:
                    event_file.stopped = True
                    reason = why.strerror if isinstance(why, OSError) else why
                    self._tell(f"tensorboard: {event_file.relative!r}: {reason}; the rest of it is left unread")
        finally:
            for _, descriptor in opened:
                os.close(descriptor)
        # Named once every file of this read is known: Keras's train/ beside its validation/.
        found: dict[int, dict[str, float]] = {}
        for event_file, tag, step, number in read:
            self._point(self._key(event_file, tag), step, number, found)
        for step in sorted(found):
            self.report.event("metrics", {"step": step, "source": "tensorboard", **found[step]})
        return {key: self.latest[key][1] for values in found.values() for key in values}

    def finish(self) -> dict[str, float]:
        """Once the job's processes ended: what is left (within FINAL_READS reads); a record
        still incomplete then was cut short."""
        values: dict[str, float] = {}
        for _ in range(FINAL_READS):
            before = {(f.relative, f.offset) for f in self.files.values()}
            values.update(self.read())
            if self.full or {(f.relative, f.offset) for f in self.files.values()} == before:
                break
        for event_file in self.files.values():
            if not event_file.stopped and event_file.size > event_file.offset:
                self._tell(f"tensorboard: {event_file.relative!r} ends in a truncated record (left unread)")
        return values

    # -- the files -----------------------------------------------------------------------------
    def _open_files(self) -> list[tuple[_EventFile, int]]:
        """The event files under outputs/, each opened through its folder's descriptor without
        following a link, in the order this read takes them."""
        opened: list[tuple[_EventFile, int]] = []
        try:
            for relative, info, dir_fd, name in storage.entries(self.outputs):
                if not is_event_file(name) or stat.S_ISDIR(info.st_mode):
                    continue
                if not stat.S_ISREG(info.st_mode):
                    self._tell(f"tensorboard: {relative!r} is no regular file (a link?): left unread")
                    continue
                event_file = self._follow(relative, info)
                if event_file is None or event_file.stopped:
                    continue
                try:
                    descriptor = os.open(
                        name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
                    )
                except OSError as exc:
                    event_file.stopped = True
                    self._tell(f"tensorboard: {relative!r} cannot be opened ({exc.strerror}): left unread")
                    continue
                opened.append((event_file, descriptor))
        except BaseException:
            for _, descriptor in opened:
                os.close(descriptor)
            raise
        if not opened:
            return opened
        opened.sort(key=lambda item: item[0].relative)  # a folder's files oldest first: their names start with the time
        start = self.turn % len(opened)
        self.turn += 1
        return opened[start:] + opened[:start]

    def _follow(self, relative: str, info: os.stat_result) -> _EventFile | None:
        identity = (info.st_dev, info.st_ino)
        known = self.files.get(relative)
        if known is not None and known.identity == identity:
            return known
        if known is None and len(self.files) >= MAX_FILES:
            self._tell(f"tensorboard: more than {MAX_FILES} event files under outputs/; the others are left unread")
            return None
        # New, or another file put in its place: read from its start (repeated points are dropped).
        self.files[relative] = _EventFile(relative, identity)
        return self.files[relative]

    def _read_file(
        self, event_file: _EventFile, descriptor: int, budget: _Budget, read: list[tuple[_EventFile, str, int, float]]
    ) -> None:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != event_file.identity:
            return  # swapped since the walk saw it: the next read sees what is there then
        if info.st_size < event_file.offset:
            raise _Stop(f"it shrank to {info.st_size} bytes")
        event_file.size = info.st_size
        while not budget.spent() and not self.full:
            header = os.pread(descriptor, HEADER, event_file.offset)
            if len(header) < HEADER:
                return  # the rest is still being written
            (length,) = struct.unpack("<Q", header[:8])
            if struct.unpack("<I", header[8:])[0] != masked_crc32c(header[:8]):
                raise _Stop(f"no event record at byte {event_file.offset} (not an event file, or corrupt)")
            if length > self.max_record_bytes:
                raise _Stop(f"a record at byte {event_file.offset} says it holds {length} bytes")
            end = event_file.offset + HEADER + length + FOOTER
            if end > info.st_size:
                return  # the rest is still being written
            if length > MAX_SCALAR_RECORD_BYTES:
                event_file.offset = end  # a graph or an image: no scalar in it
                continue
            if length + HEADER + FOOTER > budget.bytes:
                return  # the next read goes on from here
            record = os.pread(descriptor, length + FOOTER, event_file.offset + HEADER)
            if len(record) < length + FOOTER:
                return
            data = record[:length]
            if struct.unpack("<I", record[length:])[0] != masked_crc32c(data):
                raise _Stop(f"the record at byte {event_file.offset} is corrupt (its checksum differs)")
            budget.bytes -= HEADER + length + FOOTER
            budget.records -= 1
            try:
                event = event_pb2.Event.FromString(data)
            except DecodeError:
                raise _Stop(f"the record at byte {event_file.offset} is no event") from None
            event_file.offset = end
            self.runs.add(_folder(event_file.relative))  # an event file indeed: its folder is a run
            read.extend((event_file, tag, int(event.step), number) for tag, number in _scalars(event_file, event))

    # -- the scalars --------------------------------------------------------------------------
    def _key(self, event_file: _EventFile, tag: str) -> str:
        if event_file.run is None:
            folder = _folder(event_file.relative)
            common = os.path.commonpath(sorted(self.runs)) if len(self.runs) > 1 else folder
            run = os.path.relpath(folder, common or ".")
            event_file.run = "" if run == "." else f"{run}/"
        return event_file.run + tag

    def _point(self, key: str, step: int, number: float, found: dict[int, dict[str, float]]) -> None:
        if not key or len(key) > MAX_KEY_CHARS or key in RESERVED_KEYS:
            self._tell(f"tensorboard: a tag named {key[:60]!r} cannot be a metric's name: left out")
            return
        if key not in self.latest and len(self.latest) >= MAX_TAGS:
            self._tell(f"tensorboard: more than {MAX_TAGS} different tags; the others are left out")
            return
        if (key, step) in self.points:
            return  # one point per tag and step: the first
        if len(self.points) >= self.max_points:
            self.full = True
            self._tell(
                f"tensorboard: {self.max_points} scalars read (LABTRAIN_TENSORBOARD_MAX_POINTS); "
                "the rest stay in the event files, which are the job's artifacts"
            )
            return
        self.points.add((key, step))
        found.setdefault(step, {})[key] = number
        if key not in self.latest or step >= self.latest[key][0]:
            self.latest[key] = (step, number)

    def _tell(self, message: str) -> None:
        if message not in self.told:
            self.told.add(message)
            self.report.event("log", {"message": message})


def _scalars(event_file: _EventFile, event: Any) -> list[tuple[str, float]]:
    """An event's scalars as (tag, value), finite ones only."""
    found = []
    for value in event.summary.value if event.HasField("summary") else ():
        tag = value.tag
        plugin = value.metadata.plugin_data.plugin_name
        if plugin and tag not in event_file.plugins:
            event_file.plugins[tag] = plugin  # TF2 writes a tag's metadata with its first value only
        number = _number(value, event_file.plugins.get(tag))
        if number is not None and math.isfinite(number):
            found.append((tag, number))
    return found


def _folder(relative: str) -> str:
    return os.path.dirname(relative) or "."


def _number(value: Any, plugin: str | None) -> float | None:
    """A summary value's scalar: a simple_value (TF1, torch), or a rank-0 number tensor (TF2,
    Keras) whose tag is a scalar's or says nothing of what it is."""
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind != "tensor" or plugin not in (None, SCALARS_PLUGIN):
        return None
    tensor = value.tensor
    # The shape is checked first: make_ndarray would make whatever size a hostile shape says.
    if tensor.tensor_shape.dim or tensor.tensor_shape.unknown_rank or tensor.dtype not in NUMBER_TYPES:
        return None
    try:
        array = tensor_util.make_ndarray(tensor)
    except (TypeError, ValueError):
        return None
    return float(array.item()) if array.size == 1 else None
