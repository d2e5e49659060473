"""A doorbell between the processes that share one SQLite file (the embedded deployment).

SQLite cannot notify, so a process that waits for another's commit (the dispatcher, the API's
event streams, the worker reading the serverless broker) binds a Unix datagram socket of its
own in a folder next to the database file; a writer, after its commit, sends a ring to
every socket in that folder: one byte (`ANY`: something was committed), or what changed, which
the waiter may read to skip what does not concern it (service/core/wakeups.py). A ring never
blocks the writer: a full socket queue means that waiter is already rung (`take` then says so
with `ANY`, since what the lost ring said is unknown), and a socket whose process is gone
(refused) is removed.

A ring can still be lost (a waiter restarting), so every waiter also looks on a timer: the
doorbell makes it faster, never correct. Where no doorbell can be made (the folder belongs to
someone else), `Doorbell.wait` sleeps a short poll instead and says "look".
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import select
import socket
import stat
import tempfile
import time
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

MAX_SOCKET_PATH = 107  # sun_path is 108 bytes, with the terminating NUL
NAME_LENGTH = 24  # "<pid>-<12 hex>" with room to spare
ANY = b"\1"  # a ring that says only "something was committed"
MAX_RING = 4096  # bytes a ring may carry


def _queue_limit() -> int:
    """How many rings a socket holds before a sender's is refused (Linux: max_dgram_qlen)."""
    try:
        return max(1, int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text()))
    except (OSError, ValueError):
        return 10  # the kernel's default


def folder_for(database: str | os.PathLike) -> Path:
    """The doorbell folder of a SQLite file: beside it, or, where that path would make a socket
    path too long for the kernel, a short one under the temporary folder, named by its hash."""
    path = Path(os.path.realpath(database))
    beside = path.with_name(f"{path.name}-doorbells")
    if len(os.fsencode(beside)) + 1 + NAME_LENGTH <= MAX_SOCKET_PATH:
        return beside
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    return _short_root() / digest


def _short_root() -> Path:
    return Path(tempfile.gettempdir()) / f"labtrain-{os.getuid()}"


def _private_folder(folder: Path) -> bool:
    """Make `folder` (and a short one's parent) 0700 and ours; False where it is someone else's."""
    for path in [folder.parent, folder] if folder.parent == _short_root() else [folder]:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            log.warning("cannot make the doorbell folder %s", path, exc_info=True)
            return False
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            log.warning("the doorbell folder %s is not a folder of this user: polling instead", path)
            return False
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.chmod(path, 0o700)  # only the service's user may ring
    return True


class Doorbell:
    """One waiter's socket. `wait(timeout)` returns True when rung (or, without a socket, after
    `fallback_s`: then the caller looks anyway), False when the timeout passed unrung."""

    def __init__(self, folder: Path, fallback_s: float):
        self.folder, self.fallback_s = folder, fallback_s
        self._pid = os.getpid()
        self._sock: socket.socket | None = None
        self.path: Path | None = None
        if not _private_folder(folder):
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        path = folder / f"{self._pid}-{secrets.token_hex(6)}"
        try:
            sock.bind(os.fspath(path))
        except OSError:
            log.warning("cannot bind a doorbell at %s: polling instead", path, exc_info=True)
            sock.close()
            return
        self._sock, self.path = sock, path

    @property
    def ready(self) -> bool:
        return self._sock is not None

    def fileno(self) -> int:
        return self._sock.fileno() if self._sock else -1

    def wait(self, timeout: float) -> bool:
        return bool(self.take(timeout))

    def take(self, timeout: float) -> list[bytes]:
        """The rings that came within `timeout` seconds (none: it passed unrung). `ANY` among them
        where a ring may have been lost to a full queue; without a socket, `[ANY]` after a short
        poll (the caller looks anyway)."""
        if self._sock is None:
            time.sleep(max(0.0, min(timeout, self.fallback_s)))
            return [ANY]
        poller = select.poll()  # not select(): a process may hold more than FD_SETSIZE files
        poller.register(self._sock, select.POLLIN)
        return self._take() if poller.poll(max(0.0, timeout) * 1000) else []

    def drain(self) -> bool:
        """Take every ring waiting in the socket; whether there was any."""
        return bool(self._take())

    def take_waiting(self) -> list[bytes]:
        """The rings waiting in the socket now, without waiting (`take`'s, for a reader that an
        event loop calls when the socket is readable)."""
        return self._take()

    def _take(self) -> list[bytes]:
        rings = []
        while self._sock is not None:
            try:
                rings.append(self._sock.recv(MAX_RING))
            except (BlockingIOError, InterruptedError):
                break
        if len(rings) >= _QUEUE_LIMIT:  # full: a sender's ring may have been refused
            rings.append(ANY)
        return rings

    def ring_self(self) -> None:
        """Wake this doorbell's own waiter (from another thread of its process)."""
        if self.path is not None:
            _send(self.path)

    def close(self) -> None:
        if self._sock is None:
            return
        self._sock.close()
        self._sock = None
        if os.getpid() == self._pid:  # a forked child must not take its parent's socket away
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


_sender: socket.socket | None = None


def _sender_socket() -> socket.socket:
    # No lock: a lock held by another thread at a fork would stay held in the child. Two threads
    # racing here make a socket each, and one is dropped; a forked child may share the socket.
    global _sender
    sender = _sender
    if sender is None:
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sender.setblocking(False)
        _sender = sender
    return sender


def _send(path: Path, ring: bytes = ANY) -> None:
    try:
        _sender_socket().sendto(ring, os.fspath(path))
    except (BlockingIOError, InterruptedError):
        pass  # its buffer is full: it is already rung
    except ConnectionRefusedError:
        _remove(path)  # no process reads it any more
    except FileNotFoundError:
        pass  # it closed meanwhile
    except OSError as error:
        if error.errno != errno.ENOTSOCK:
            log.debug("cannot ring %s", path, exc_info=True)


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def ring(folder: Path, message: bytes = ANY) -> None:
    """Ring every doorbell in `folder`, without ever blocking; `message`: what changed (at most
    MAX_RING bytes; a longer one rings as ANY)."""
    if len(message) > MAX_RING:
        message = ANY
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return  # no one waits yet
    except OSError:
        log.debug("cannot read the doorbell folder %s", folder, exc_info=True)
        return
    for name in names:
        _send(folder / name, message)


_QUEUE_LIMIT = _queue_limit()


@lru_cache(maxsize=16)
def sqlite_folder(database: str) -> Path | None:
    """The doorbell folder of a SQLite database path (None for an in-memory database)."""
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return folder_for(database)
