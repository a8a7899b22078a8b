"""Handoff's Python client: open a task, get a separate short-lived token for each handoff,
wait for approvals, delegate to workers, and call gateways and MCP servers as the task.

    from handoff_client import Client

    with Client("http://127.0.0.1:8080", identity=agent_jwt) as handoff:
        task = handoff.open_task("Ship the fix for TICKET-42", user="alice",
                                 purpose="release", plan=["git", "ci"])
        token = task.exchange("ci", ["run_tests"])      # Token: access_token, expires_at
        task.end()

``AsyncClient`` is the same for asyncio. See docs/python.md in the Handoff repository."""

from ._async import AsyncClient, AsyncTask, AsyncTokenAuth
from ._core import Delegation, Endpoints, PendingNotice, TaskInfo, Token
from ._errors import (
    AccessDenied,
    ApprovalDenied,
    ApprovalExpired,
    ApprovalTimeout,
    DiscoveryError,
    HandoffError,
    PendingApproval,
    Unauthorized,
)
from ._sync import Client, IdentityAuth, Task, TokenAuth

__all__ = [
    "AccessDenied",
    "ApprovalDenied",
    "ApprovalExpired",
    "ApprovalTimeout",
    "AsyncClient",
    "AsyncTask",
    "AsyncTokenAuth",
    "Client",
    "Delegation",
    "DiscoveryError",
    "Endpoints",
    "HandoffError",
    "IdentityAuth",
    "PendingApproval",
    "PendingNotice",
    "Task",
    "TaskInfo",
    "Token",
    "TokenAuth",
    "Unauthorized",
]
