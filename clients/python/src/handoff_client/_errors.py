"""Typed errors: every refusal Handoff answers with, as an exception carrying its body's members."""

from __future__ import annotations

from typing import Any, Mapping


class HandoffError(Exception):
    """Handoff refused a request, or could not be reached.

    ``status`` is the HTTP status (``None`` when no answer came), ``error`` the stable error code
    (``access_denied``, ``invalid_request``, ...), ``description`` its ``error_description``, and
    ``body`` the whole error body."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: str | None = None,
        description: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.description = description
        self.body: Mapping[str, Any] = body or {}


class DiscoveryError(HandoffError):
    """The server's metadata (RFC 8414) could not be read or is unusable."""


class AccessDenied(HandoffError):
    """403 ``access_denied``: policy (or a check before it) refused the request.

    ``reason`` is the reason code (``no_permit``, ``forbidden``, ``outside_delegation``,
    ``approval_denied``, ...), ``policies`` the ids of the policies that determined the decision,
    and ``decision_id`` the decision's id in the audit chain (``handoff trace`` shows it)."""

    @property
    def reason(self) -> str | None:
        value = self.body.get("reason")
        return value if isinstance(value, str) else None

    @property
    def policies(self) -> list[str]:
        value = self.body.get("policies")
        return [p for p in value if isinstance(p, str)] if isinstance(value, list) else []

    @property
    def decision_id(self) -> str | None:
        value = self.body.get("decision_id")
        return value if isinstance(value, str) else None


class ApprovalDenied(AccessDenied):
    """The approval this request waited for was denied or cancelled (``reason`` says which)."""


class PendingApproval(HandoffError):
    """The request waits for a person to approve it (400 ``authorization_pending``).

    Raised by ``exchange(..., wait=False)``; ``exchange`` waits by default. ``approval_id`` names
    the approval, ``approver_group`` who must approve it, ``interval`` how many seconds apart to
    poll and ``expires_in`` how long the approval may take."""

    @property
    def approval_id(self) -> str:
        return str(self.body.get("approval_id", ""))

    @property
    def approver_group(self) -> str | None:
        value = self.body.get("approver_group")
        return value if isinstance(value, str) else None

    @property
    def interval(self) -> int:
        value = self.body.get("interval")
        return value if isinstance(value, int) and value > 0 else 5

    @property
    def expires_in(self) -> int | None:
        value = self.body.get("expires_in")
        return value if isinstance(value, int) else None


class ApprovalExpired(HandoffError):
    """400 ``expired_token``: nobody decided in time, or the approval was not used in time."""


class ApprovalTimeout(HandoffError):
    """This client stopped waiting (its ``approval_timeout``) while the approval was still pending.

    ``approval_id`` can be passed to a later ``exchange(..., approval_id=...)`` to go on waiting."""

    def __init__(self, message: str, *, approval_id: str, body: Mapping[str, Any]) -> None:
        super().__init__(message, status=400, error="authorization_pending", body=body)
        self.approval_id = approval_id


class Unauthorized(HandoffError):
    """401: the identity or credential was refused (``invalid_token``, ``invalid_client``)."""


def error_from(status: int, body: Any) -> HandoffError:
    """The typed error for an error answer (``body`` is its parsed JSON, or anything else)."""
    members: Mapping[str, Any] = body if isinstance(body, dict) else {}
    error = members.get("error") if isinstance(members.get("error"), str) else None
    description = members.get("error_description")
    description = description if isinstance(description, str) else None
    message = f"{status} {error or 'error'}"
    if isinstance(members.get("reason"), str):
        message += f" ({members['reason']})"
    if description:
        message += f": {description}"
    kwargs: dict[str, Any] = {
        "status": status,
        "error": error,
        "description": description,
        "body": members,
    }
    if error == "authorization_pending" or error == "slow_down":
        return PendingApproval(message, **kwargs)
    if error == "expired_token":
        return ApprovalExpired(message, **kwargs)
    if status == 403 and error == "access_denied":
        if members.get("reason") in ("approval_denied", "approval_cancelled"):
            return ApprovalDenied(message, **kwargs)
        return AccessDenied(message, **kwargs)
    if status == 401:
        return Unauthorized(message, **kwargs)
    return HandoffError(message, **kwargs)
