"""Starts a code job's program with its tracking endpoint reachable at http://127.0.0.1:<port>.

Run by the sandbox in place of the program (standard library only, by path, never imported):

    python -I -S forwarder.py --socket /run/labtrain/tracking.sock -- python train.py ...

It listens on 127.0.0.1 in the job's own network namespace (a free port), sets
MLFLOW_TRACKING_URI to it, starts a forwarding process that pipes each connection to the Unix
socket the worker serves for this job, and then becomes the program (exec): the program keeps
this process's pid, signals, output and exit status. The forwarder is not the program's child
(a script's os.wait() never meets it); it ends when the program does (with the sandbox's pid
namespace, or by watching the program where there is none), and its output goes nowhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import signal
import socket
import sys

TRACKING_URI = "MLFLOW_TRACKING_URI"
MAX_CONNECTIONS = 32  # at once; past it a connection is closed at once (the client retries)
CHUNK = 64 * 1024
MAX_BUFFERED = 256 * 1024  # per direction: past it the sending side is not read until it drains


def main(argv: list[str]) -> None:
    socket_path, program = _arguments(argv)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    os.environ[TRACKING_URI] = f"http://127.0.0.1:{port}"
    _start_forwarder(listener, socket_path, os.getpid())
    listener.close()  # the program does not hold the port
    try:
        os.execvp(program[0], program)
    except OSError as exc:
        print(f"cannot start {program[0]}: {exc}", file=sys.stderr)
        os._exit(127)


def _arguments(argv: list[str]) -> tuple[str, list[str]]:
    if len(argv) < 4 or argv[0] != "--socket" or argv[2] != "--":
        print("usage: forwarder.py --socket PATH -- PROGRAM [ARGS...]", file=sys.stderr)
        sys.exit(2)
    return argv[1], argv[3:]


def _start_forwarder(listener: socket.socket, socket_path: str, program_pid: int) -> None:
    """A grandchild that forwards; the child between them exits at once, so the forwarder is
    adopted by the namespace's init and the program has no child of ours to reap."""
    watch = _open_pidfd(program_pid)  # opened while the program surely exists
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        if watch is not None:
            os.close(watch)
        return
    try:
        if os.fork() == 0:
            _become_forwarder(listener, socket_path, program_pid, watch)
    finally:
        os._exit(0)


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _become_forwarder(listener: socket.socket, socket_path: str, program_pid: int, watch: int | None) -> None:
    # It stays in the program's session and cgroup: stopping the job stops it too.
    for signum in (signal.SIGUSR1, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_IGN)  # meant for the program; SIGTERM and SIGKILL still end it
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    keep = {listener.fileno(), *([watch] if watch is not None else [])}
    for fd in _open_fds():  # the job's events pipe among them: the worker reads it to its end
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    folder, name = os.path.split(socket_path)
    os.chdir(folder or ".")  # a relative name: a socket's path has a length limit
    Forwarder(listener, name, program_pid, watch).run()


def _open_fds() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(3, 1024))


class _Pipe:
    """One connection: the program's side and the worker's, each with what waits to be sent to it."""

    def __init__(self, client: socket.socket, upstream: socket.socket):
        self.ends = {client: upstream, upstream: client}
        self.waiting: dict[socket.socket, bytearray] = {client: bytearray(), upstream: bytearray()}
        self.read_done: set[socket.socket] = set()  # sides that sent their last byte

    def finished(self) -> bool:
        return len(self.read_done) == 2 and not any(self.waiting.values())


class Forwarder:
    def __init__(self, listener: socket.socket, socket_name: str, program_pid: int, watch: int | None):
        self.listener, self.socket_name, self.program_pid, self.watch = listener, socket_name, program_pid, watch
        self.selector = selectors.DefaultSelector()
        self.pipes: dict[socket.socket, _Pipe] = {}

    def run(self) -> None:
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ)
        if self.watch is not None:
            self.selector.register(self.watch, selectors.EVENT_READ)
        while True:
            for key, _mask in self.selector.select(timeout=1.0):
                if key.fileobj is self.listener:
                    self._accept()
                elif key.fileobj == self.watch:
                    return  # the program ended
                else:
                    self._service(key.fileobj)
            if self.watch is None and not _alive(self.program_pid):
                return

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        if len(self.pipes) // 2 >= MAX_CONNECTIONS:
            client.close()
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.socket_name)
        except OSError:  # the worker no longer serves this job
            upstream.close()
            client.close()
            return
        pipe = _Pipe(client, upstream)
        for end in (client, upstream):
            end.setblocking(False)
            self.pipes[end] = pipe
            self.selector.register(end, selectors.EVENT_READ)

    def _service(self, end: socket.socket) -> None:
        pipe = self.pipes.get(end)
        if pipe is None:
            return
        try:
            self._flush(pipe, end)
            self._receive(pipe, end)
        except OSError:
            self._close(pipe)
            return
        if pipe.finished():
            self._close(pipe)
        else:
            self._watch(pipe)

    def _receive(self, pipe: _Pipe, end: socket.socket) -> None:
        other = pipe.ends[end]
        if end in pipe.read_done or len(pipe.waiting[other]) >= MAX_BUFFERED:
            return
        try:
            data = end.recv(CHUNK)
        except BlockingIOError:
            return
        if not data:
            pipe.read_done.add(end)
        else:
            pipe.waiting[other] += data
        self._flush(pipe, other)

    def _flush(self, pipe: _Pipe, end: socket.socket) -> None:
        """Send what waits for `end`; once its peer has finished and all is sent, end its writes too."""
        waiting = pipe.waiting[end]
        if waiting:
            try:
                sent = end.send(waiting)
            except BlockingIOError:
                sent = 0
            del waiting[:sent]
        if not waiting and pipe.ends[end] in pipe.read_done:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_WR)

    def _watch(self, pipe: _Pipe) -> None:
        """Read a side while its peer has room; wait to write where something is waiting."""
        for end, other in pipe.ends.items():
            events = 0
            if end not in pipe.read_done and len(pipe.waiting[other]) < MAX_BUFFERED:
                events |= selectors.EVENT_READ
            if pipe.waiting[end]:
                events |= selectors.EVENT_WRITE
            registered = end in self.selector.get_map()
            if events and registered:
                self.selector.modify(end, events)
            elif events:
                self.selector.register(end, events)
            elif registered:
                self.selector.unregister(end)

    def _close(self, pipe: _Pipe) -> None:
        for end in pipe.ends:
            self.pipes.pop(end, None)
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(end)
            end.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


if __name__ == "__main__":
    main(sys.argv[1:])
