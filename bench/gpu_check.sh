#!/usr/bin/env bash
# The GPU path end to end, on a machine with an NVIDIA GPU. From the repository root:
#
#   bash bench/gpu_check.sh
#
# Sets up a virtual environment if there is none ($VENV, default .venv): made from $PYTHON
# (default python3) so that it sees that Python's packages (a GPU image's CUDA build of PyTorch),
# with the project installed into it (`pip install -e .`, without the `cpu` extra that `make`
# uses, whose CPU builds would shadow the CUDA ones), and TensorFlow added only where it is
# missing. Where pip cannot reach an index, put wheels in a folder and name it in
# LABTRAIN_WHEELS (default: .whl, if it exists).
#
# Then bench/gpu_check.py starts a deployment with a GPU worker of concurrency 8 and checks a
# Keras job, a PyTorch job and a code job on the GPU, eight jobs packed on it at once, and a
# debug job preempting a batch job on a worker of concurrency 1. One PASS or FAIL line per
# check; the exit status is 1 when any failed. About 3 to 5 minutes on an H200.
#
#   MNIST=path/to/mnist-8k.npz   the MNIST subset (default: service/data/files/mnist-8k.npz, the subset the package ships)
#   GPU_CHECK_ARGS="--mps"        more arguments for bench/gpu_check.py (--mode, --code-sandbox, --mps)

set -uo pipefail
cd "$(dirname "$0")/.."

failed=0
fail() {
    echo "FAIL $*"
    failed=1
}

# --- the GPU ---
if ! command -v nvidia-smi >/dev/null 2>&1; then
    fail "gpu: nvidia-smi is not installed (no NVIDIA driver on this machine)"
    exit 1
fi
if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    fail "gpu: nvidia-smi lists no GPU: $(nvidia-smi -L 2>&1 | head -3)"
    exit 1
fi
echo "=== nvidia-smi, before"
nvidia-smi

# --- the MNIST subset ---
mnist=""
for candidate in "${MNIST:-}" "${LABTRAIN_TEST_MNIST:-}" service/data/files/mnist-8k.npz; do
    if [ -n "$candidate" ] && [ -f "$candidate" ]; then
        mnist=$candidate
        break
    fi
done
if [ -z "$mnist" ]; then
    fail "data: no MNIST subset: set MNIST=path/to/mnist-8k.npz"
    exit 1
fi

# --- the environment ---
base_python=${PYTHON:-python3}
venv=${VENV:-.venv}
py=$venv/bin/python
wheels=${LABTRAIN_WHEELS:-}
if [ -z "$wheels" ] && [ -d .whl ]; then
    wheels=.whl
fi
pip_install() {
    local options=(--quiet --disable-pip-version-check --retries 1 --timeout 20)
    if [ -n "$wheels" ]; then
        options+=(--no-index --find-links "$wheels")
    fi
    if "$py" -c 'import setuptools' >/dev/null 2>&1; then
        options+=(--no-build-isolation) # no index needed to build the editable install
    fi
    "$py" -m pip install "${options[@]}" "$@"
}

if [ ! -x "$py" ]; then
    echo "setup: creating $venv from $base_python ($("$base_python" --version 2>&1)), seeing its packages"
    if ! "$base_python" -m venv --system-site-packages "$venv"; then
        fail "setup: could not create $venv"
        exit 1
    fi
    # A venv made from another venv (as GPU images ship PyTorch) does not see that one's
    # packages through --system-site-packages: a .pth file adds them (and their own .pth
    # files), after the venv's own.
    site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    "$base_python" -c 'import site; [print(f"import site; site.addsitedir({p!r})") for p in site.getsitepackages()]' \
        >"$site/_base_python_packages.pth"
fi

echo "setup: $("$py" --version 2>&1) at $py"
if ! "$py" -c 'import torch; assert torch.cuda.is_available()' >/dev/null 2>&1; then
    fail "setup: $py has no PyTorch that sees a GPU ($("$py" -c 'import torch; print(torch.__version__)' 2>&1 | tail -1)); make a venv from a Python with the CUDA build (PYTHON=... VENV=...), or pip install -e '.[gpu]'"
    exit 1
fi
echo "setup: PyTorch $("$py" -c 'import torch; print(torch.__version__, "on", torch.cuda.get_device_name(0))')"

needs='import importlib.metadata as m; m.version("labtrain"); import flask, celery, sqlalchemy, alembic, uvicorn, pytest, redis, pynvml, requests'
if ! "$py" -c "$needs" >/dev/null 2>&1; then
    echo "setup: installing the project: pip install -e . pytest nvidia-ml-py"
    pip_install -e . pytest nvidia-ml-py || true
fi
if ! "$py" -c "$needs" >/dev/null 2>&1; then
    fail "setup: the project's packages are missing from $venv: $("$py" -c "$needs" 2>&1 | tail -1)"
    exit 1
fi

if "$py" -c 'import tensorflow' >/dev/null 2>&1; then
    echo "setup: TensorFlow $("$py" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null | tail -1) is installed"
else
    echo "setup: TensorFlow is missing; installing tensorflow[and-cuda]==2.21.0 into $venv"
    if ! pip_install 'tensorflow[and-cuda]==2.21.0'; then
        echo "setup: tensorflow[and-cuda] could not be installed; trying tensorflow==2.21.0"
        pip_install 'tensorflow==2.21.0' || echo "setup: TensorFlow could not be installed: the Keras check will fail"
    fi
fi
if "$py" -c 'import tensorflow' >/dev/null 2>&1; then
    echo "setup: TensorFlow sees $("$py" -c 'import tensorflow as tf; print(tf.config.list_physical_devices("GPU"))' 2>/dev/null | tail -1)"
fi

# --- the checks ---
echo "=== bench/gpu_check.py (MNIST: $mnist)"
# shellcheck disable=SC2086 # GPU_CHECK_ARGS is a list of arguments
PYTHONUNBUFFERED=1 "$py" bench/gpu_check.py --mnist "$mnist" ${GPU_CHECK_ARGS:-} || failed=1

echo "=== nvidia-smi, after"
nvidia-smi
exit "$failed"
