"""Whether an ONNX file from a student's job may be served: one self-contained file of standard
operators whose one input has the shape save_model recorded, with constants of bounded size.

The file is hostile data. onnxruntime reads a tensor's external data from the path the tensor
names, relative to the working directory even when the model comes as bytes, so no tensor
anywhere may have any: every message of the model is walked (initializers dense and sparse,
the values and indices of sparse tensors, attribute tensors, functions' bodies and default
attributes, the graphs of If, Loop and Scan at any depth), not a list of known places.
Nothing here runs the model; it needs only onnx, so an unprivileged process can run it. What
operators make at run time (ConstantOfShape, Expand, Tile) cannot be bounded from the file: the
memory limit of the process serving the model bounds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Operator sets onnxruntime implements; a node of another domain must call one of the model's
# own functions, whose bodies are checked like the graph.
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
# A model file is at most the largest file a job may write (LABTRAIN_MAX_OUTPUTS_MB, 512 by
# default); its constants, sparse ones counted as onnxruntime unpacks them, are held to that.
MAX_CONSTANT_BYTES = 512 * 1024**2
MAX_TENSOR_ELEMENTS = 2**31
STRING = 8  # TensorProto.STRING: its elements have no fixed size


class ModelRefused(ValueError):
    """The model cannot be served; the message says why."""


def check(model: bytes | Path, input_shape: list[int], *, max_bytes: int = MAX_CONSTANT_BYTES) -> None:
    """Raise ModelRefused unless `model` (its bytes or its path) may be served."""
    import onnx  # loaded with the first model checked

    size = len(model) if isinstance(model, bytes) else Path(model).stat().st_size
    if size > max_bytes:
        raise ModelRefused(f"it is larger than {max_bytes:,} bytes")
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:
        raise ModelRefused(f"{type(exc).__name__}: {str(exc)[:500]}") from None
    _check_contents(proto, max_bytes)
    try:  # after the walk: the checker would look for the files external data names
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ModelRefused(f"{type(exc).__name__}: {str(exc)[:500]}") from None
    _check_input(proto, input_shape)


def _check_contents(proto: Any, max_bytes: int) -> None:
    """Every tensor in the model self-contained and bounded, every node of a known domain."""
    from google.protobuf.message import Message

    functions = {(function.domain, function.name) for function in proto.functions}
    foreign: set[str] = set()
    total = 0
    pending = [proto]
    while pending:
        message = pending.pop()
        kind = message.DESCRIPTOR.full_name
        if kind == "onnx.TensorProto":
            _self_contained(message)
            total += _elements(message.dims) * _item_bytes(message)
        elif kind == "onnx.SparseTensorProto":
            total += _elements(message.dims) * _item_bytes(message.values)  # unpacked when loaded
        elif kind == "onnx.NodeProto" and not _known_operator(message, functions):
            foreign.add(message.domain)
        if total > max_bytes:
            raise ModelRefused(f"its constants hold more than {max_bytes:,} bytes")
        if kind == "onnx.TensorProto":
            continue  # nothing inside a tensor holds another (and its data need not be copied)
        for field, value in message.ListFields():
            if field.message_type is None:
                continue
            if isinstance(value, Message):
                pending.append(value)
            else:  # a repeated field of messages
                pending.extend(value)
    if foreign:
        raise ModelRefused(f"it uses operators outside ONNX's own ({', '.join(sorted(foreign))})")


def _known_operator(node: Any, functions: set[tuple[str, str]]) -> bool:
    return node.domain in STANDARD_DOMAINS or (node.domain, node.op_type) in functions


def _self_contained(tensor: Any) -> None:
    if tensor.data_location == tensor.EXTERNAL or len(tensor.external_data):
        raise ModelRefused(
            f"tensor {tensor.name[:100]!r} keeps its data in a file outside the model (external data); "
            "save_model writes one file"
        )


def _elements(dims: Any) -> int:
    count = 1
    for dim in dims:
        if dim < 0:
            raise ModelRefused(f"a constant has a negative dimension ({dim})")
        count *= dim
        if count > MAX_TENSOR_ELEMENTS:
            raise ModelRefused(f"a constant has more than {MAX_TENSOR_ELEMENTS:,} elements")
    return count


def _item_bytes(tensor: Any) -> int:
    import onnx.helper

    if tensor.data_type == STRING:
        return max((len(s) for s in tensor.string_data), default=1)
    try:
        return max(1, onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize)
    except Exception:  # a type numpy has no dtype for: counted as the widest
        return 16


def _check_input(proto: Any, input_shape: list[int]) -> None:
    constants = {t.name for t in proto.graph.initializer} | {t.values.name for t in proto.graph.sparse_initializer}
    inputs = [i for i in proto.graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise ModelRefused(f"it takes {len(inputs)} inputs; labtrain serves models of one input")
    dims = inputs[0].type.tensor_type.shape.dim
    declared = [d.dim_value if d.HasField("dim_value") else None for d in dims][1:]
    if len(declared) != len(input_shape) or any(d not in (None, s) for d, s in zip(declared, input_shape)):
        raise ModelRefused(f"its input has shape {declared}, not the {input_shape} save_model recorded")
