"""Delegation: the agent hands part of its task to a worker, which exchanges under its own
identity within exactly what was delegated."""

from __future__ import annotations

import uuid

import pytest

from conftest import Handoff, claims
from handoff_client import AccessDenied, Client


def test_a_worker_exchanges_within_its_delegation_and_nothing_more(handoff: Handoff) -> None:
    suffix = uuid.uuid4().hex[:8]
    bot, worker_id = f"release-bot-{suffix}", f"test-worker-{suffix}"
    with Client(handoff.url, identity=handoff.identity(bot)) as agent, \
            Client(handoff.url, identity=handoff.identity(worker_id)) as worker:
        task = agent.open_task("Ship it", user="alice", purpose="release", plan=["git", "ci"])
        delegation = task.delegate(worker_id, ["ci:run_tests"], lifetime=600)
        assert delegation.delegation_id.startswith("del")
        assert delegation.task_id == task.task_id
        assert delegation.scope == ("ci:run_tests",)
        assert delegation.depth == 1

        work = worker.join(delegation.txn_token, delegation.task_id)
        token = work.exchange("ci", "run_tests")
        seen = claims(token.access_token)
        assert seen["act"]["sub"] == worker_id
        assert seen["act"]["act"]["sub"] == bot
        assert seen["txn"] == task.task_id

        with pytest.raises(AccessDenied) as outside:
            work.exchange("ci", "deploy")
        assert outside.value.reason == "outside_delegation"
        # The agent itself may not relabel the work as its own.
        with pytest.raises(AccessDenied) as self_delegation:
            task.delegate(bot, ["ci:run_tests"])
        assert self_delegation.value.reason == "self_delegation"
        # The worker's tests count for the task: the agent may deploy now.
        assert task.exchange("ci", "deploy").access_token
