"""The wire between a model's process and the side that asks it: messages of one JSON header
and any number of binary parts (uploaded pictures), each part a length-prefixed frame."""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any, BinaryIO

LENGTH = struct.Struct(">I")
MAX_ANSWER_BYTES = 256 * 1024 * 1024  # an answer of many instances' probabilities stays far below


class ChannelClosed(EOFError):
    """The other side ended (its process died, or closed the pipe)."""


class TimedOut(TimeoutError):
    """No whole answer within the time allowed."""


def encode(header: dict[str, Any], parts: list[bytes] = ()) -> bytes:
    body = json.dumps({**header, "parts": len(parts)}, separators=(",", ":")).encode()
    chunks = [LENGTH.pack(len(body)), body]
    for part in parts:
        chunks += [LENGTH.pack(len(part)), part]
    return b"".join(chunks)


def write(stream: BinaryIO, header: dict[str, Any], parts: list[bytes] = ()) -> None:
    stream.write(encode(header, parts))
    stream.flush()


def read(stream: BinaryIO) -> tuple[dict[str, Any], list[bytes]]:
    """One message from a blocking stream (the model's side: it waits for the next request)."""
    header = json.loads(_exactly(stream.read, _length(stream.read)))
    parts = [_exactly(stream.read, _length(stream.read)) for _ in range(int(header.pop("parts", 0)))]
    return header, parts


def read_by(fd: int, deadline: float, most: int = MAX_ANSWER_BYTES) -> tuple[dict[str, Any], list[bytes]]:
    """One message from a pipe, by a deadline (time.monotonic()); the asking side's read, which
    must never wait on a model longer than its limit allows."""

    def chunk(size: int) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimedOut()
        return os.read(fd, size)

    left = most

    def bounded() -> bytes:  # the header and every part together: at most `most` bytes
        nonlocal left
        size = _length(chunk)
        if size > left:
            raise ValueError(f"an answer of more than {most} bytes")
        left -= size
        return _exactly(chunk, size)

    header = json.loads(bounded())
    parts = [bounded() for _ in range(int(header.pop("parts", 0)))]
    return header, parts


def _length(reader) -> int:
    return LENGTH.unpack(_exactly(reader, LENGTH.size))[0]


def _exactly(reader, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = reader(size - len(data))
        if not chunk:
            raise ChannelClosed()
        data += chunk
    return bytes(data)
