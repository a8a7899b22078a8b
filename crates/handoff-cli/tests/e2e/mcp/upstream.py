"""An upstream MCP tool server for the gateway tests, written with the official MCP Python SDK
(MCPServer, Streamable HTTP). It records the headers of every HTTP request it receives, one JSON
line each, to the file named by argv[1], and prints its port once it listens."""

import asyncio
import json
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer

LOG = sys.argv[1]
server = MCPServer("payments-and-tickets")


@server.tool()
def create_payment(amount: int, currency: str, creditor: str) -> str:
    """Create a payment (amount in minor units)."""
    return f"created payment of {amount} {currency} to {creditor}"


@server.tool()
def list_payments() -> str:
    """List recent payments."""
    return "no payments yet"


@server.tool()
def close_ticket(ticket: str) -> str:
    """Close a support ticket."""
    return f"closed {ticket}"


@server.tool()
async def export_ticket(ticket: str, ctx: Context) -> str:
    """Export a ticket, logging and reporting progress before the result (as real tools do)."""
    await ctx.info(f"exporting {ticket}")
    await ctx.report_progress(1, 2, "fetched")
    await ctx.report_progress(2, 2, "written")
    return f"exported {ticket}"


@server.tool()
def wipe_ledger() -> str:
    """Not declared in Handoff's config: the gateway never offers or forwards it."""
    return "wiped"


inner = server.streamable_http_app(json_response=False)


async def app(scope, receive, send):
    if scope["type"] == "http":
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        with open(LOG, "a") as log:
            log.write(json.dumps({"path": scope["path"], "headers": headers}) + "\n")
    await inner(scope, receive, send)


async def main():
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    web = uvicorn.Server(config)
    task = asyncio.create_task(web.serve())
    while not web.started:
        await asyncio.sleep(0.02)
    port = web.servers[0].sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{port}/mcp", flush=True)
    await task


asyncio.run(main())
