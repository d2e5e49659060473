"""The job-side helpers' preemption with the real frameworks, each script a process of its
own: after SIGUSR1 the PyTorch helper and the Keras callback save a checkpoint at the epoch's
end and exit with status 0, and the next run resumes after that epoch; a notebook's runner
passes the signal on to its kernel. Not in the fast tier: each loads PyTorch, TensorFlow or a
kernel several times (the signal itself is tested fast in test_preemption.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import nbformat

from tests.labtrain_job.test_preemption import ROOT, finish, reported_epochs, start

TORCH_SCRIPT = """
    import os, signal, sys, torch, labtrain_job
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    start = labtrain_job.torch_resume(model, optimizer)
    print("start", start, flush=True)
    for epoch in range(start + 1, 6):
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        if epoch == int(os.environ.get("YIELD_IN", 0)):
            os.kill(os.getpid(), signal.SIGUSR1)  # as the worker does, during the epoch
        labtrain_job.torch_epoch_end(epoch, model, optimizer, loss=loss.item())
    print("done", flush=True)
    print("weights", *model.weight.flatten().tolist(), flush=True)
"""


def test_the_pytorch_helper_checkpoints_and_exits_after_sigusr1_and_the_next_run_resumes_exactly(tmp_path):
    """Two epochs, a yield, and three more give the weights five epochs in one run give."""
    (tmp_path / "straight").mkdir()
    (tmp_path / "yielded").mkdir()
    returncode, straight, err = finish(start(TORCH_SCRIPT, tmp_path / "straight"))
    assert returncode == 0 and "done" in straight, err

    returncode, out, err = finish(start(TORCH_SCRIPT, tmp_path / "yielded", {"YIELD_IN": "2"}))
    assert returncode == 0, err
    assert out.split() == ["start", "0"]  # it never reached "done"
    assert reported_epochs(err) == [1, 2]
    assert "checkpoint saved after epoch 2" in err
    assert [p.name for p in (tmp_path / "yielded" / "checkpoints").iterdir()] == ["labtrain-epoch-000002.pt"]

    returncode, resumed, err = finish(start(TORCH_SCRIPT, tmp_path / "yielded"))
    assert returncode == 0, err
    assert resumed.split()[:3] == ["start", "2", "done"]
    assert reported_epochs(err) == [3, 4, 5]
    weights = [line for line in straight.splitlines() if line.startswith("weights")]
    assert weights and weights == [line for line in resumed.splitlines() if line.startswith("weights")]


KERAS_SCRIPT = """
    import os, signal, numpy as np, keras, labtrain_job

    class YieldIn(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch + 1 == int(os.environ.get("YIELD_IN", 0)):
                os.kill(os.getpid(), signal.SIGUSR1)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model, start = labtrain_job.keras_resume(model)
    print("start", start, flush=True)
    x, y = np.random.rand(64, 4), np.random.rand(64, 1)
    model.fit(x, y, epochs=4, initial_epoch=start, verbose=0, callbacks=[YieldIn(), labtrain_job.keras_callback()])
    print("done", flush=True)
"""


def test_the_keras_callback_checkpoints_and_exits_after_sigusr1_and_the_next_run_resumes(tmp_path):
    env = {"YIELD_IN": "2", "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    returncode, out, err = finish(start(KERAS_SCRIPT, tmp_path, env))
    assert returncode == 0, err
    assert out.split() == ["start", "0"]
    assert reported_epochs(err) == [1, 2]
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["labtrain-epoch-000002.keras"]

    returncode, out, err = finish(start(KERAS_SCRIPT, tmp_path, {**env, "YIELD_IN": "0"}))
    assert returncode == 0, err
    assert out.split() == ["start", "2", "done"]
    assert reported_epochs(err) == [3, 4]


def test_a_notebook_passes_the_signal_to_its_kernel_and_runs_no_further_cell(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("import time, labtrain_job\nprint('loaded', flush=True)"),
        nbformat.v4.new_code_cell(
            "for _ in range(1200):\n    if labtrain_job.preempted():\n        print('yielding', flush=True)\n"
            "        raise SystemExit(0)\n    time.sleep(0.05)"
        ),
        nbformat.v4.new_code_cell("print('after the yield')"),
    ]
    nbformat.write(notebook, tmp_path / "nb.ipynb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "labtrain_job.notebook", "nb.ipynb"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
    )
    for line in proc.stdout:
        if line.startswith("--- cell 2/3"):
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGUSR1)
    returncode, out, err = finish(proc, timeout=60)
    assert returncode == 0, err
    assert "yielding" in out and "after the yield" not in out
    assert "cell_failed" not in err and "failed" not in out  # a yield, not a failing cell
    assert (tmp_path / "outputs" / "nb.ipynb").exists()  # the executed notebook, as always
