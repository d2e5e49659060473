"""The client commands, for `labtrain` to register (service/cli/__init__.py)."""

from __future__ import annotations

from service.client.code_commands import artifacts, run
from service.client.compare_commands import compare
from service.client.compete_commands import compete
from service.client.course_commands import courses, me
from service.client.dataset_commands import datasets
from service.client.job_commands import cancel, jobs, logs, status, submit, watch
from service.client.model_commands import download, predict
from service.client.run_commands import runs
from service.client.server_commands import algorithms, login, queue
from service.client.tensorboard_commands import tensorboard

COMMANDS = [
    login,
    submit,
    run,
    jobs,
    status,
    watch,
    logs,
    artifacts,
    tensorboard,
    cancel,
    predict,
    download,
    queue,
    algorithms,
    me,
    courses,
    datasets,
    compete,
    runs,
    compare,
]
