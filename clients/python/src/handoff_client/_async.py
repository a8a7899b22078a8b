"""The asynchronous client: ``AsyncClient`` and its ``AsyncTask``; the same calls as ``Client``
and ``Task``, awaited."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, AsyncGenerator, Awaitable, Callable, Sequence, Union

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
from ._errors import ApprovalTimeout, HandoffError, PendingApproval
from ._sync import IdentityAuth, _next_interval, _notice, _refusal

AsyncOnPending = Callable[[PendingNotice], Union[Any, Awaitable[Any]]]


class AsyncClient:
    """``Client`` for asyncio: the same arguments; ``on_pending`` may be a coroutine function."""

    def __init__(
        self,
        url: str,
        identity: Identity,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        discover: bool = True,
        cache_skew: float = 30.0,
        approval_timeout: float = 600.0,
        on_pending: AsyncOnPending | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self._identity = identity
        self._own_http = http is None
        self.http = http if http is not None else httpx.AsyncClient(timeout=timeout)
        self._endpoints: Endpoints | None = None if discover else Endpoints.from_base(self.url)
        self.cache_skew = cache_skew
        self.approval_timeout = approval_timeout
        self.on_pending = on_pending
        self._sleep = sleep

    @property
    def identity(self) -> str:
        return identity_of(self._identity)

    async def endpoints(self) -> Endpoints:
        if self._endpoints is None:
            try:
                response = await self.http.get(metadata_url(self.url))
            except httpx.HTTPError as e:
                raise HandoffError(f"Handoff at {self.url} cannot be reached: {e}") from e
            self._endpoints = parse_metadata(self.url, response)
        return self._endpoints

    async def open_task(
        self,
        intent: str,
        *,
        user: str,
        purpose: str | None = None,
        plan: Sequence[str] = (),
        lifetime: int | None = None,
    ) -> "AsyncTask":
        body = task_body(intent, user, purpose, plan, lifetime)
        endpoints = await self.endpoints()
        response = await self._post(endpoints.tasks, json=body, bearer=self.identity)
        return AsyncTask(self, TaskInfo.of(answer(response, 201)))

    def join(self, txn_token: str, task_id: str | None = None) -> "AsyncTask":
        return AsyncTask(self, TaskInfo(task_id=task_id or "", txn_token=txn_token))

    async def send_evidence(self, jwt: str) -> dict[str, Any]:
        endpoints = await self.endpoints()
        response = await self._post(
            endpoints.evidence, content=jwt.encode(), headers={"content-type": "application/jwt"}
        )
        return answer(response, 201)

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _post(self, url: str, *, bearer: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if bearer is not None:
            headers["authorization"] = f"Bearer {bearer}"
        try:
            return await self.http.post(url, headers=headers, **kwargs)
        except httpx.HTTPError as e:
            raise HandoffError(f"Handoff at {url} cannot be reached: {e}") from e


class AsyncTask:
    """``Task`` for asyncio."""

    def __init__(self, client: AsyncClient, info: TaskInfo) -> None:
        self.client = client
        self.info = info
        self.cache = TokenCache()

    @property
    def task_id(self) -> str:
        return self.info.task_id

    @property
    def txn_token(self) -> str:
        return self.info.txn_token

    async def exchange(
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
        on_pending: AsyncOnPending | None = None,
        cache: bool = True,
    ) -> Token:
        """See ``Task.exchange``."""
        key = ExchangeRequest.of(system, actions, resource, details, lifetime)
        if cache and approval_id is None:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        client = self.client
        endpoints = await client.endpoints()
        timeout = client.approval_timeout if approval_timeout is None else approval_timeout
        notify = on_pending if on_pending is not None else client.on_pending
        deadline = time.monotonic() + timeout if approval_id is not None else None
        interval = 0.0
        while True:
            sent_at, sent_mono = time.time(), time.monotonic()
            response = await client._post(
                endpoints.token, data=key.form(client.identity, self.txn_token, approval_id)
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
                    result = notify(_notice(error, key))
                    if inspect.isawaitable(result):
                        await result
            elif not wait:
                raise error
            assert deadline is not None
            if time.monotonic() + interval > deadline:
                raise ApprovalTimeout(
                    f"approval {approval_id} still pending after {timeout:g}s",
                    approval_id=approval_id,
                    body=error.body,
                )
            await client._sleep(interval)

    async def delegate(
        self,
        delegate: str,
        actions: Sequence[str],
        *,
        lifetime: int | None = None,
        delegate_issuer: str | None = None,
    ) -> Delegation:
        body = delegation_body(self.txn_token, delegate, actions, lifetime, delegate_issuer)
        client = self.client
        endpoints = await client.endpoints()
        response = await client._post(endpoints.delegations, json=body, bearer=client.identity)
        return Delegation.of(answer(response, 201))

    async def end(self) -> str:
        self.cache.clear()
        client = self.client
        endpoints = await client.endpoints()
        url = f"{endpoints.tasks}/{self.task_id}/end"
        body = answer(await client._post(url, bearer=client.identity), 200)
        return str(body.get("state", ""))

    def mcp_headers(self) -> dict[str, str]:
        return mcp_headers(self.client.identity, self.txn_token)

    def auth(self) -> IdentityAuth:
        return IdentityAuth(lambda: self.client.identity, self.txn_token)

    def token_auth(
        self,
        system: str,
        actions: str | Sequence[str],
        *,
        resource: str | None = None,
        details: Details | None = None,
    ) -> "AsyncTokenAuth":
        return AsyncTokenAuth(self, system, actions, resource, details)

    async def __aenter__(self) -> "AsyncTask":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.end()


class AsyncTokenAuth(httpx.Auth):
    """A per-handoff access token on every request (async clients)."""

    requires_request_body = True

    def __init__(
        self,
        task: AsyncTask,
        system: str,
        actions: str | Sequence[str],
        resource: str | None,
        details: Details | None,
    ) -> None:
        self._task = task
        self._args = (system, actions)
        self._kwargs: dict[str, Any] = {"resource": resource, "details": details}
        self._key = ExchangeRequest.of(system, actions, resource, details, None)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._task.exchange(*self._args, **self._kwargs)
        request.headers["authorization"] = f"Bearer {token.access_token}"
        response = yield request
        if response.status_code == 401:
            self._task.cache.drop(self._key)
            token = await self._task.exchange(*self._args, **self._kwargs)
            request.headers["authorization"] = f"Bearer {token.access_token}"
            yield request
