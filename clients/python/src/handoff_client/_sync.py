"""The synchronous client: ``Client`` and its ``Task``."""

from __future__ import annotations

import time
from typing import Any, Callable, Generator, Sequence

import httpx

from ._core import (
    Delegation,
    Details,
    Endpoints,
    ExchangeRequest,
    Identity,
    PendingNotice,
    TaskInfo,
    Token,
    TokenCache,
    answer,
    delegation_body,
    identity_of,
    mcp_headers,
    metadata_url,
    parse_metadata,
    task_body,
    token_from,
)
from ._errors import ApprovalTimeout, HandoffError, PendingApproval, error_from

OnPending = Callable[[PendingNotice], Any]


class Client:
    """Handoff for one agent: ``identity`` is its workload identity JWT (or a function returning
    the current one).

    ``url`` is the server's base URL; the endpoints come from its RFC 8414 metadata
    (``/.well-known/oauth-authorization-server``) on first use, with Handoff's known paths under
    ``url`` for any the metadata does not name (``discover=False`` skips the metadata).
    ``cache_skew`` is how many seconds before its expiry a cached token stops being handed out;
    ``approval_timeout`` how long ``exchange`` waits for a person at most, and ``on_pending`` is
    called once each time a request starts waiting, with who must approve it."""

    def __init__(
        self,
        url: str,
        identity: Identity,
        *,
        http: httpx.Client | None = None,
        timeout: float = 30.0,
        discover: bool = True,
        cache_skew: float = 30.0,
        approval_timeout: float = 600.0,
        on_pending: OnPending | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self._identity = identity
        self._own_http = http is None
        self.http = http if http is not None else httpx.Client(timeout=timeout)
        self._endpoints: Endpoints | None = None if discover else Endpoints.from_base(self.url)
        self.cache_skew = cache_skew
        self.approval_timeout = approval_timeout
        self.on_pending = on_pending
        self._sleep = sleep

    @property
    def identity(self) -> str:
        return identity_of(self._identity)

    @property
    def endpoints(self) -> Endpoints:
        if self._endpoints is None:
            try:
                response = self.http.get(metadata_url(self.url))
            except httpx.HTTPError as e:
                raise HandoffError(f"Handoff at {self.url} cannot be reached: {e}") from e
            self._endpoints = parse_metadata(self.url, response)
        return self._endpoints

    def open_task(
        self,
        intent: str,
        *,
        user: str,
        purpose: str | None = None,
        plan: Sequence[str] = (),
        lifetime: int | None = None,
    ) -> "Task":
        """Opens a task: its intent, the user it acts for, its purpose and the systems it plans
        to touch. Returns the task, holding its Transaction Token."""
        body = task_body(intent, user, purpose, plan, lifetime)
        response = self._post(self.endpoints.tasks, json=body, bearer=self.identity)
        return Task(self, TaskInfo.of(answer(response, 201)))

    def join(self, txn_token: str, task_id: str | None = None) -> "Task":
        """A task this agent got a Transaction Token for from elsewhere: a delegate's child
        token (``Delegation.txn_token``), or a task opened by another process."""
        return Task(self, TaskInfo(task_id=task_id or "", txn_token=txn_token))

    def send_evidence(self, jwt: str) -> dict[str, Any]:
        """Posts a signed evidence JWT (see ``handoff_client.evidence``); returns the record."""
        response = self._post(
            self.endpoints.evidence, content=jwt.encode(), headers={"content-type": "application/jwt"}
        )
        return answer(response, 201)

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, url: str, *, bearer: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if bearer is not None:
            headers["authorization"] = f"Bearer {bearer}"
        try:
            return self.http.post(url, headers=headers, **kwargs)
        except httpx.HTTPError as e:
            raise HandoffError(f"Handoff at {url} cannot be reached: {e}") from e


class Task:
    """One task of the client's agent: exchange for per-handoff tokens, delegate, end."""

    def __init__(self, client: Client, info: TaskInfo) -> None:
        self.client = client
        self.info = info
        self.cache = TokenCache()

    @property
    def task_id(self) -> str:
        return self.info.task_id

    @property
    def txn_token(self) -> str:
        return self.info.txn_token

    def exchange(
        self,
        system: str,
        actions: str | Sequence[str],
        *,
        resource: str | None = None,
        details: Details | None = None,
        lifetime: int | None = None,
        wait: bool = True,
        approval_id: str | None = None,
        approval_timeout: float | None = None,
        on_pending: OnPending | None = None,
        cache: bool = True,
    ) -> Token:
        """One handoff: a token for ``actions`` on ``system`` (the system's id), for
        ``resource`` and ``details`` (authorization details; ``type`` defaults to the system).

        A token this task got for exactly this request is reused until shortly before it
        expires. A request that needs a person's approval is polled as an OAuth device client
        polls (the server's ``interval``, more after ``slow_down``) until a token, a refusal or
        ``approval_timeout``; with ``wait=False`` it raises ``PendingApproval`` instead.
        Refusals raise ``AccessDenied`` (reason, policies, decision id), ``ApprovalDenied``,
        ``ApprovalExpired``, ``ApprovalTimeout`` or another ``HandoffError``."""
        key = ExchangeRequest.of(system, actions, resource, details, lifetime)
        if cache and approval_id is None:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        client = self.client
        timeout = client.approval_timeout if approval_timeout is None else approval_timeout
        notify = on_pending if on_pending is not None else client.on_pending
        deadline = time.monotonic() + timeout if approval_id is not None else None
        interval = 0.0
        while True:
            sent_at, sent_mono = time.time(), time.monotonic()
            response = client._post(
                client.endpoints.token, data=key.form(client.identity, self.txn_token, approval_id)
            )
            if response.status_code == 200:
                token = token_from(answer(response, 200), system, sent_at, sent_mono, client.cache_skew)
                if cache:
                    self.cache.put(key, token)
                return token
            error = _refusal(response)
            if not isinstance(error, PendingApproval):
                raise error
            interval = _next_interval(error, interval)
            if approval_id is None:
                approval_id = error.approval_id
                if not wait:
                    raise error
                deadline = time.monotonic() + timeout
                if notify is not None:
                    notify(_notice(error, key))
            elif not wait:
                raise error
            assert deadline is not None
            if time.monotonic() + interval > deadline:
                raise ApprovalTimeout(
                    f"approval {approval_id} still pending after {timeout:g}s",
                    approval_id=approval_id,
                    body=error.body,
                )
            client._sleep(interval)

    def delegate(
        self,
        delegate: str,
        actions: Sequence[str],
        *,
        lifetime: int | None = None,
        delegate_issuer: str | None = None,
    ) -> Delegation:
        """Hands ``actions`` (``system:action`` items) of this task to the workload
        ``delegate``; give the worker the returned ``Delegation`` (its ``txn_token``)."""
        body = delegation_body(self.txn_token, delegate, actions, lifetime, delegate_issuer)
        client = self.client
        response = client._post(client.endpoints.delegations, json=body, bearer=client.identity)
        return Delegation.of(answer(response, 201))

    def end(self) -> str:
        """Ends the task: nothing more is minted under it. Returns its state."""
        self.cache.clear()
        client = self.client
        url = f"{client.endpoints.tasks}/{self.task_id}/end"
        body = answer(client._post(url, bearer=client.identity), 200)
        return str(body.get("state", ""))

    def mcp_headers(self) -> dict[str, str]:
        """Headers for an MCP client of Handoff's ``/mcp`` (the official SDK's
        ``create_mcp_http_client(headers=...)``): the identity and the task."""
        return mcp_headers(self.client.identity, self.txn_token)

    def auth(self) -> "IdentityAuth":
        """An ``httpx.Auth`` putting the identity and the task on every request (``/mcp``)."""
        return IdentityAuth(lambda: self.client.identity, self.txn_token)

    def token_auth(
        self,
        system: str,
        actions: str | Sequence[str],
        *,
        resource: str | None = None,
        details: Details | None = None,
    ) -> "TokenAuth":
        """An ``httpx.Auth`` for a system behind the gateway (``/gateway/SYSTEM/...``): each
        request carries a token for this handoff, exchanged (or reused from the cache) when
        the request is sent; a 401 drops it and retries once with a fresh one."""
        return TokenAuth(self, system, actions, resource, details)

    def __enter__(self) -> "Task":
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()


class IdentityAuth(httpx.Auth):
    """``Authorization: Bearer <identity>`` and ``Txn-Token: <task>`` on every request."""

    def __init__(self, identity: Callable[[], str], txn_token: str) -> None:
        self._identity = identity
        self._txn = txn_token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        for name, value in mcp_headers(self._identity(), self._txn).items():
            request.headers[name] = value
        yield request


class TokenAuth(httpx.Auth):
    """A per-handoff access token on every request (sync clients)."""

    requires_request_body = True

    def __init__(
        self,
        task: Task,
        system: str,
        actions: str | Sequence[str],
        resource: str | None,
        details: Details | None,
    ) -> None:
        self._task = task
        self._args = (system, actions)
        self._kwargs: dict[str, Any] = {"resource": resource, "details": details}
        self._key = ExchangeRequest.of(system, actions, resource, details, None)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._task.exchange(*self._args, **self._kwargs)
        request.headers["authorization"] = f"Bearer {token.access_token}"
        response = yield request
        if response.status_code == 401:
            self._task.cache.drop(self._key)
            token = self._task.exchange(*self._args, **self._kwargs)
            request.headers["authorization"] = f"Bearer {token.access_token}"
            yield request


def _refusal(response: httpx.Response) -> HandoffError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return error_from(response.status_code, body)


def _next_interval(pending: PendingApproval, previous: float) -> float:
    """The server's ``interval``; after ``slow_down`` without one, five seconds more."""
    given = pending.body.get("interval")
    if isinstance(given, int) and given > 0:
        return float(given)
    if pending.error == "slow_down":
        return previous + 5.0
    return previous or 5.0


def _notice(pending: PendingApproval, key: ExchangeRequest) -> PendingNotice:
    return PendingNotice(
        approval_id=pending.approval_id,
        approver_group=pending.approver_group,
        system=key.system,
        actions=key.actions,
        expires_in=pending.expires_in,
    )
