"""A tiny git-host HTTP API (standard library only) to put behind Handoff's HTTP gateway, under
`/api/v3`: `GET /repos/OWNER/REPO` and `POST /repos/OWNER/REPO/pulls`. It answers only requests
carrying the credential the gateway injects (`Authorization: token $GIT_API_TOKEN`).

usage: GIT_API_TOKEN=... python git_api.py [PORT]   (default 9000; 0 = any free)
Prints `listening on http://127.0.0.1:PORT/api/v3` once it listens."""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = os.environ["GIT_API_TOKEN"]
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 9000


class Api(BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(self):
        if self.headers.get("authorization") != f"token {TOKEN}":
            self.answer(401, {"message": "Bad credentials"})
            return None
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:3] != ["api", "v3", "repos"] or len(parts) < 5:
            self.answer(404, {"message": "Not Found"})
            return None
        return parts[3:]

    def do_GET(self):
        parts = self.route()
        if parts is not None and len(parts) == 2:
            self.answer(200, {"full_name": "/".join(parts), "default_branch": "main"})
        elif parts is not None:
            self.answer(404, {"message": "Not Found"})

    def do_POST(self):
        parts = self.route()
        if parts is not None and len(parts) == 3 and parts[2] == "pulls":
            length = int(self.headers.get("content-length") or 0)
            pull = json.loads(self.rfile.read(length) or b"{}")
            self.answer(201, {"number": 1, "title": pull.get("title"), "repo": "/".join(parts[:2])})
        elif parts is not None:
            self.answer(404, {"message": "Not Found"})

    def log_message(self, *args):
        pass


web = ThreadingHTTPServer(("127.0.0.1", PORT), Api)
print(f"listening on http://127.0.0.1:{web.server_address[1]}/api/v3", flush=True)
web.serve_forever()
