"""Writes outputs/model/model.onnx whose sparse initializer keeps its data in `secret.bin`, a
path onnxruntime resolves against the working directory of whoever loads the model."""

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import labtrain_job

values = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
for key, value in {"location": "secret.bin", "offset": "0", "length": "16"}.items():
    entry = values.external_data.add()
    entry.key, entry.value = key, value
indices = numpy_helper.from_array(np.arange(4, dtype=np.int64), "W_indices")
graph = helper.make_graph(
    [helper.make_node("Add", ["x", "W"], ["y"])],
    "g",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    sparse_initializer=[helper.make_sparse_tensor(values, indices, [4])],
)
folder = labtrain_job.outputs_dir() / "model"
folder.mkdir(parents=True, exist_ok=True)
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(folder / "model.onnx"))
manifest = {
    "format": "onnx",
    "trained_with": "pytorch",
    "file": "model.onnx",
    "input": {"shape": [4], "dtype": "float32"},
    "output": {"shape": [4]},
    "task": "output",
}
(folder / "model.json").write_text(json.dumps(manifest))
print("saved")
