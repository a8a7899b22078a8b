"""Approvals as an OAuth device client waits for them: who must approve is told, the server's
interval (and slow_down's longer one) is honoured, and the wait ends in a token, a refusal or
the client's own timeout. The owner decides with the `handoff approvals` CLI."""

from __future__ import annotations

import asyncio
import time

import pytest

from conftest import Handoff, claims
from handoff_client import (
    ApprovalDenied,
    ApprovalTimeout,
    AsyncClient,
    Client,
    PendingApproval,
    PendingNotice,
)

LARGE = {"amount": 250000, "currency": "EUR", "creditor": "ACME GmbH"}


def payer(handoff: Handoff, **kwargs: object) -> Client:
    # The example's policy lets only `payments-agent` open payments tasks; each test has its own.
    return Client(handoff.url, identity=handoff.identity("payments-agent"), **kwargs)  # type: ignore[arg-type]


def test_a_gated_exchange_waits_until_an_owner_approves_then_returns_the_token(handoff: Handoff) -> None:
    told: list[PendingNotice] = []

    def on_pending(notice: PendingNotice) -> None:
        told.append(notice)
        handoff.decide(notice.approval_id, "approve")

    with payer(handoff, on_pending=on_pending) as client:
        task = client.open_task("Pay ACME invoice 7", user="alice", purpose="payments", plan=["payments"])
        started = time.monotonic()
        token = task.exchange("payments", "create", details=LARGE)
        # One poll, after the server's interval (2 s in the example config), released it.
        assert time.monotonic() - started >= 2
        assert [(n.approver_group, n.system, n.actions) for n in told] == [
            ("payments-owners", "payments", ("create",))
        ]
        assert told[0].approval_id.startswith("apr")
        assert claims(token.access_token)["authorization_details"][0]["amount"] == 250000


def test_a_denied_approval_raises_approval_denied(handoff: Handoff) -> None:
    with payer(handoff, on_pending=lambda n: handoff.decide(n.approval_id, "deny")) as client:
        task = client.open_task("Pay ACME invoice 8", user="alice", purpose="payments", plan=["payments"])
        with pytest.raises(ApprovalDenied) as denied:
            task.exchange("payments", "create", details=LARGE)
        assert denied.value.reason == "approval_denied"
        assert denied.value.decision_id is not None


def test_slow_down_lengthens_the_interval_and_the_wait_resumes_by_approval_id(handoff: Handoff) -> None:
    naps: list[float] = []
    state: dict[str, str] = {}

    def sleep(seconds: float) -> None:
        # Instead of sleeping: the owner approves during the nap the client asked for.
        naps.append(seconds)
        handoff.decide(state["approval"], "approve")

    with payer(handoff, sleep=sleep) as client:
        task = client.open_task("Pay ACME invoice 9", user="alice", purpose="payments", plan=["payments"])
        with pytest.raises(PendingApproval) as pending:
            task.exchange("payments", "create", details=LARGE, wait=False)
        state["approval"] = pending.value.approval_id
        assert pending.value.approver_group == "payments-owners"
        assert pending.value.interval == 2
        # A first poll is pending; an immediate second one is too fast: slow_down, interval + 5.
        with pytest.raises(PendingApproval):
            task.exchange("payments", "create", details=LARGE, wait=False, approval_id=state["approval"])
        token = task.exchange("payments", "create", details=LARGE, approval_id=state["approval"])
        assert naps == [7.0]
        assert token.access_token


def test_the_client_stops_waiting_at_its_timeout_and_names_the_approval(handoff: Handoff) -> None:
    with payer(handoff, approval_timeout=3) as client:
        task = client.open_task("Pay ACME invoice 10", user="alice", purpose="payments", plan=["payments"])
        started = time.monotonic()
        with pytest.raises(ApprovalTimeout) as timed_out:
            task.exchange("payments", "create", details=LARGE)
        assert timed_out.value.approval_id.startswith("apr")
        assert time.monotonic() - started < 30


def test_the_async_client_waits_with_an_async_callback(handoff: Handoff) -> None:
    async def run() -> None:
        async def on_pending(notice: PendingNotice) -> None:
            await asyncio.to_thread(handoff.decide, notice.approval_id, "approve")

        identity = handoff.identity("payments-agent")
        async with AsyncClient(handoff.url, identity=identity, on_pending=on_pending) as client:
            task = await client.open_task("Pay ACME invoice 11", user="alice", purpose="payments",
                                          plan=["payments"])
            token = await task.exchange("payments", "create", details=LARGE)
            assert claims(token.access_token)["aud"] == "https://payments.example.com"

    asyncio.run(run())
