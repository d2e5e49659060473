"""The worker's heartbeat: its main process keeps a row in `workers` fresh while it runs.

GPU details come from NVIDIA's management library (nvidia-ml-py) where present, which
reads them without creating a CUDA context (a forked child could not use CUDA then).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from service.core.config import Settings
from service.core.db import Database
from service.lab import worker_registry
from workers import gpu_share

log = logging.getLogger("labtrain.worker")


def gpu_usage(handle) -> tuple[int | None, int | None]:
    """Utilisation (percent over the driver's last sample period) and memory in use (MiB)."""
    if handle is None:
        return None, None
    import pynvml

    try:
        used = pynvml.nvmlDeviceGetMemoryInfo(handle).used // (1024 * 1024)
        return int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu), int(used)
    except Exception:
        return None, None


class Heartbeat:
    def __init__(
        self,
        settings: Settings,
        name: str,
        queues: list[str],
        concurrency: int,
        capabilities: dict[str, Any] | None = None,
    ):
        self.db = Database(settings.database_url, null_pool=True)
        self.name, self.queues, self.concurrency = name, queues, concurrency
        self.capabilities = capabilities
        self._gpu = gpu_share.gpu_handle()
        self.gpu_name, self.gpu_memory_mb = gpu_share.gpu_details(self._gpu)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labtrain-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            with self.db.session() as session:
                worker_registry.remove(session, self.name)
        except Exception:
            log.warning("could not remove worker %s from the registry", self.name, exc_info=True)
        self.db.dispose()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                utilization, used = gpu_usage(self._gpu)
                with self.db.session() as session:
                    worker_registry.heartbeat(
                        session,
                        name=self.name,
                        queues=self.queues,
                        host=socket.gethostname(),
                        pid=os.getpid(),
                        concurrency=self.concurrency,
                        gpu_name=self.gpu_name,
                        gpu_memory_mb=self.gpu_memory_mb,
                        gpu_utilization=utilization,
                        gpu_memory_used_mb=used,
                        capabilities=self.capabilities,
                    )
            except Exception:  # the database may be restarting: try again next beat
                log.warning("heartbeat of %s failed", self.name, exc_info=True)
            self._stop.wait(worker_registry.HEARTBEAT_SECONDS)
