"""`save_model`: a trained model saved so that labtrain serves it (a model page, predict,
download) without ever running the script's code outside its sandbox.

PyTorch modules and Keras models are exported to ONNX, a file of operators and weights that
onnxruntime runs; scikit-learn estimators are saved with skops, which labtrain loads with an
allowlist of scikit-learn's classes (never a function). Either way the export is checked here, in the job: the
saved model must give the framework's own outputs for `example_input`. What is saved goes to
outputs/model/ (model.onnx or model.skops, and model.json describing it, written last).

The frameworks are imported only when the model is one of theirs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import re
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

from labtrain_job.channel import outputs_dir, send

MODEL_FOLDER = "model"
MANIFEST = "model.json"
TASKS = ("classification", "regression", "output")
PREPROCESS_KEYS = {"size", "channels", "scale", "invert", "mean", "std"}
# The saved model must give the framework's outputs within these (float32 arithmetic in
# another order differs in the last bits; a wrong translation differs far more).
RTOL, ATOL = 1e-3, 1e-4
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SUMMARY = "## Exception summary"


class ModelExportError(RuntimeError):
    """The model could not be saved for serving; the message says why and what to do."""


def save_model(
    model: Any,
    example_input: Any,
    *,
    preprocess: dict[str, Any] | None = None,
    classes: list[Any] | None = None,
    task: str | None = None,
) -> Path:
    """Save `model` so that labtrain serves it: `POST /api/v1/models/<id>/predict` answers with it
    once the job succeeds.

    - `model`: a `torch.nn.Module`, a Keras model, or a scikit-learn estimator or pipeline.
    - `example_input`: one batch of real inputs, batch first, of the dtype the model takes
      (float32 images, int64 token ids, a DataFrame or array of features).
    - `classes`: the class names, in the order of the model's outputs (of `model.classes_`
      for scikit-learn): predict answers them as `labels`.
    - `task`: "classification" (outputs are class scores), "regression" or "output" (raw
      arrays: an autoencoder's or a generator's); by default a model with two or more outputs
      per instance is a classifier.
    - `preprocess`: how an uploaded image becomes an input, for image models:
      `{"size": [h, w], "channels": 1 or 3, "scale": 1/255, "invert": False, "mean": [...], "std": [...]}`.
      A model of one 28x28 channel gets MNIST's preparation without it.

    Returns the saved model's path. Raises ModelExportError with the reason and the fix when
    the model cannot be saved (and the job then fails saying so).
    """
    folder = outputs_dir() / MODEL_FOLDER
    try:
        _check_options(preprocess, classes, task)
        framework = _framework(model)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST).unlink(missing_ok=True)  # a model is taken only once its manifest is written
        if framework == "sklearn":
            manifest = _save_sklearn(model, example_input, folder)
        else:
            served, inputs, own = (_torch_reference if framework == "pytorch" else _keras_reference)(
                model, example_input
            )
            manifest = (_export_torch if framework == "pytorch" else _export_keras)(served, inputs, folder, own)
            expected = own(inputs.numpy() if hasattr(inputs, "numpy") else inputs)
            manifest["task"] = task or _infer_task(expected)
            manifest["probabilities"] = _are_probabilities(expected)
    except ModelExportError as exc:
        send({"model_error": str(exc)})
        raise
    if manifest["task"] == "classification" and classes is not None:
        manifest["class_names"] = [c if isinstance(c, (int, float, str)) else str(c) for c in classes]
    manifest["preprocess"] = preprocess
    manifest["name"] = type(model).__name__
    _write_json(folder / MANIFEST, manifest)
    send({"model_saved": f"{MODEL_FOLDER}/{manifest['file']}"})
    return folder / manifest["file"]


def _check_options(preprocess: Any, classes: Any, task: Any) -> None:
    if task is not None and task not in TASKS:
        raise ModelExportError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    if classes is not None and not isinstance(classes, (list, tuple)):
        raise ModelExportError("classes must be a list of class names, in the order of the model's outputs")
    if preprocess is not None:
        if not isinstance(preprocess, dict) or set(preprocess) - PREPROCESS_KEYS:
            raise ModelExportError(f"preprocess must be a dict with keys among {', '.join(sorted(PREPROCESS_KEYS))}")
        try:
            json.dumps(preprocess)
        except (TypeError, ValueError):
            raise ModelExportError("preprocess must hold plain numbers, lists and booleans") from None


def _framework(model: Any) -> str:
    torch, keras, sklearn = (sys.modules.get(name) for name in ("torch", "keras", "sklearn"))
    if torch is not None and isinstance(model, torch.nn.Module):
        return "pytorch"
    if keras is not None and isinstance(model, keras.Model):
        return "tensorflow"
    if sklearn is not None and isinstance(model, sys.modules["sklearn.base"].BaseEstimator):
        return "sklearn"
    raise ModelExportError(
        f"save_model takes a torch.nn.Module, a Keras model or a scikit-learn estimator, not {type(model).__name__}; "
        "other files can go to outputs_dir() as artifacts"
    )


def _one_input(example: Any) -> Any:
    if isinstance(example, (list, tuple, dict)):
        raise ModelExportError(
            "example_input must be one array or tensor (a batch of inputs): labtrain serves models of one input"
        )
    return example


# --- PyTorch --------------------------------------------------------------------------------


def _torch_reference(model: Any, example: Any) -> tuple[Any, Any, Any]:
    """The model to export (an evaluation-mode copy on the CPU), its input, and a function
    giving the model's own outputs for an input."""
    import numpy as np
    import torch

    example = _one_input(example)
    tensor = torch.as_tensor(np.asarray(example) if not isinstance(example, torch.Tensor) else example)
    tensor = tensor.detach().cpu()
    if tensor.ndim == 0:
        raise ModelExportError("example_input must be a batch: its first axis counts the inputs")
    if tensor.shape[0] == 1:  # a batch of one would fix the batch size at 1 in the exported graph
        tensor = torch.cat([tensor, tensor])
    served = _cpu_copy(model)
    served.eval()

    def own(array: Any) -> Any:
        with torch.no_grad():
            return _first(served(torch.from_numpy(array))).detach().cpu().numpy()

    return served, tensor, own


def _cpu_copy(model: Any) -> Any:
    """The model on the CPU, leaving the script's own where it was (on a GPU, in training mode)."""
    try:
        return copy.deepcopy(model).cpu()
    except Exception:  # some modules cannot be copied; then export the model itself
        return model.cpu()


def _first(output: Any) -> Any:
    """A model that returns several values is served by its first."""
    while isinstance(output, (tuple, list)):
        output = output[0]
    if isinstance(output, dict):
        raise ModelExportError("the model returns a dict; labtrain serves models that return a tensor")
    return output


def _export_torch(served: Any, tensor: Any, folder: Path, own: Any) -> dict[str, Any]:
    """torch.onnx's exporter PyTorch recommends (through torch.export), else its older one (a
    trace), whichever gives a model with the module's own outputs."""
    import torch

    path = folder / "model.onnx"
    errors = []
    for dynamo in (True, False):
        try:
            with _quiet():
                if dynamo:
                    batch = torch.export.Dim("batch")
                    torch.onnx.export(served, (tensor,), str(path), dynamo=True, dynamic_shapes=({0: batch},))
                else:
                    torch.onnx.export(
                        served,
                        (tensor,),
                        str(path),
                        dynamo=False,
                        input_names=["input"],
                        output_names=["output"],
                        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                    )
            return {"format": "onnx", "trained_with": "pytorch", "file": path.name, **_check_onnx(path, tensor, own)}
        except ModelExportError as exc:
            errors.append(f"torch.onnx.export(dynamo={dynamo}): {exc}")
        except Exception as exc:
            errors.append(f"torch.onnx.export(dynamo={dynamo}): {_reason(exc)}")
    raise ModelExportError(
        "PyTorch could not export the model to ONNX:\n"
        + "\n".join(errors)
        + "\nHow to fix: make forward() a function of its input alone, computed with torch operations (no "
        "numpy, .item() or Python branches on tensor values), returning one tensor, and pass an example_input "
        "the model accepts; or save the weights with torch.save to outputs_dir() as an artifact instead."
    )


# --- Keras ----------------------------------------------------------------------------------


def _keras_reference(model: Any, example: Any) -> tuple[Any, Any, Any]:
    import numpy as np

    array = np.asarray(_one_input(example))
    if array.ndim == 0:
        raise ModelExportError("example_input must be a batch: its first axis counts the inputs")

    def own(batch: Any) -> Any:
        # On the CPU: a GPU computes matrix products in TensorFloat-32 (Ampere and later), which
        # is further from ONNX Runtime's float32 than the check allows.
        with _on_cpu():
            return np.asarray(_first(model(batch, training=False)))

    own(array)  # a model never called has no input shape to export
    return model, array, own


def _on_cpu() -> Any:
    tf = sys.modules.get("tensorflow")
    return tf.device("/CPU:0") if tf is not None else contextlib.nullcontext()


def _export_keras(served: Any, array: Any, folder: Path, own: Any) -> dict[str, Any]:
    import keras

    path = folder / "model.onnx"
    signature = [keras.InputSpec(shape=(None, *array.shape[1:]), dtype=str(array.dtype))]
    how = (
        "How to fix: use layers Keras ships (a custom layer's call() must use keras.ops only), keep the "
        "model's dtype policy float32, and pass an example_input of the shape the model was built for; "
        "or save it with model.save(outputs_dir() / 'model.keras') as an artifact instead."
    )
    try:
        with _quiet():
            served.export(str(path), format="onnx", verbose=False, input_signature=signature)
    except Exception as exc:
        raise ModelExportError(f"Keras could not export the model to ONNX: {_reason(exc)}\n{how}") from None
    try:
        checked = _check_onnx(path, array, own)
    except ModelExportError as exc:
        raise ModelExportError(f"Keras's ONNX export is wrong: {exc}\n{how}") from None
    return {"format": "onnx", "trained_with": "tensorflow", "file": path.name, **checked}


# --- ONNX check -----------------------------------------------------------------------------


def _check_onnx(path: Path, inputs: Any, own: Any) -> dict[str, Any]:
    """The exported file, run by onnxruntime as the API will, must give the model's own outputs,
    on the example and on inputs the exporter never saw (an exporter that traced a Python value
    as a constant gives the example's answer to everything)."""
    import numpy as np
    import onnx
    import onnxruntime

    array = inputs.numpy() if hasattr(inputs, "numpy") else np.asarray(inputs)
    try:
        proto = onnx.load(str(path))  # a model the exporter split into several files becomes one
        onnx.save(proto, str(path), save_as_external_data=False)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelExportError(f"the exported ONNX model does not run in onnxruntime: {_reason(exc)}") from None
    if len(session.get_inputs()) != 1:
        raise ModelExportError(
            f"the exported model takes {len(session.get_inputs())} inputs, not 1: forward() must compute its "
            "output from its one input"
        )
    largest = 0.0
    for name, batch in _check_inputs(array):
        try:
            got = session.run(None, {session.get_inputs()[0].name: batch})[0]
        except Exception as exc:
            raise ModelExportError(f"the exported ONNX model does not run on {name}: {_reason(exc)}") from None
        expected = np.asarray(own(batch))
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=RTOL, atol=ATOL):
            difference = (
                float(np.max(np.abs(got.astype(np.float64) - expected))) if got.shape == expected.shape else math.inf
            )
            raise ModelExportError(
                f"the exported model's outputs differ from the model's own on {name} (largest difference "
                f"{difference:.3g}, shapes {list(got.shape)} and {list(expected.shape)}). forward()/call() must "
                "compute with the framework's operations on its input alone: a Python number, a numpy call or a "
                "branch on a tensor's value is frozen at export. Layers that behave differently in training "
                "(dropout, batch norm) are compared in evaluation mode."
            )
        largest = max(largest, float(np.max(np.abs(got.astype(np.float64) - expected), initial=0.0)))
        if name == "example_input":
            output_shape = list(expected.shape[1:])
    return {
        "input": {"shape": list(array.shape[1:]), "dtype": str(array.dtype)},
        "output": {"shape": output_shape},
        "check": {"instances": len(array), "max_abs_difference": largest},
    }


def _check_inputs(array: Any) -> list[tuple[str, Any]]:
    """The example, its rows in another order, and (for numbers that are not whole) a nudged copy."""
    import numpy as np

    found = [("example_input", array), ("example_input's rows reversed", np.ascontiguousarray(array[::-1]))]
    if np.issubdtype(array.dtype, np.floating):
        nudged = array * np.asarray(0.9, dtype=array.dtype) + np.asarray(0.05, dtype=array.dtype)
        found.append(("a nudged copy of example_input", nudged.astype(array.dtype)))
    return found


# --- scikit-learn ---------------------------------------------------------------------------


FUNCTION_NODES = ("FunctionNode", "PartialNode", "MethodNode", "OperatorFuncNode")


def _functions(path: Path) -> list[str]:
    """The functions a skops file holds (skops trusts numpy's ufuncs; the server loads none)."""
    with zipfile.ZipFile(path) as archive:
        pending, found = [json.loads(archive.read("schema.json"))], set()
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if node.get("__loader__") in FUNCTION_NODES:
                found.add(f"{node.get('__module__')}.{node.get('__class__')}")
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return sorted(found)


def _save_sklearn(model: Any, example: Any, folder: Path) -> dict[str, Any]:
    import numpy as np
    import skops.io

    path = folder / "model.skops"
    if not hasattr(model, "predict"):
        raise ModelExportError("the estimator has no predict(); labtrain serves models that predict")
    try:
        skops.io.dump(model, str(path))
    except Exception as exc:
        raise ModelExportError(f"skops could not save the estimator: {_reason(exc)}") from None
    named = skops.io.get_untrusted_types(file=str(path))
    own = [t for t in named if not t.startswith(("sklearn.", "numpy."))]
    if own:
        raise ModelExportError(
            f"the estimator uses types from outside scikit-learn and numpy ({', '.join(own)}); the API never runs "
            "your code, so only scikit-learn's own estimators can be served: use them, or save the model with "
            "joblib to outputs_dir() as an artifact instead"
        )
    functions = _functions(path)
    if functions:  # the server loads classes only (a function in a file could be any function)
        raise ModelExportError(
            f"the estimator holds functions ({', '.join(functions)}), which labtrain does not load: save the "
            "fitted estimator itself (e.g. grid.best_estimator_), without FunctionTransformer or a score_func"
        )
    features = [str(c) for c in example.columns] if hasattr(example, "columns") else None
    rows = np.asarray(example)
    if rows.ndim != 2:
        raise ModelExportError("example_input must be a 2-D table of features: one row per instance")
    if features is None:
        features = [f"x{i}" for i in range(rows.shape[1])]
    categorical = [str(c) for c in example.columns if example[c].dtype == object] if hasattr(example, "columns") else []
    classifier = hasattr(model, "predict_proba") and hasattr(model, "classes_")
    manifest: dict[str, Any] = {
        "format": "skops",
        "trained_with": "sklearn",
        "file": path.name,
        "input": {"features": features, "categorical": categorical},
        "task": "classification" if classifier else "regression",
    }
    if classifier:
        manifest["classes"] = np.asarray(model.classes_).tolist()
    return manifest


# --- shared ---------------------------------------------------------------------------------


def _infer_task(outputs: Any) -> str:
    return "classification" if outputs.ndim == 2 and outputs.shape[1] >= 2 else "regression"


def _are_probabilities(outputs: Any) -> bool:
    import numpy as np

    return bool(
        outputs.ndim == 2
        and outputs.shape[1] >= 2
        and (outputs >= 0).all()
        and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-4)
    )


def _reason(exc: BaseException) -> str:
    """The exception's first lines: exporters explain at length, the job's error needs the gist."""
    text = _ANSI.sub("", f"{type(exc).__name__}: {exc}")
    if _SUMMARY in text:  # torch.export's errors start with advice on reporting them; the cause follows
        text = text.split(_SUMMARY, 1)[1]
    lines = [line for line in text.strip().splitlines() if line.strip()]
    text = "\n".join(lines[:8]) + ("\n..." if len(lines) > 8 else "")
    return text if len(text) <= 1500 else text[:1500] + " ..."


class _quiet:
    """Exporters print their progress to stdout and warn at length (deprecations, fallbacks); the
    job's log needs only their errors, which come as exceptions."""

    def __enter__(self):
        self._stdout = os.dup(1)
        sys.stdout.flush()
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)

    def __exit__(self, *exc):
        logging.disable(logging.NOTSET)
        self._warnings.__exit__(*exc)
        sys.stdout.flush()
        os.dup2(self._stdout, 1)
        os.close(self._stdout)
        return False


def _write_json(path: Path, value: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=1))
    os.replace(temporary, path)
