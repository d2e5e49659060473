"""A second host on this machine: a network namespace joined to ours by a veth pair.

Processes started in it see only the link: they reach PostgreSQL and Redis through
forwarders listening on our end of it, so their traffic crosses the link, and taking our
end down cuts them off as a pulled cable would. Needs root (as CI has); everything made
is removed again.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import uuid


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class TcpForward:
    """Listens on `host` (a free port) and pipes each connection to 127.0.0.1:`target_port`."""

    def __init__(self, host: str, target_port: int):
        self.host, self.target_port = host, target_port
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, self.host, 0))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _handle(self, reader, writer) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, target_writer), self._pipe(target_reader, writer))

    @staticmethod
    async def _pipe(reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    async def _shutdown(self) -> None:
        self.server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


class SecondHost:
    def __init__(self, subnet: int = 77):
        if os.geteuid() != 0:
            raise PermissionError("a second host needs root (network namespaces and veth links)")
        tag = uuid.uuid4().hex[:6]
        self.namespace, self.ours, self.theirs = f"lt-{tag}", f"lt{tag}a", f"lt{tag}b"
        self.gateway, self.address = f"10.{subnet}.0.1", f"10.{subnet}.0.2"
        ip("netns", "add", self.namespace)
        try:
            ip("link", "add", self.ours, "type", "veth", "peer", "name", self.theirs)
            ip("link", "set", self.theirs, "netns", self.namespace)
            ip("addr", "add", f"{self.gateway}/30", "dev", self.ours)
            ip("link", "set", self.ours, "up")
            self._in_namespace("ip", "addr", "add", f"{self.address}/30", "dev", self.theirs)
            self._in_namespace("ip", "link", "set", self.theirs, "up")
            self._in_namespace("ip", "link", "set", "lo", "up")
        except Exception:
            self.remove()
            raise
        self.forwards: list[TcpForward] = []

    @property
    def prefix(self) -> list[str]:
        """Put before a command to run it on this host."""
        return ["ip", "netns", "exec", self.namespace]

    def forward(self, target_port: int) -> int:
        """A port on our end of the link that reaches 127.0.0.1:`target_port` here."""
        forward = TcpForward(self.gateway, target_port)
        self.forwards.append(forward)
        return forward.port

    def cut(self) -> None:
        ip("link", "set", self.ours, "down")

    def remove(self) -> None:
        for forward in getattr(self, "forwards", []):
            forward.stop()
        subprocess.run(["ip", "link", "del", self.ours], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)

    def _in_namespace(self, *command: str) -> None:
        subprocess.run([*self.prefix, *command], check=True, capture_output=True, text=True)
