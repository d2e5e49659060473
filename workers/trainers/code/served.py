"""The model a code job saved with `labtrain_job.save_model`, described before it is served.

The script wrote outputs/model/model.json (last) beside model.onnx or model.skops. Nothing of
that is trusted: the manifest is validated field by field here, and the model file itself is
never opened by the worker: the runner loads it once in a model's own process
(service/serving/check.py), where the ONNX file must be one self-contained file of standard
operators (service/code/onnx_check.py) and the skops file hold only the classes
service/core/sklearn_files.py allows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from workers.trainers.base import JobFailed, TrainedModel

MANIFEST = "model/model.json"
MAX_MANIFEST_BYTES = 1024 * 1024


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
        left_by_job=True,
    )


def _sklearn_model(
    manifest: SkopsManifest, path: Path, metrics: dict[str, Any], result: dict[str, Any]
) -> TrainedModel:
    if manifest.task == "classification":
        _check_names(manifest.class_names, len(manifest.classes or []))
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
        left_by_job=True,
    )


def _check_names(names: list[Any] | None, count: int) -> None:
    if names is not None and len(names) != count:
        raise JobFailed(
            "model_export_failed",
            f"save_model was given {len(names)} class names for a model of {count} classes: give one per class, "
            "in the order of the model's outputs",
        )


def _copy(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
