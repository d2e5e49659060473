"""An optimiser's state as JSON data, so that a search stepped in one process carries on in
another, or after an upgrade, without pickling any of our classes.

The state is the optimiser's attributes (its space comes from the search spec): numbers,
text, lists, dicts, tuples, numpy arrays (stored exactly, as base64 bytes) and its random
generator's state. Anything else is a TypeError, so an optimiser that grows an attribute
of another kind fails its round-trip test instead of failing a running search.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from service.metaheuristics.base import Optimizer

REBUILT_FROM_SPEC = ("space",)


def dump_state(optimizer: Optimizer) -> dict[str, Any]:
    return {name: _encode(value) for name, value in vars(optimizer).items() if name not in REBUILT_FROM_SPEC}


def load_state(optimizer: Optimizer, state: dict[str, Any]) -> Optimizer:
    """`optimizer` (freshly built from the spec) with the saved attributes put back."""
    for name, value in state.items():
        setattr(optimizer, name, _decode(value))
    return optimizer


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, np.generic):
        return _encode(value.item())
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        return {
            "__ndarray__": base64.b64encode(data.tobytes()).decode(),
            "dtype": data.dtype.str,
            "shape": list(data.shape),
        }
    if isinstance(value, np.random.Generator):
        return {"__generator__": value.bit_generator.state}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {"__dict__": [[_encode(k), _encode(v)] for k, v in value.items()]}
    raise TypeError(f"cannot store an optimiser attribute of type {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__float__" in value:
        return float(value["__float__"])
    if "__ndarray__" in value:
        data = base64.b64decode(value["__ndarray__"])
        return np.frombuffer(data, dtype=np.dtype(value["dtype"])).reshape(value["shape"]).copy()
    if "__generator__" in value:
        generator = np.random.default_rng()
        generator.bit_generator.state = value["__generator__"]
        return generator
    if "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    if "__dict__" in value:
        return {_decode(k): _decode(v) for k, v in value["__dict__"]}
    raise ValueError(f"not an encoded optimiser attribute: {sorted(value)}")
