"""A tiny payments MCP tool server (the official MCP Python SDK's MCPServer over Streamable HTTP)
to put behind Handoff's MCP gateway. It refuses every request without the API key the gateway
injects (`x-api-key` = $PAYMENTS_API_KEY), so an agent cannot bypass Handoff by calling it
directly with nothing.

usage: PAYMENTS_API_KEY=... python payments_mcp_server.py [PORT]   (default 9100; 0 = any free)
Prints `listening on http://127.0.0.1:PORT/mcp` once it listens."""

import asyncio
import os
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

KEY = os.environ["PAYMENTS_API_KEY"]
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 9100
server = MCPServer("payments")


@server.tool()
def create_payment(amount: int, currency: str, creditor: str) -> str:
    """Create a payment (amount in minor units: 5000 is 50.00)."""
    return f"created payment of {amount} {currency} to {creditor}"


@server.tool()
def list_payments() -> str:
    """List recent payments."""
    return "no payments yet"


inner = server.streamable_http_app(json_response=False)


async def app(scope, receive, send):
    if scope["type"] == "http":
        headers = dict(scope["headers"])
        if headers.get(b"x-api-key", b"").decode() != KEY:
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"missing or wrong x-api-key"})
            return
    await inner(scope, receive, send)


async def main():
    config = uvicorn.Config(app, host="127.0.0.1", port=PORT, log_level="warning", lifespan="on")
    web = uvicorn.Server(config)
    task = asyncio.create_task(web.serve())
    while not web.started:
        await asyncio.sleep(0.02)
    port = web.servers[0].sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{port}/mcp", flush=True)
    await task


asyncio.run(main())
