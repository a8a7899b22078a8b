"""Discovery, tasks, allowed and denied exchanges, the token cache, the httpx.Auth helpers."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from conftest import Handoff, claims
from handoff_client import AccessDenied, AsyncClient, Client, HandoffError


def agent(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_discovery_takes_the_endpoints_the_metadata_names(handoff: Handoff) -> None:
    metadata = httpx.get(f"{handoff.url}/.well-known/oauth-authorization-server").json()
    with Client(handoff.url, identity="unused") as client:
        assert client.endpoints.token == metadata["token_endpoint"]
        assert client.endpoints.tasks == metadata["handoff_tasks_endpoint"]
        assert client.endpoints.jwks == metadata["jwks_uri"]
        assert client.endpoints.issuer == metadata["issuer"]
        # Not in the metadata: Handoff's known path under the server's URL.
        assert client.endpoints.delegations == f"{handoff.url}/v1/delegations"


def test_an_allowed_exchange_returns_a_token_for_exactly_that_system(handoff: Handoff) -> None:
    bot = agent("release-bot")
    with Client(handoff.url, identity=handoff.identity(bot)) as client:
        task = client.open_task("Ship the fix for TICKET-42", user="alice", purpose="release",
                                plan=["git", "ci"])
        assert task.task_id.startswith("task")
        before = time.time()
        token = task.exchange("ci", ["run_tests"])
        seen = claims(token.access_token)
        assert seen["aud"] == "https://ci.example.com"
        assert seen["scope"] == "ci:run_tests"
        assert seen["txn"] == task.task_id
        assert seen["act"]["sub"] == bot
        assert token.decision_id is not None and token.decision_id.startswith("dec")
        # The expiry is counted from before the request went out: never later than the token's.
        assert before < token.expires_at <= seen["exp"]
        assert task.end() == "ended"
        # An ended task mints nothing more, and its cache was dropped with it.
        with pytest.raises(HandoffError) as ended:
            task.exchange("ci", ["run_tests"])
        assert ended.value.status in (400, 403)


def test_a_denied_exchange_raises_access_denied_with_its_reason_policies_and_decision(
    handoff: Handoff,
) -> None:
    with Client(handoff.url, identity=handoff.identity(agent("release-bot"))) as client:
        task = client.open_task("Ship it", user="alice", purpose="release",
                                plan=["git", "ci", "payments"])
        with pytest.raises(AccessDenied) as denied:
            task.exchange("payments", "read")
        error = denied.value
        assert error.status == 403 and error.error == "access_denied"
        assert error.reason == "forbidden"
        assert "payments-only-for-payments-tasks" in error.policies
        assert error.decision_id is not None and error.decision_id.startswith("dec")
        # No policy permits a deploy before tests ran: a different reason, no policies to name.
        with pytest.raises(AccessDenied) as no_permit:
            task.exchange("ci", "deploy")
        assert no_permit.value.reason == "no_permit"


def test_a_token_is_reused_only_for_the_exact_request_it_was_minted_for(handoff: Handoff) -> None:
    with Client(handoff.url, identity=handoff.identity(agent("git-bot"))) as client:
        task = client.open_task("Open a PR", user="alice", purpose="release", plan=["git"])
        first = task.exchange("git", ["read"], resource="repo:acme/app")
        again = task.exchange("git", ["read"], resource="repo:acme/app")
        assert again.access_token == first.access_token
        assert len(task.cache) == 1
        # Another resource, other actions, other details: another request, another token.
        other_repo = task.exchange("git", ["read"], resource="repo:acme/web")
        assert other_repo.access_token != first.access_token
        assert claims(other_repo.access_token)["resource"] == "repo:acme/web"
        pr = task.exchange("git", ["open_pr"], resource="repo:acme/app")
        assert pr.access_token != first.access_token
        assert claims(pr.access_token)["scope"] == "git:open_pr"
        # Asked without the cache, a fresh one; the cached one is still handed out after.
        fresh = task.exchange("git", ["read"], resource="repo:acme/app", cache=False)
        assert fresh.access_token != first.access_token
        assert task.exchange("git", ["read"], resource="repo:acme/app").access_token == first.access_token


def test_a_token_is_never_reused_past_its_expiry_less_the_skew(handoff: Handoff) -> None:
    # 20 s tokens with a 30 s skew: each is stale on arrival, so none is ever handed out again.
    with Client(handoff.url, identity=handoff.identity(agent("git-bot")), cache_skew=30) as client:
        task = client.open_task("Read code", user="alice", purpose="release", plan=["git"])
        first = task.exchange("git", ["read"], lifetime=20)
        assert 0 < first.expires_in <= 20
        second = task.exchange("git", ["read"], lifetime=20)
        assert second.access_token != first.access_token
        assert len(task.cache) == 0


def test_the_async_client_does_the_same(handoff: Handoff) -> None:
    async def run() -> None:
        async with AsyncClient(handoff.url, identity=handoff.identity(agent("async-bot"))) as client:
            task = await client.open_task("Ship it", user="alice", purpose="release", plan=["git", "ci"])
            token = await task.exchange("ci", "run_tests")
            assert (await task.exchange("ci", "run_tests")).access_token == token.access_token
            with pytest.raises(AccessDenied) as denied:
                await task.exchange("ci", "deploy", details={"commit": "abc123"})
            assert denied.value.reason == "forbidden"
            assert "deploy-only-tested-commit" in denied.value.policies
            assert await task.end() == "ended"

    asyncio.run(run())


def test_the_identity_auth_puts_the_agent_and_task_on_every_mcp_call(handoff: Handoff) -> None:
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                  "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                             "clientInfo": {"name": "test", "version": "0"}}}
    accept = {"accept": "application/json, text/event-stream"}
    with Client(handoff.url, identity=handoff.identity(agent("mcp-bot"))) as client:
        task = client.open_task("Use tools", user="alice", purpose="support", plan=["tickets"])
        assert task.mcp_headers() == {"Authorization": f"Bearer {client.identity}",
                                      "Txn-Token": task.txn_token}
        anonymous = httpx.post(f"{handoff.url}/mcp", json=initialize, headers=accept)
        assert anonymous.status_code == 401
        with httpx.Client(auth=task.auth(), headers=accept) as mcp:
            answered = mcp.post(f"{handoff.url}/mcp", json=initialize)
            assert answered.status_code == 200, answered.text
            assert answered.json()["result"]["serverInfo"]


def test_the_token_auth_sends_a_token_for_the_handoff_it_names(handoff: Handoff) -> None:
    seen: list[str] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(401 if len(seen) == 2 else 200)

    with Client(handoff.url, identity=handoff.identity(agent("git-bot"))) as client:
        task = client.open_task("Open a PR", user="alice", purpose="release", plan=["git"])
        auth = task.token_auth("git", "open_pr", resource="repo:acme/app")
        with httpx.Client(transport=httpx.MockTransport(upstream), auth=auth) as api:
            assert api.post("http://git.invalid/repos/acme/app/pulls", json={}).status_code == 200
            first = seen[0].removeprefix("Bearer ")
            assert claims(first)["scope"] == "git:open_pr"
            assert claims(first)["resource"] == "repo:acme/app"
            # A 401 drops the token and retries once with a freshly exchanged one.
            assert api.post("http://git.invalid/repos/acme/app/pulls", json={}).status_code == 200
            assert seen[1] == seen[0] and seen[2] != seen[0]
