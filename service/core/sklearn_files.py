"""Which types a skops model file may hold, and loading it with only those.

A .skops file names, for each object, the kind of node that rebuilds it and the Python name it
is rebuilt from; skops imports that name and calls it (a class with the file's arguments, a
type's constructor). Models come from students' jobs, so a file is hostile data: every name in
it must be one of scikit-learn's estimator classes (its own registry) or one of the exact
helper types fitted estimators hold (trees, losses, numpy's scalars), each of them a class.
A name skops would trust by default (numpy's ufuncs, say) is checked all the same, and nodes
that rebuild a function, a partial, a bound method or an operator are never allowed.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import io
import json
import types
import zipfile
from pathlib import Path
from typing import Any

# Gradient boosting's and the linear models' losses: each a Python class over a Cython one.
LOSSES = (
    "AbsoluteError",
    "ExponentialLoss",
    "HalfBinomialLoss",
    "HalfGammaLoss",
    "HalfMultinomialLoss",
    "HalfPoissonLoss",
    "HalfSquaredError",
    "HalfTweedieLoss",
    "HalfTweedieLossIdentity",
    "HuberLoss",
    "PinballLoss",
)
# The few types beside the estimators that skops writes for the models labtrain makes (every
# classic algorithm in its pipeline) and for the ones students save with save_model; found
# by saving them (tests/service/core/test_sklearn_files.py saves them again).
HELPER_TYPES = (
    # plain values: containers, and the key types of dicts
    *(f"builtins.{name}" for name in ("dict", "list", "tuple", "slice", "str", "int", "float", "bool")),
    # arrays, their dtypes and scalars, and random states
    "numpy.ndarray",
    "numpy.dtype",
    *(f"numpy.{name}" for name in ("bool", "float16", "float32", "float64")),
    *(f"numpy.{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)),
    "numpy.random.mtrand.RandomState",
    "numpy.random._generator.Generator",
    # what fitted estimators hold: trees, neighbour searches, losses, optimisers
    "sklearn.utils._bunch.Bunch",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    *(
        f"sklearn.metrics._dist_metrics.{name}Distance64"
        for name in ("Euclidean", "Manhattan", "Chebyshev", "Minkowski")
    ),
    *(f"sklearn._loss._loss.Cy{name}" for name in LOSSES),
    *(f"sklearn._loss.loss.{name}" for name in LOSSES),
    *(
        f"sklearn._loss.link.{name}"
        for name in ("IdentityLink", "LogLink", "LogitLink", "HalfLogitLink", "MultinomialLogit", "Interval")
    ),
    *(
        f"sklearn.linear_model._sgd_fast.{name}"
        for name in ("Hinge", "SquaredHinge", "ModifiedHuber", "EpsilonInsensitive", "SquaredEpsilonInsensitive")
    ),
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
)
# A random Generator names its bit generator inside its state, and skops builds it by that name.
BIT_GENERATORS = frozenset({"MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64"})

# Nodes that build plain data, or an instance of the class the file names (checked above);
# a kind skops adds later is refused until it is looked at.
NODE_KINDS = frozenset(
    {
        "JsonNode",  # json.loads of its content; its name is never imported
        "DictNode",
        "ListNode",
        "SetNode",
        "TupleNode",
        "BytesNode",
        "BytearrayNode",
        "SliceNode",
        "TypeNode",  # the class itself, as a value (a dtype parameter)
        "ObjectNode",
        "ConstructorFromReduceNode",
        "CachedNode",  # a second reference to a node already checked
        "NdArrayNode",  # numpy's own format, read without pickles
        "MaskedArrayNode",
        "DTypeNode",
        "RandomStateNode",
        "RandomGeneratorNode",  # its bit generator's name is checked too
        "SparseMatrixNode",
        "TreeNode",
        "LossNode",
    }
)
# What a zip may unpack to: the arrays are read into memory (a zip bomb would exhaust it).
MAX_UNPACKED_BYTES = 4 * 1024**3


class ModelTypesRefused(ValueError):
    """The file holds types outside the allowlist; `refused` names them."""

    def __init__(self, refused: list[str]):
        self.refused = refused
        super().__init__(
            f"the model file holds types labtrain does not load: {', '.join(refused)}; only scikit-learn's "
            "own estimators and transformers (and the arrays and trees they hold) can be loaded"
        )


@functools.cache
def allowed_types() -> frozenset[tuple[str, str]]:
    """(module, name) of every class a file may name: scikit-learn's estimators and HELPER_TYPES."""
    from sklearn.utils.discovery import all_estimators  # imports all of scikit-learn: once, when first needed

    classes = [cls for _, cls in all_estimators()]
    classes.extend(_resolved(name) for name in HELPER_TYPES)
    return frozenset((cls.__module__, cls.__name__) for cls in classes)


def _resolved(dotted: str) -> type:
    """The class `dotted` names, found where skops will look for it; anything but a class fails."""
    module, _, name = dotted.rpartition(".")
    found = getattr(importlib.import_module(module), name)
    if not inspect.isclass(found) or isinstance(found, types.BuiltinFunctionType):
        raise TypeError(f"{dotted} is not a class")
    if (found.__module__, found.__name__) != (module, name):
        raise TypeError(f"{dotted} is known as {found.__module__}.{found.__name__}")
    return found


def file_types(data: bytes) -> tuple[set[str], list[str]]:
    """The names a skops file asks to build, and those among them the allowlist refuses.

    The schema is read as plain JSON, every node in it wherever it sits; nothing it names is imported.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        if sum(info.file_size for info in archive.infolist()) > MAX_UNPACKED_BYTES:
            raise ValueError("the model file unpacks to more than 4 GiB")
        schema = json.loads(archive.read("schema.json"))
    if not isinstance(schema, dict) or schema.get("protocol") != _protocol():
        raise ValueError("the model file was not written by this version of skops")
    allowed = allowed_types()
    names: set[str] = set()
    refused: set[str] = set()
    pending: list[Any] = [schema]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        pending.extend(item.values())
        if "__loader__" not in item:
            continue
        kind, module, name = item.get("__loader__"), item.get("__module__"), item.get("__class__")
        if not all(isinstance(part, str) for part in (kind, module, name)):
            raise ValueError("the model file is malformed: a node without a loader, module or class")
        if kind not in NODE_KINDS:
            refused.add(f"{module}.{name} ({_kind_words(kind)})")
        elif kind != "JsonNode":
            names.add(f"{module}.{name}")
            if (module, name) not in allowed:
                refused.add(f"{module}.{name}")
            if kind == "RandomGeneratorNode" and _bit_generator(item) not in BIT_GENERATORS:
                refused.add(f"numpy.random.{_bit_generator(item)} (a bit generator)")
    return names, sorted(refused)


def _bit_generator(node: dict[str, Any]) -> str | None:
    """The name skops builds a Generator's bit generator from (a string in its saved state)."""
    try:
        name = json.loads(node["content"]["bit_generator"]["content"]["bit_generator"]["content"])
    except (KeyError, TypeError, ValueError):
        return None
    return name if isinstance(name, str) else None


def _protocol() -> int:
    from skops.io._protocol import PROTOCOL  # an older protocol rebuilds with other, older node classes

    return PROTOCOL


def _kind_words(kind: str) -> str:
    return {
        "FunctionNode": "a function",
        "PartialNode": "a partial function",
        "MethodNode": "a bound method",
        "OperatorFuncNode": "an operator function",
    }.get(kind, f"a {kind}")


def loads_sklearn(data: bytes) -> Any:
    """The estimator in a skops file, built only when every type in it is allowed."""
    import skops.io  # loaded with the first model, not with every process that imports this one

    names, refused = file_types(data)
    if refused:
        raise ModelTypesRefused(refused)
    # skops audits the tree again against exactly these names: a node it sees and this walk
    # did not is refused there.
    model = skops.io.loads(data, trusted=sorted(names))
    _refuse_file_readers(model)
    return model


def _refuse_file_readers(model: Any) -> None:
    """An allowed class may still be told to open files: a text vectorizer whose `input` is
    "filename" or "file" would read whatever path a prediction names."""
    params = model.get_params(deep=True) if hasattr(model, "get_params") else {}
    readers = sorted(name for name, value in params.items() if name.split("__")[-1] == "input" and value != "content")
    if readers:
        raise ValueError(f"the model reads files at prediction time ({', '.join(readers)}); use input='content'")


def load_sklearn(path: str | Path) -> Any:
    return loads_sklearn(Path(path).read_bytes())
