"""An MCP client for the gateway tests: the official MCP Python SDK (Client over Streamable HTTP)
with the agent's identity as bearer token and its task in the Txn-Token header.

usage: client.py URL IDENTITY TXN list
       client.py URL IDENTITY TXN call NAME ARGUMENTS_JSON [APPROVAL_ID]
Prints one JSON object: {"tools": [names]}, {"result": text, "is_error": bool, "logs": [data],
"progress": [[progress, total, message]]} or {"error": {"code", "message", "data"}}. Logs and
progress are the notifications the client received during the call, in order."""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client
from mcp.shared.exceptions import MCPError


async def main():
    url, identity, txn, command, *rest = sys.argv[1:]
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {identity}", "Txn-Token": txn})
    transport = streamable_http_client(url, http_client=http)
    logs, progress = [], []

    async def on_log(params):
        logs.append(params.data)

    async def on_progress(done, total, message):
        progress.append([done, total, message])

    async with Client(transport, mode="legacy", cache=None, logging_callback=on_log) as client:
        try:
            if command == "list":
                listed = await client.list_tools()
                print(json.dumps({"tools": sorted(t.name for t in listed.tools)}))
            else:
                name, arguments = rest[0], json.loads(rest[1])
                meta = {"io.handoff/approval_id": rest[2]} if len(rest) > 2 else None
                result = await client.call_tool(name, arguments, progress_callback=on_progress, meta=meta)
                text = " ".join(c.text for c in result.content if getattr(c, "text", None))
                print(json.dumps({"result": text, "is_error": bool(result.is_error), "logs": logs, "progress": progress}))
        except MCPError as e:
            print(json.dumps({"error": {"code": e.error.code, "message": e.error.message, "data": e.error.data}}))


asyncio.run(main())
