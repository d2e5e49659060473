"""NVIDIA MPS on a GPU worker: with LABTRAIN_GPU_MPS=1 the worker starts the MPS control daemon
(where the driver ships it) before its pool forks, so the jobs on its GPU run as MPS clients:
their kernels share the GPU's threads at once instead of taking turns.

Network jobs (the worker's own processes) are its clients. Code jobs are not: the daemon's
pipes live under /tmp (CUDA_MPS_PIPE_DIRECTORY), which a sandbox does not share, and mounting
them in would hand students the daemon's control pipe (from which any client could stop it
for everyone). Their share holds through labtrain_job instead (docs/gpu.md).
"""

from __future__ import annotations

import logging
import shutil
import subprocess

log = logging.getLogger("labtrain.worker")

CONTROL = "nvidia-cuda-mps-control"


def start_daemon() -> bool:
    """Start the MPS control daemon (it does nothing if one runs already); False where it cannot."""
    control = shutil.which(CONTROL)
    if control is None:
        log.warning("LABTRAIN_GPU_MPS=1, but %s is not installed: jobs share the GPU without MPS", CONTROL)
        return False
    started = subprocess.run([control, "-d"], capture_output=True, text=True, timeout=30, check=False)
    if started.returncode != 0:
        log.warning("could not start NVIDIA MPS (%s): jobs share the GPU without it", started.stderr.strip())
        return False
    log.info("NVIDIA MPS started: this worker's network jobs share the GPU's threads at once")
    return True
