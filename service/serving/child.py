"""The program inside a model's process: load one model, then answer its predictions until the
asking side closes the pipe. It runs unprivileged in a sandbox; nothing it says is trusted by
the side that reads it (service/serving/process.py bounds and checks every answer).

Requests arrive on stdin; answers leave on what was stdout, which is kept for them alone:
whatever a library prints goes to stderr."""

from __future__ import annotations

import importlib
import os
import sys
import types
from typing import Any

from service.core.errors import ServiceError
from service.serving import frames

FAILED = "prediction_failed"


def main() -> int:
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    first, _ = frames.read(requests)
    model = types.SimpleNamespace(**first["model"])
    try:
        predictor = _predictor(first["predictor"])
        loaded = predictor.load(model)
    except BaseException as exc:  # any failure is the model's answer
        frames.write(answers, failure(exc, "the model cannot be loaded"))
        return 0
    frames.write(answers, {"ok": True})
    while True:
        try:
            request, parts = frames.read(requests)
        except frames.ChannelClosed:
            return 0
        images = list(zip(request.get("images") or [], parts)) if request.get("images") is not None else None
        try:
            output = predictor.predict(loaded, model, request.get("instances"), images)
            frames.write(answers, {"ok": True, "output": _plain(output)})
        except BaseException as exc:
            frames.write(answers, failure(exc, "the model could not answer"))


# How frameworks say an allocation failed, when they turn it into an error of their own
# (onnxruntime's std::bad_alloc, numpy's "Unable to allocate"): under rlimits, the memory limit.
OUT_OF_MEMORY = ("bad_alloc", "Failed to allocate memory", "Unable to allocate", "MemoryError")


def failure(exc: BaseException, doing: str) -> dict[str, Any]:
    if isinstance(exc, MemoryError) or any(sign in str(exc) for sign in OUT_OF_MEMORY):
        return {"error": {"status": 422, "code": "prediction_limit_exceeded", "message": "memory", "details": {}}}
    if isinstance(exc, ServiceError):
        return {"error": {"status": exc.status, "code": exc.code, "message": exc.message, "details": exc.details}}
    return {"error": {"status": 422, "code": FAILED, "message": f"{doing}: {type(exc).__name__}: {str(exc)[:500]}"}}


def _predictor(reference: str) -> Any:
    module, name = reference.split(":")
    if not module.startswith("service."):
        raise ValueError(f"no predictor {reference}")
    return getattr(importlib.import_module(module), name)()


def _plain(value: Any) -> Any:
    """JSON's own types (numpy's scalars become Python's)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _plain(value.tolist())
    return value


if __name__ == "__main__":
    sys.exit(main())
