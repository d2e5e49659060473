"""The model a code job saved with `labtrain_job.save_model`, checked before it is served.

The script wrote outputs/model/model.json (last) beside model.onnx or model.skops. Nothing of
that is trusted: the manifest is validated field by field, the ONNX file must be one
self-contained file of standard operators (no external data, which could name any path on
the server), and the skops file must hold scikit-learn's and numpy's types only. Neither
check runs the file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from service.core.storage import load_sklearn
from workers.trainers.base import JobFailed, TrainedModel

MANIFEST = "model/model.json"
MAX_MANIFEST_BYTES = 1024 * 1024
# Operator sets onnxruntime implements; a model-local function may add its own domain.
STANDARD_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputShape(_Strict):
    shape: list[int] = Field(max_length=8)
    dtype: Literal["float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"]

    @field_validator("shape")
    @classmethod
    def _positive(cls, shape: list[int]) -> list[int]:
        if any(not 1 <= d <= 1_000_000 for d in shape):
            raise ValueError("every dimension must be between 1 and 1,000,000")
        return shape


class Preprocess(_Strict):
    size: tuple[int, int] | None = None
    channels: Literal[1, 3] | None = None
    scale: float | None = Field(None, gt=0, lt=1e6)
    invert: bool = False
    mean: list[float] | None = Field(None, min_length=1, max_length=3)
    std: list[float] | None = Field(None, min_length=1, max_length=3)

    @field_validator("size")
    @classmethod
    def _size(cls, size: tuple[int, int] | None) -> tuple[int, int] | None:
        if size is not None and not all(1 <= side <= 4096 for side in size):
            raise ValueError("each side must be between 1 and 4096 pixels")
        return size

    @field_validator("std")
    @classmethod
    def _std(cls, std: list[float] | None) -> list[float] | None:
        if std is not None and not all(s > 0 for s in std):
            raise ValueError("standard deviations must be positive")
        return std


Label = str | int | float


class OnnxManifest(_Strict):
    format: Literal["onnx"]
    trained_with: Literal["pytorch", "tensorflow"]
    file: Literal["model.onnx"]
    input: InputShape
    output: dict[str, list[int]]
    task: Literal["classification", "regression", "output"]
    probabilities: bool = False
    class_names: list[Label] | None = Field(None, max_length=100_000)
    preprocess: Preprocess | None = None
    name: str = Field("", max_length=200)
    check: dict[str, float] = Field(default_factory=dict)


class Features(_Strict):
    features: list[str] = Field(min_length=1, max_length=100_000)
    categorical: list[str] = Field(default_factory=list, max_length=100_000)


class SkopsManifest(_Strict):
    format: Literal["skops"]
    trained_with: Literal["sklearn"]
    file: Literal["model.skops"]
    input: Features
    task: Literal["classification", "regression"]
    classes: list[Label] | None = Field(None, max_length=100_000)
    class_names: list[Label] | None = Field(None, max_length=100_000)
    preprocess: None = None
    name: str = Field("", max_length=200)


def saved_model(outputs: Path, metrics: dict[str, Any], result: dict[str, Any]) -> TrainedModel | None:
    """The served model described by outputs/model/model.json, or None where the job saved none."""
    manifest_path = outputs / MANIFEST
    if not manifest_path.is_file() or manifest_path.is_symlink():
        return None
    manifest = _manifest(manifest_path)
    path = manifest_path.parent / manifest.file
    if not path.is_file() or path.is_symlink():
        raise JobFailed("model_export_failed", f"save_model wrote {MANIFEST} but not model/{manifest.file}")
    if isinstance(manifest, SkopsManifest):
        return _sklearn_model(manifest, path, metrics, result)
    return _onnx_model(manifest, path, metrics, result)


def _manifest(path: Path) -> OnnxManifest | SkopsManifest:
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError("it is larger than 1 MB")
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError("it is not a JSON object")
        kind = SkopsManifest if raw.get("format") == "skops" else OnnxManifest
        return kind.model_validate(raw)
    except (ValueError, OSError, ValidationError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise JobFailed(
            "model_export_failed",
            f"{MANIFEST} is not what labtrain_job.save_model writes ({first}); save the model with save_model",
        ) from None


def _onnx_model(manifest: OnnxManifest, path: Path, metrics: dict[str, Any], result: dict[str, Any]) -> TrainedModel:
    check_onnx_file(path, manifest.input.shape)
    outputs = manifest.output.get("shape", [])
    classes = None
    if manifest.task == "classification":
        if len(outputs) != 1:
            raise JobFailed(
                "model_export_failed",
                f"a classifier gives one score per class, but this model's outputs have shape {outputs}: "
                "pass save_model task='output' (raw arrays) or task='regression'",
            )
        classes = list(range(outputs[0]))
        _check_names(manifest.class_names, len(classes))
    summary = (
        f"{manifest.name or 'model'} from {manifest.trained_with} code, served as ONNX: input "
        f"{manifest.input.shape} {manifest.input.dtype} -> output {outputs}"
    )
    return TrainedModel(
        artifact=path,
        write=_copy,
        suffix=".onnx",
        framework="onnx",
        task=manifest.task,
        input=manifest.input.model_dump(),
        metrics=metrics,
        algorithm=manifest.name or None,
        classes=classes,
        class_names=manifest.class_names,
        summary=summary,
        extra={
            "format": "onnx",
            "trained_with": manifest.trained_with,
            "output_shape": outputs,
            "outputs_probabilities": manifest.probabilities,
            "preprocess": manifest.preprocess.model_dump() if manifest.preprocess else None,
            "export_check": manifest.check,
        },
        result=result,
    )


def _sklearn_model(
    manifest: SkopsManifest, path: Path, metrics: dict[str, Any], result: dict[str, Any]
) -> TrainedModel:
    if manifest.task == "classification":
        _check_names(manifest.class_names, len(manifest.classes or []))
    try:
        load_sklearn(path)  # trusting scikit-learn's and numpy's types only
    except Exception as exc:
        raise JobFailed(
            "model_export_failed",
            f"the saved scikit-learn model cannot be served: {exc}. The API never runs your code, so only "
            "scikit-learn's own estimators can be served",
        ) from None
    return TrainedModel(
        artifact=path,
        write=_copy,
        suffix=".skops",
        framework="sklearn",
        task=manifest.task,
        input=manifest.input.model_dump(),
        metrics=metrics,
        algorithm=manifest.name or None,
        classes=manifest.classes,
        class_names=manifest.class_names,
        summary=f"{manifest.name or 'estimator'} from scikit-learn code, saved with skops",
        extra={"format": "skops", "trained_with": "sklearn"},
        result=result,
    )


def _check_names(names: list[Any] | None, count: int) -> None:
    if names is not None and len(names) != count:
        raise JobFailed(
            "model_export_failed",
            f"save_model was given {len(names)} class names for a model of {count} classes: give one per class, "
            "in the order of the model's outputs",
        )


def check_onnx_file(path: Path, input_shape: list[int]) -> None:
    """One self-contained file of standard operators whose one input has the declared shape."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    def refuse(why: str) -> JobFailed:
        return JobFailed("model_export_failed", f"the saved ONNX model cannot be served: {why}")

    try:
        proto = onnx.load(str(path), load_external_data=False)
        nodes = _all_nodes(proto)
    except Exception as exc:
        raise refuse(f"{type(exc).__name__}: {str(exc)[:500]}") from None
    tensors = [t for graph in _graphs(proto.graph) for t in graph.initializer] + [
        tensor for node in nodes for attribute in node.attribute for tensor in (attribute.t, *attribute.tensors)
    ]
    # Before the checker, which would look for the named files (relative to where we run).
    if any(uses_external_data(tensor) for tensor in tensors):
        raise refuse("it keeps weights in files outside it (external data); save_model writes one file")
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise refuse(f"{type(exc).__name__}: {str(exc)[:500]}") from None
    local = {function.domain for function in proto.functions}
    foreign = {node.domain for node in nodes} - STANDARD_DOMAINS - local
    if foreign:
        raise refuse(f"it uses operators outside ONNX's own ({', '.join(sorted(foreign))})")
    inputs = [i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    if len(inputs) != 1:
        raise refuse(f"it takes {len(inputs)} inputs; labtrain serves models of one input")
    dims = inputs[0].type.tensor_type.shape.dim
    declared = [d.dim_value if d.HasField("dim_value") else None for d in dims][1:]
    if len(declared) != len(input_shape) or any(d not in (None, s) for d, s in zip(declared, input_shape)):
        raise refuse(f"its input has shape {declared}, not the {input_shape} save_model recorded")


def _graphs(graph: Any) -> list[Any]:
    """A graph and every graph inside it (the branches of If, the bodies of Loop and Scan)."""
    found = [graph]
    for node in graph.node:
        for attribute in node.attribute:
            for inner in (attribute.g, *attribute.graphs) if attribute.HasField("g") else attribute.graphs:
                found.extend(_graphs(inner))
    return found


def _all_nodes(proto: Any) -> list[Any]:
    nodes = [node for graph in _graphs(proto.graph) for node in graph.node]
    for function in proto.functions:
        nodes.extend(function.node)
    return nodes


def _copy(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
