"""The toy family's trainer: counts, reporting each step as an event and as progress."""

from __future__ import annotations

from tests.service.jobs.toy_family import ToyRun
from workers.trainers.base import Allotment, DataSource, JobResult, Reporter


def load_data(run: ToyRun, source: DataSource) -> None:
    return None


def train(run: ToyRun, data: None, report: Reporter, allotted: Allotment) -> JobResult:
    said = []
    for step in range(1, run.toy.count + 1):
        said.append(f"{run.toy.word} {step}")
        report.event("log", {"message": said[-1]})
        report.progress(fraction=step / run.toy.count)
    return JobResult(result={"said": said}, metrics={"count": run.toy.count})
