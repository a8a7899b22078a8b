"""An agent using the official MCP Python SDK through Handoff's MCP gateway (`/mcp`).

The "model" is a scripted loop (no LLM needed): it asks for tools one after another and reads
each result. What it shows:
- a permitted call is forwarded to the upstream tool server and its result comes back;
- a denied call reaches the model as a *tool error* carrying Handoff's reason code, the
  policies that decided and the decision id (the gateway answers JSON-RPC -32001; this loop
  turns that into the tool result a model would read, instead of crashing the agent);
- an approval-gated call (JSON-RPC -32003) waits: the agent says who must approve, then retries
  the same call with `_meta {"io.handoff/approval_id": ...}` every `interval` seconds until a
  payments owner approves it (or denies it, or the wait times out).

usage: HANDOFF_IDENTITY=$(handoff identity issue --agent payments-agent) python mcp_agent.py
       [HANDOFF_URL, default http://127.0.0.1:8080]
Prints one JSON line per step: {"tool", "arguments", "is_error", "text"}, and a
{"waiting_for": APPROVAL_ID, "approver_group": GROUP} line when a call waits."""

import asyncio
import json
import os
import sys
import time

from handoff_client import Client
from mcp import Client as McpClient
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client
from mcp.shared.exceptions import MCPError

DENIED = -32001  # Handoff decided no: data has reason, policies, decision_id
APPROVAL = -32003  # Handoff waits for a person: data has approval_id, approver_group, interval
APPROVAL_TIMEOUT = float(os.environ.get("APPROVAL_TIMEOUT", "300"))

# What the scripted "model" asks for, in order.
SCRIPT = [
    ("list_payments", {}),
    ("create_payment", {"amount": 5000, "currency": "EUR", "creditor": "ACME GmbH"}),
    ("create_payment", {"amount": 2000000, "currency": "EUR", "creditor": "ACME GmbH"}),
    ("create_payment", {"amount": 250000, "currency": "EUR", "creditor": "ACME GmbH"}),
]


def say(**line):
    print(json.dumps(line), flush=True)


async def call_tool(mcp, name, arguments):
    """One tool call as the model sees it: (is_error, text). Waits out an approval gate."""
    meta, deadline = None, time.monotonic() + APPROVAL_TIMEOUT
    while True:
        try:
            result = await mcp.call_tool(name, arguments, meta=meta)
        except MCPError as e:
            data = e.error.data or {}
            if e.error.code == APPROVAL and time.monotonic() >= deadline:
                return True, f"approval {data.get('approval_id')} still pending after {APPROVAL_TIMEOUT:g}s"
            if e.error.code == APPROVAL:
                if meta is None:
                    meta = {"io.handoff/approval_id": data["approval_id"]}
                    say(waiting_for=data["approval_id"], approver_group=data.get("approver_group"))
                await asyncio.sleep(float(data.get("interval", 2)))
                continue
            if e.error.code == DENIED:
                policies = ", ".join(data.get("policies") or []) or "no policy permits it"
                return True, (f"denied by Handoff: {data.get('reason')} ({policies}); "
                              f"decision {data.get('decision_id')}")
            return True, f"error {e.error.code}: {e.error.message}"
        text = " ".join(c.text for c in result.content if getattr(c, "text", None))
        return bool(result.is_error), text


async def main():
    url = os.environ.get("HANDOFF_URL", "http://127.0.0.1:8080")
    # discover=False: Handoff's known paths under `url` (the example config's issuer,
    # https://handoff.local, is not an address this machine can reach).
    with Client(url, os.environ["HANDOFF_IDENTITY"], discover=False) as handoff:
        task = handoff.open_task("Pay ACME's invoices", user="alice", purpose="payments",
                                 plan=["payments"])
        # The identity as bearer token and the task in Txn-Token, on every MCP request.
        http = create_mcp_http_client(headers=task.mcp_headers())
        transport = streamable_http_client(f"{url}/mcp", http_client=http)
        async with McpClient(transport, mode="legacy", cache=None) as mcp:
            tools = await mcp.list_tools()
            say(tools=sorted(t.name for t in tools.tools))
            for name, arguments in SCRIPT:
                is_error, text = await call_tool(mcp, name, arguments)
                say(tool=name, arguments=arguments, is_error=is_error, text=text)
        task.end()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
