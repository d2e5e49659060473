"""Prometheus metrics read from the database at each scrape.

The database is the truth (DESIGN.md decision 1), so job, queue, user and worker figures
are computed from it when Prometheus asks, identical whichever API process answers.
Counters count job rows (they only grow: rows are never deleted, `admin prune` removes
files only); histograms are built from the stored start and end times.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import func, select

from service.core import queues as queue_catalog
from service.core.config import Settings
from service.core.db import Database
from service.core.orm import Job, User, Worker, utcnow
from service.jobs import families
from service.jobs.lifecycle import FINISHED, QUEUED, RUNNING
from service.lab.fair_share import usage_by_owner

WAIT_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
DURATION_BUCKETS = (0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


def job_kind(job_family: str, spec: dict) -> str:
    """What a job ran, for the duration histogram: its family says (algorithm, framework, strategy)."""
    try:
        return families.get(job_family).kind(spec)
    except LookupError:  # a family this process has not registered
        return job_family


class LabCollector:
    def __init__(self, settings: Settings, db: Database):
        self.settings, self.db = settings, db

    def collect(self) -> Iterable:
        with self.db.session() as session:
            yield from self._jobs(session)
            yield from self._times(session)
            yield from self._users(session)
            yield from self._workers(session)

    def _jobs(self, session):
        by_status = GaugeMetricFamily(
            "labtrain_jobs", "Jobs by status, queue and family now", labels=["status", "queue", "family"]
        )
        created = CounterMetricFamily(
            "labtrain_jobs_created", "Jobs submitted (searches' trials included)", labels=["queue", "family"]
        )
        finished = CounterMetricFamily(
            "labtrain_jobs_finished", "Jobs that ended, by outcome", labels=["status", "queue", "family"]
        )
        depth = GaugeMetricFamily("labtrain_queue_depth", "Jobs waiting for a worker", labels=["queue"])
        rows = session.execute(
            select(Job.status, Job.queue, Job.family, func.count()).group_by(Job.status, Job.queue, Job.family)
        ).all()
        totals: Counter = Counter()
        waiting = dict.fromkeys(queue_catalog.catalog(self.settings), 0)
        slotless = families.slotless()  # a search holds no device: left out of queue figures
        for status, queue, family, count in rows:
            by_status.add_metric([status, queue, family], count)
            totals[(queue, family)] += count
            if status in FINISHED:
                finished.add_metric([status, queue, family], count)
            if status == QUEUED and family not in slotless:
                waiting[queue] = waiting.get(queue, 0) + count
        for (queue, family), count in sorted(totals.items()):
            created.add_metric([queue, family], count)
        for queue, count in waiting.items():
            depth.add_metric([queue], count)
        preemptions = CounterMetricFamily(
            "labtrain_preemptions", "Times running jobs yielded their slot to a waiting debug job", labels=["queue"]
        )
        for queue, count in session.execute(select(Job.queue, func.sum(Job.preemptions)).group_by(Job.queue)):
            preemptions.add_metric([queue], count or 0)
        yield from (by_status, created, finished, depth, preemptions)

    def _times(self, session):
        wait = defaultdict(list)
        duration = defaultdict(list)
        now = utcnow()
        rows = session.execute(
            select(Job.queue, Job.family, Job.spec, Job.created_at, Job.started_at, Job.finished_at).where(
                families.takes_slot(), Job.started_at.is_not(None)
            )
        )
        for queue, family, spec, created, started, finished in rows:
            wait[(queue,)].append((started - created).total_seconds())
            if finished is not None:
                duration[(queue, family, job_kind(family, spec or {}))].append((finished - started).total_seconds())
        yield _histogram("labtrain_queue_wait_seconds", "Time from submit to start", ["queue"], wait, WAIT_BUCKETS)
        yield _histogram(
            "labtrain_job_duration_seconds",
            "Run time of finished jobs",
            ["queue", "family", "kind"],
            duration,
            DURATION_BUCKETS,
        )
        oldest = GaugeMetricFamily(
            "labtrain_queue_oldest_wait_seconds", "How long the oldest waiting job has waited", labels=["queue"]
        )
        for queue in queue_catalog.catalog(self.settings):
            first = session.scalar(
                select(func.min(Job.created_at)).where(Job.queue == queue, Job.status == QUEUED, families.takes_slot())
            )
            oldest.add_metric([queue], (now - first).total_seconds() if first else 0.0)
        yield oldest

    def _users(self, session):
        names = dict(session.execute(select(User.id, User.name)).all())
        running = GaugeMetricFamily(
            "labtrain_user_running_jobs", "Running jobs per user and queue", labels=["user", "queue"]
        )
        for owner, queue, count in session.execute(
            select(Job.owner_id, Job.queue, func.count())
            .where(Job.status == RUNNING, families.takes_slot())
            .group_by(Job.owner_id, Job.queue)
        ):
            running.add_metric([names.get(owner, owner), queue], count)
        usage = GaugeMetricFamily(
            "labtrain_user_usage_device_seconds",
            "Decayed device-seconds per user and queue, as fair share weighs them",
            labels=["user", "queue"],
        )
        now = utcnow()
        for queue in queue_catalog.catalog(self.settings):
            for owner, seconds in usage_by_owner(session, queue, self.settings.usage_half_life_s, now).items():
                usage.add_metric([names.get(owner, owner), queue], seconds)
        yield from (running, usage)

    def _workers(self, session):
        labels = ["worker", "host", "queues"]
        age = GaugeMetricFamily(
            "labtrain_worker_heartbeat_age_seconds", "Seconds since the worker's last heartbeat", labels=labels
        )
        slots = GaugeMetricFamily("labtrain_worker_concurrency", "Jobs the worker runs at once", labels=labels)
        util = GaugeMetricFamily(
            "labtrain_gpu_utilization_percent", "GPU utilisation at the last heartbeat", labels=[*labels, "gpu"]
        )
        used = GaugeMetricFamily(
            "labtrain_gpu_memory_used_bytes", "GPU memory in use at the last heartbeat", labels=[*labels, "gpu"]
        )
        total = GaugeMetricFamily("labtrain_gpu_memory_total_bytes", "GPU memory", labels=[*labels, "gpu"])
        now = utcnow()
        for worker in session.scalars(select(Worker).order_by(Worker.name)):
            key = [worker.name, worker.host, worker.queues]
            age.add_metric(key, (now - worker.heartbeat_at).total_seconds())
            slots.add_metric(key, worker.concurrency)
            if worker.gpu_name:
                gpu = [*key, worker.gpu_name]
                if worker.gpu_memory_mb is not None:
                    total.add_metric(gpu, worker.gpu_memory_mb * 2**20)
                if worker.gpu_utilization is not None:
                    util.add_metric(gpu, worker.gpu_utilization)
                if worker.gpu_memory_used_mb is not None:
                    used.add_metric(gpu, worker.gpu_memory_used_mb * 2**20)
        yield from (age, slots, util, used, total)


def _histogram(
    name: str, documentation: str, labels: list[str], samples: dict[tuple, list[float]], bounds: tuple[float, ...]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for key, values in sorted(samples.items()):
        buckets = [(str(float(b)), sum(1 for v in values if v <= b)) for b in bounds]
        buckets.append(("+Inf", len(values)))
        family.add_metric(list(key), buckets, sum_value=sum(values))
    return family
