"""A code job that leaves an ONNX model behind, as save_model would (outputs/model/), built by
hand: `linear` answers y = x @ ones(4, 2); `memory` asks onnxruntime for a 2 GB tensor on every
prediction; `loop` runs a Loop of 60 million steps (or as many as its second argument says);
`file_read` keeps a sparse initializer's data in `secret.bin`, a path onnxruntime resolves
against the working directory of whoever loads the model."""

import json
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import labtrain_job

kind = sys.argv[1]
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
if kind == "linear":
    weight = numpy_helper.from_array(np.ones((4, 2), dtype=np.float32), "W")
    nodes, constants, outputs = [helper.make_node("MatMul", ["x", "W"], ["y"])], [weight], [2]
elif kind == "memory":
    shape = numpy_helper.from_array(np.array([512, 1024, 1024], dtype=np.int64), "shape")
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=one),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        helper.make_node("Add", ["x", "total"], ["y"]),
    ]
    constants, outputs = [shape], [4]
elif kind == "file_read":
    values = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in {"location": "secret.bin", "offset": "0", "length": "16"}.items():
        entry = values.external_data.add()
        entry.key, entry.value = key, value
    indices = numpy_helper.from_array(np.arange(4, dtype=np.int64), "W_indices")
    nodes, constants, outputs = [helper.make_node("Add", ["x", "W"], ["y"])], [], [4]
else:
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 60_000_000
    body = helper.make_graph(
        [helper.make_node("Identity", ["go"], ["go_on"]), helper.make_node("Add", ["value", "step"], ["next"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("go", TensorProto.BOOL, []),
            helper.make_tensor_value_info("value", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("go_on", TensorProto.BOOL, []),
            helper.make_tensor_value_info("next", TensorProto.FLOAT, None),
        ],
        [numpy_helper.from_array(np.array(1.0, dtype=np.float32), "step")],
    )
    constants = [
        numpy_helper.from_array(np.array(steps, dtype=np.int64), "steps"),
        numpy_helper.from_array(np.array(True), "always"),
    ]
    nodes, outputs = [helper.make_node("Loop", ["steps", "always", "x"], ["y"], body=body)], [4]
graph = helper.make_graph(
    nodes, kind, [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", *outputs])], constants
)
if kind == "file_read":
    graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4]))
folder = labtrain_job.outputs_dir() / "model"
folder.mkdir(parents=True, exist_ok=True)
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(folder / "model.onnx"))
manifest = {
    "format": "onnx",
    "trained_with": "pytorch",
    "file": "model.onnx",
    "input": {"shape": [4], "dtype": "float32"},
    "output": {"shape": outputs},
    "task": "output",
    "name": kind,
}
(folder / "model.json").write_text(json.dumps(manifest))
print("saved")
