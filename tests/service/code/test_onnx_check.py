"""The ONNX check finds external data and foreign operators wherever a model hides them (sparse
initializers, Constant nodes, Loop bodies, functions) and bounds the size of its constants.
onnxruntime is shown to read a file named by a sparse initializer, relative to its working
directory, from a model given as bytes: the attack the check stops."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.code.onnx_check import ModelRefused, check

pytestmark = pytest.mark.fast

SECRET = b"the server's own"  # 16 bytes: four float32 values


def external(name: str, data_type: int = TensorProto.FLOAT, dims=(4,), location: str = "secret.bin") -> TensorProto:
    """A tensor whose data is read from `location`, a path relative to whoever loads it."""
    tensor = TensorProto(name=name, data_type=data_type, dims=list(dims))
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": str(len(SECRET))}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def indices(name: str) -> TensorProto:
    return numpy_helper.from_array(np.arange(4, dtype=np.int64), name)


def model(nodes, *, sparse=(), initializers=(), functions=(), opsets=()) -> onnx.ModelProto:
    """y = x + W for x of shape (batch, 4), with W made by `nodes` or given as a constant."""
    graph = helper.make_graph(
        [*nodes, helper.make_node("Add", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=list(initializers),
        sparse_initializer=list(sparse),
    )
    imports = [helper.make_opsetid("", 17), *(helper.make_opsetid(domain, 1) for domain in opsets)]
    return helper.make_model(graph, opset_imports=imports, functions=list(functions))


def refusal(proto: onnx.ModelProto, **options) -> str:
    with pytest.raises(ModelRefused) as refused:
        check(proto.SerializeToString(), [4], **options)
    return str(refused.value)


def test_onnxruntime_reads_the_file_a_sparse_initializer_names_and_the_check_refuses_it(tmp_path):
    attack = model([], sparse=[helper.make_sparse_tensor(external("W"), indices("W_indices"), [4])])
    (tmp_path / "secret.bin").write_bytes(SECRET)
    before = os.getcwd()
    os.chdir(tmp_path)  # the control: loaded from bytes, it reads secret.bin where the process runs
    try:
        session = onnxruntime.InferenceSession(attack.SerializeToString(), providers=["CPUExecutionProvider"])
        read = session.run(None, {"x": np.zeros((1, 4), np.float32)})[0]
    finally:
        os.chdir(before)
    assert read.tobytes() == SECRET

    assert "'W'" in refusal(attack) and "external data" in refusal(attack)


def test_the_indices_of_a_sparse_initializer_are_checked_too():
    values = numpy_helper.from_array(np.ones(4, np.float32), "W")
    attack = model([], sparse=[helper.make_sparse_tensor(values, external("W_indices", TensorProto.INT64), [4])])
    assert "'W_indices'" in refusal(attack)


def test_a_constant_with_a_sparse_value_kept_outside_is_refused():
    sparse = helper.make_sparse_tensor(external("W_values"), indices("W_indices"), [4])
    attack = model([helper.make_node("Constant", [], ["W"], sparse_value=sparse)])
    assert "'W_values'" in refusal(attack)


def test_an_attribute_tensor_inside_a_loop_body_is_refused():
    body = helper.make_graph(
        [
            helper.make_node("Constant", [], ["hidden"], value=external("hidden")),
            helper.make_node("Identity", ["cond"], ["cond_out"]),
            helper.make_node("Add", ["carried", "hidden"], ["carried_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("carried", TensorProto.FLOAT, [4]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("carried_out", TensorProto.FLOAT, [4]),
        ],
    )
    nodes = [
        helper.make_node("Constant", [], ["trips"], value=numpy_helper.from_array(np.array(1, np.int64))),
        helper.make_node("Constant", [], ["start"], value=numpy_helper.from_array(np.zeros(4, np.float32))),
        helper.make_node("Loop", ["trips", "", "start"], ["W"], body=body),
    ]
    assert "'hidden'" in refusal(model(nodes))


def function(domain: str, nodes) -> onnx.FunctionProto:
    return helper.make_function(
        domain, "AddHidden", ["a"], ["b"], nodes, [helper.make_opsetid("", 17), helper.make_opsetid("com.student", 1)]
    )


def test_a_model_of_its_own_functions_is_served():
    own = function("local.fns", [helper.make_node("Relu", ["a"], ["b"])])
    served = model(
        [helper.make_node("AddHidden", ["x"], ["W"], domain="local.fns")], functions=[own], opsets=["local.fns"]
    )
    check(served.SerializeToString(), [4])


def test_a_foreign_operator_inside_a_function_is_refused():
    own = function("local.fns", [helper.make_node("Steal", ["a"], ["b"], domain="com.student")])
    attack = model(
        [helper.make_node("AddHidden", ["x"], ["W"], domain="local.fns")], functions=[own], opsets=["local.fns"]
    )
    assert "com.student" in refusal(attack) and "local.fns" not in refusal(attack)


def test_a_constant_kept_outside_inside_a_function_or_its_if_branches_is_refused():
    own = function("local.fns", [helper.make_node("Constant", [], ["b"], value=external("in_function"))])
    attack = model(
        [helper.make_node("AddHidden", ["x"], ["W"], domain="local.fns")], functions=[own], opsets=["local.fns"]
    )
    assert "'in_function'" in refusal(attack)

    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=external("in_branch"))],
        "branch",
        [],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [4])],
    )
    deep = function("local.fns", [helper.make_node("If", ["a"], ["b"], then_branch=branch, else_branch=branch)])
    attack = model(
        [helper.make_node("AddHidden", ["x"], ["W"], domain="local.fns")], functions=[deep], opsets=["local.fns"]
    )
    assert "'in_branch'" in refusal(attack)


def test_constants_are_bounded_in_elements_and_bytes():
    one = numpy_helper.from_array(np.ones(1, np.float32), "W")
    huge = helper.make_sparse_tensor(one, numpy_helper.from_array(np.zeros(1, np.int64), "W_indices"), [2**20, 2**20])
    assert "elements" in refusal(model([], sparse=[huge]))

    weight = numpy_helper.from_array(np.ones(1000, np.float32), "W")
    assert "larger than 2,000 bytes" in refusal(model([], initializers=[weight]), max_bytes=2000)
    claimed = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[1000])  # its size, not its data
    assert "constants hold more than 2,000 bytes" in refusal(model([], initializers=[claimed]), max_bytes=2000)
    check(model([], initializers=[numpy_helper.from_array(np.ones(4, np.float32), "W")]).SerializeToString(), [4])
