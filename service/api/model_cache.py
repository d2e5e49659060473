"""Loaded models, kept in the API process (artifacts never change once written)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class ModelCache:
    """A small least-recently-used cache of loaded models, safe across request threads."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_id: str, path: str, load: Callable[[str], Any]) -> Any:
        with self._lock:
            if model_id in self._items:
                self._items.move_to_end(model_id)
                return self._items[model_id]
        loaded = load(path)  # outside the lock: loading can take a while
        with self._lock:
            self._items[model_id] = loaded
            self._items.move_to_end(model_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return loaded
