"""What the sync and async clients share: endpoints, request forms, answers, the token cache.
No I/O here."""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, Union

import httpx

from ._errors import DiscoveryError, HandoffError, error_from

GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TYPE_TXN_TOKEN = "urn:ietf:params:oauth:token-type:txn_token"
TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
METADATA_PATH = "/.well-known/oauth-authorization-server"

#: A workload identity JWT, or a function returning the current one (identities expire and are
#: rotated; the function is called for every request).
Identity = Union[str, Callable[[], str]]
#: Authorization details: one object (its ``type`` defaults to the system) or a list of them.
Details = Union[Mapping[str, Any], Sequence[Mapping[str, Any]]]


def identity_of(identity: Identity) -> str:
    return identity() if callable(identity) else identity


@dataclass(frozen=True)
class Endpoints:
    """Where each of Handoff's endpoints is: from its RFC 8414 metadata where it names them,
    else the server's base URL and Handoff's known paths."""

    issuer: str
    token: str
    tasks: str
    delegations: str
    evidence: str
    jwks: str
    introspection: str

    @staticmethod
    def from_base(base_url: str) -> "Endpoints":
        base = base_url.rstrip("/")
        return Endpoints(
            issuer=base,
            token=f"{base}/oauth/token",
            tasks=f"{base}/v1/tasks",
            delegations=f"{base}/v1/delegations",
            evidence=f"{base}/v1/evidence",
            jwks=f"{base}/.well-known/jwks.json",
            introspection=f"{base}/oauth/introspect",
        )

    @staticmethod
    def from_metadata(base_url: str, metadata: Any) -> "Endpoints":
        if not isinstance(metadata, dict):
            raise DiscoveryError("the authorization server metadata is not a JSON object")
        known = Endpoints.from_base(base_url)

        def pick(name: str, fallback: str) -> str:
            value = metadata.get(name)
            if value is None:
                return fallback
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                raise DiscoveryError(f"the metadata's `{name}` is not an http(s) URL")
            return value.rstrip("/")

        return Endpoints(
            issuer=pick("issuer", known.issuer),
            token=pick("token_endpoint", known.token),
            tasks=pick("handoff_tasks_endpoint", known.tasks),
            delegations=pick("handoff_delegations_endpoint", known.delegations),
            evidence=pick("handoff_evidence_endpoint", known.evidence),
            jwks=pick("jwks_uri", known.jwks),
            introspection=pick("introspection_endpoint", known.introspection),
        )


def metadata_url(base_url: str) -> str:
    return base_url.rstrip("/") + METADATA_PATH


def parse_metadata(base_url: str, response: httpx.Response) -> Endpoints:
    if response.status_code == 404:
        return Endpoints.from_base(base_url)
    if response.status_code != 200:
        raise DiscoveryError(
            f"{metadata_url(base_url)} answered {response.status_code}",
            status=response.status_code,
        )
    try:
        metadata = response.json()
    except ValueError as e:
        raise DiscoveryError(f"{metadata_url(base_url)} is not JSON") from e
    return Endpoints.from_metadata(base_url, metadata)


def answer(response: httpx.Response, expected: int) -> dict[str, Any]:
    """The JSON object of a successful answer, or the typed error of a refusal."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != expected:
        raise error_from(response.status_code, body)
    if not isinstance(body, dict):
        raise HandoffError(
            f"{response.request.url} answered {response.status_code} without a JSON object",
            status=response.status_code,
        )
    return body


@dataclass(frozen=True)
class Token:
    """An access token for one system: use ``access_token`` as a Bearer token until
    ``expires_at`` (Unix seconds)."""

    access_token: str
    expires_at: float
    scope: str
    decision_id: str | None
    system: str
    #: When it stops being handed out from the cache (monotonic clock).
    _stale_at: float = field(repr=False, compare=False, default=0.0)

    @property
    def expires_in(self) -> float:
        return max(0.0, self.expires_at - time.time())

    def __str__(self) -> str:
        return self.access_token


def token_from(body: Mapping[str, Any], system: str, sent_at: float, sent_mono: float, skew: float) -> Token:
    """The token of a 200 answer; its expiry counted from when the request was sent, so it is
    never later than the server's."""
    access_token = body.get("access_token")
    expires_in = body.get("expires_in")
    if not isinstance(access_token, str) or not isinstance(expires_in, (int, float)):
        raise HandoffError("the token answer has no access_token or expires_in", status=200, body=body)
    scope = body.get("scope")
    decision = body.get("decision_id")
    # The server counts whole seconds from its own now, which is no earlier than `sent_at`.
    whole = math.floor(sent_at)
    sent_mono -= sent_at - whole
    return Token(
        access_token=access_token,
        expires_at=whole + float(expires_in),
        scope=scope if isinstance(scope, str) else "",
        decision_id=decision if isinstance(decision, str) else None,
        system=system,
        _stale_at=sent_mono + float(expires_in) - skew,
    )


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def details_list(system: str, details: Details | None) -> list[dict[str, Any]] | None:
    if details is None:
        return None
    items = [details] if isinstance(details, Mapping) else list(details)
    out = []
    for item in items:
        entry = dict(item)
        entry.setdefault("type", system)
        out.append(entry)
    return out


@dataclass(frozen=True)
class ExchangeRequest:
    """One handoff exactly as asked: the cache key of its token."""

    system: str
    actions: tuple[str, ...]
    resource: str | None
    details: str | None  # canonical JSON
    lifetime: int | None

    @staticmethod
    def of(
        system: str,
        actions: str | Sequence[str],
        resource: str | None,
        details: Details | None,
        lifetime: int | None,
    ) -> "ExchangeRequest":
        listed = (actions,) if isinstance(actions, str) else tuple(actions)
        if not listed or any(not a or " " in a for a in listed):
            raise ValueError("actions must be one or more action names without spaces")
        items = details_list(system, details)
        return ExchangeRequest(
            system=system,
            actions=listed,
            resource=resource,
            details=canonical(items) if items is not None else None,
            lifetime=lifetime,
        )

    def form(self, identity: str, txn_token: str, approval_id: str | None) -> dict[str, str]:
        form = {
            "grant_type": GRANT_TOKEN_EXCHANGE,
            "subject_token": txn_token,
            "subject_token_type": TYPE_TXN_TOKEN,
            "actor_token": identity,
            "actor_token_type": TYPE_JWT,
            "audience": self.system,
            "scope": " ".join(self.actions),
        }
        if self.resource is not None:
            form["resource"] = self.resource
        if self.details is not None:
            form["authorization_details"] = self.details
        if self.lifetime is not None:
            form["requested_lifetime"] = str(self.lifetime)
        if approval_id is not None:
            form["approval_id"] = approval_id
        return form


class TokenCache:
    """Tokens by the exact request they were minted for; one is handed out again only for that
    request and only until its expiry less the skew. Safe to share between threads."""

    def __init__(self) -> None:
        self._tokens: dict[ExchangeRequest, Token] = {}
        self._lock = threading.Lock()

    def get(self, key: ExchangeRequest) -> Token | None:
        with self._lock:
            token = self._tokens.get(key)
            if token is None:
                return None
            if time.monotonic() >= token._stale_at:
                del self._tokens[key]
                return None
            return token

    def put(self, key: ExchangeRequest, token: Token) -> None:
        with self._lock:
            if time.monotonic() < token._stale_at:
                self._tokens[key] = token

    def drop(self, key: ExchangeRequest) -> None:
        with self._lock:
            self._tokens.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)


@dataclass(frozen=True)
class PendingNotice:
    """What ``on_pending`` is told when a request starts waiting for a person."""

    approval_id: str
    #: The group whose member must approve (never the agent, nor the task's user).
    approver_group: str | None
    system: str
    actions: tuple[str, ...]
    expires_in: int | None


@dataclass(frozen=True)
class TaskInfo:
    """An open task: its id and Transaction Token, and what the server said about it."""

    task_id: str
    txn_token: str
    expires_at: str | None = None
    purpose: str | None = None
    user: str | None = None
    plan: tuple[str, ...] = ()
    decision_id: str | None = None

    @staticmethod
    def of(body: Mapping[str, Any]) -> "TaskInfo":
        task_id, txn = body.get("task_id"), body.get("txn_token")
        if not isinstance(task_id, str) or not isinstance(txn, str):
            raise HandoffError("the task answer has no task_id or txn_token", body=body)
        plan = body.get("plan")
        return TaskInfo(
            task_id=task_id,
            txn_token=txn,
            expires_at=_text(body.get("expires_at")),
            purpose=_text(body.get("purpose")),
            user=_text(body.get("user")),
            plan=tuple(p for p in plan if isinstance(p, str)) if isinstance(plan, list) else (),
            decision_id=_text(body.get("decision_id")),
        )


@dataclass(frozen=True)
class Delegation:
    """A delegation: hand ``txn_token`` (and ``task_id``) to the worker ``delegate``, which
    joins the task with ``Client.join(...)`` under its own identity."""

    delegation_id: str
    task_id: str
    txn_token: str
    delegate: str
    scope: tuple[str, ...]
    depth: int
    expires_at: str | None

    @staticmethod
    def of(body: Mapping[str, Any]) -> "Delegation":
        fields = ("delegation_id", "task_id", "txn_token", "delegate")
        if not all(isinstance(body.get(f), str) for f in fields):
            raise HandoffError("the delegation answer is incomplete", body=body)
        scope = body.get("scope")
        depth = body.get("depth")
        return Delegation(
            delegation_id=body["delegation_id"],
            task_id=body["task_id"],
            txn_token=body["txn_token"],
            delegate=body["delegate"],
            scope=tuple(s for s in scope if isinstance(s, str)) if isinstance(scope, list) else (),
            depth=depth if isinstance(depth, int) else 1,
            expires_at=_text(body.get("expires_at")),
        )


def delegation_body(
    txn_token: str,
    delegate: str,
    actions: Sequence[str],
    lifetime: int | None,
    delegate_issuer: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"txn_token": txn_token, "delegate": delegate, "scope": list(actions)}
    if lifetime is not None:
        body["lifetime_seconds"] = lifetime
    if delegate_issuer is not None:
        body["delegate_issuer"] = delegate_issuer
    return body


def task_body(
    intent: str,
    user: str,
    purpose: str | None,
    plan: Sequence[str],
    lifetime: int | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"intent": intent, "user": user, "plan": list(plan)}
    if purpose is not None:
        body["purpose"] = purpose
    if lifetime is not None:
        body["lifetime_seconds"] = lifetime
    return body


def mcp_headers(identity: str, txn_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {identity}", "Txn-Token": txn_token}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
