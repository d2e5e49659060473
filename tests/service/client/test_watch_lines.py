"""What `labtrain watch` and `labtrain run` print for a job's events, preemption included."""

from __future__ import annotations

import pytest

from service.client.watch import event_text

pytestmark = pytest.mark.fast


def test_a_preemption_shows_as_the_request_and_the_return_to_the_queue():
    asked = {"type": "log", "data": {"message": "asked to yield its slot to debug job 01ab", "preempted_by": "01ab"}}
    requeued = {"type": "status", "data": {"status": "queued", "reason": "preempted", "attempt": 1}}
    resumed = {"type": "status", "data": {"status": "running", "worker": "w1@lab", "attempt": 1}}
    assert event_text(asked) == "- asked to yield its slot to debug job 01ab"
    assert (
        event_text(requeued) == "back in the queue: it yielded its slot to a debug job, and resumes from its checkpoint"
    )
    assert event_text(resumed) == "started on w1@lab"
    lost = {"type": "status", "data": {"status": "queued", "reason": "worker w2@lab lost", "attempt": 1}}
    assert event_text(lost) == "back in the queue: worker w2@lab lost"
