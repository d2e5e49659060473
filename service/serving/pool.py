"""The models an API process keeps warm: one process each, the least recently used stopped
when there are too many, any stopped once it has been idle for predict_idle_s."""

from __future__ import annotations

import atexit
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from service.core.config import Settings
from service.core.errors import ServiceError
from service.serving.process import ModelProcess, ProcessLimits

QUEUE_WAIT_S = 30.0  # how long a request waits behind others on the same model


def model_fields(model: Any) -> dict[str, Any]:
    """What a predictor reads of a model row, as plain data for its process."""
    return {
        "id": model.id,
        "framework": model.framework,
        "task": model.task,
        "input": model.input,
        "meta": model.meta,
        "classes": model.classes,
        "class_names": model.class_names,
    }


def predictor_reference(predictor: Any) -> str:
    """`module:Class` of a predictor, which the model's process imports (and nothing else)."""
    return f"{type(predictor).__module__}:{type(predictor).__qualname__}"


class ModelServers:
    def __init__(self, settings: Settings):
        self.size = max(1, settings.model_cache_size)
        self.idle_s = settings.predict_idle_s
        self.limits = ProcessLimits.from_settings(settings)
        self._servers: OrderedDict[str, ModelProcess] = OrderedDict()
        self._lock = threading.Lock()
        atexit.register(self.close)  # their cgroups and folders go with this process

    def predict(self, model: Any, predictor: Any, instances: Any, images: list[tuple[str, bytes]] | None) -> dict:
        server = self._server(model, predictor)
        if not server.lock.acquire(timeout=QUEUE_WAIT_S):
            raise ServiceError(
                f"the model is busy answering others; try again in a moment (waited {QUEUE_WAIT_S:g} s)",
                code="model_busy",
                status=429,
                field="id",
            )
        try:
            if server.proc is None:  # the first request starts it (others wait on the lock)
                server.start()
            elif not server.alive:
                raise ServiceError("the model's process ended", code="prediction_failed", status=422, field="id")
            return server.predict(instances, images)
        finally:
            server.lock.release()
            if not server.alive:
                self._forget(model.id, server)

    def _server(self, model: Any, predictor: Any) -> ModelProcess:
        stale: list[ModelProcess] = []
        with self._lock:
            server = self._servers.get(model.id)
            if server is None or (server.proc is not None and not server.alive):
                server = ModelProcess(
                    predictor_reference(predictor), model_fields(model), Path(model.artifact_path), self.limits
                )
                self._servers[model.id] = server
            self._servers.move_to_end(model.id)
            now = time.monotonic()
            for key, other in list(self._servers.items()):
                too_many = len(self._servers) > self.size
                if other is not server and (too_many or now - other.last_used > self.idle_s):
                    stale.append(self._servers.pop(key))
        for other in stale:  # not on this request's time
            threading.Thread(target=self._stop, args=(other,), daemon=True).start()
        return server

    def _forget(self, model_id: str, server: ModelProcess) -> None:
        with self._lock:
            if self._servers.get(model_id) is server:
                del self._servers[model_id]

    @staticmethod
    def _stop(server: ModelProcess) -> None:
        # Wait for a request it is answering (at most its time limit), then stop it.
        if server.lock.acquire(timeout=server.limits.time_limit_s + 1):
            server.lock.release()
        server.close()

    def close(self) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), OrderedDict()
        for server in servers:
            server.close()
