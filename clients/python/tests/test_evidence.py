"""CI's side: an evidence JWT signed with the system's key, sent, and counted by a later decision."""

from __future__ import annotations

import uuid

import pytest

from conftest import Handoff
from handoff_client import AccessDenied, Client, HandoffError
from handoff_client.evidence import sign_evidence


def test_signed_evidence_is_accepted_and_unlocks_a_deploy_of_the_tested_commit(handoff: Handoff) -> None:
    key = open(handoff.evidence_key, "rb").read()
    with Client(handoff.url, identity=handoff.identity(f"release-bot-{uuid.uuid4().hex[:8]}")) as client:
        task = client.open_task("Ship abc123", user="alice", purpose="release", plan=["ci"])
        task.exchange("ci", "run_tests")
        with pytest.raises(AccessDenied) as untested:
            task.exchange("ci", "deploy", details={"commit": "abc123"})
        assert "deploy-only-tested-commit" in untested.value.policies

        # The server's trust domain is its URL here (the e2e test configures it so).
        jwt = sign_evidence(key, system="ci", task=task.task_id, kind="tests_passed",
                            fields={"commit": "abc123"}, audience=handoff.url, kid="ci-dev-1")
        recorded = client.send_evidence(jwt)
        assert recorded["task_id"] == task.task_id and recorded["kind"] == "tests_passed"
        # The same report again is a replay.
        with pytest.raises(HandoffError) as replayed:
            client.send_evidence(jwt)
        assert (replayed.value.status, replayed.value.error) == (409, "evidence_replayed")

        assert task.exchange("ci", "deploy", details={"commit": "abc123"}).access_token
        with pytest.raises(AccessDenied):
            task.exchange("ci", "deploy", details={"commit": "def456"})
