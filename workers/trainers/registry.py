"""A decorator registry of trainers by job family."""
from __future__ import annotations

from typing import Callable

_TRAINERS: dict[str, Callable] = {}


def register(family: str) -> Callable[[Callable], Callable]:
    def decorate(train: Callable) -> Callable:
        _TRAINERS[family] = train
        return train

    return decorate


def get_trainer(family: str) -> Callable:
    if family not in _TRAINERS:
        # Trainers register on import; import lazily so heavy frameworks load only when needed.
        import importlib

        importlib.import_module(f"workers.trainers.{family}")
    return _TRAINERS[family]
