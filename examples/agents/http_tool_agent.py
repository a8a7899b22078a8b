"""Function tools for a plain HTTP API behind Handoff's HTTP gateway, one Handoff token per call.

`handoff_tool` turns a function that calls the API into a tool an agent framework can register
(OpenAI Agents SDK `function_tool`, LangGraph, or a plain dict of callables): each call first
asks Handoff for a token for exactly this call (system, action, and the resource the arguments
name), then calls the gateway with it as the bearer token. The gateway checks the token against
the request, swaps it for the API's real credential (which the agent never holds) and forwards.
A refusal becomes the tool's error result, carrying the reason code, the deciding policies and
the decision id, so the model can read why.

The "model" here is a scripted loop (no LLM needed): it reads a repository and opens a pull
request in a task that plans to touch the git host (all permitted; the repository is read twice,
with a new token each time), then tries to open one in
a task whose plan does not name it (denied).

usage: HANDOFF_IDENTITY=$(handoff identity issue --agent release-bot) python http_tool_agent.py
       [HANDOFF_URL, default http://127.0.0.1:8080]
Prints one JSON line per call: {"tool", "is_error", "result" or "error", "decision_id"}."""

import functools
import json
import os

import httpx
from handoff_client import AccessDenied, Client, Task

URL = os.environ.get("HANDOFF_URL", "http://127.0.0.1:8080")


def handoff_tool(system, action, resource):
    """A tool whose every call gets its own token for `action` on `system`, for the resource
    `resource(**arguments)` names. The wrapped function gets an httpx client that sends that
    token and returns the API's answer."""

    def wrap(call):
        @functools.wraps(call)
        def tool(task: Task, **arguments):
            try:
                # cache=False: a fresh token (and decision) for every call, never a reused one.
                token = task.exchange(system, action, resource=resource(**arguments), cache=False)
            except AccessDenied as e:
                return {"is_error": True, "error": f"denied by Handoff: {e.reason} "
                        f"({', '.join(e.policies) or 'no policy permits it'}); decision {e.decision_id}"}
            headers = {"authorization": f"Bearer {token.access_token}"}
            with httpx.Client(base_url=f"{URL}/gateway/{system}", headers=headers) as http:
                response = call(http, **arguments)
            if response.is_error:
                return {"is_error": True, "error": f"HTTP {response.status_code}: {response.text}",
                        "decision_id": token.decision_id}
            return {"is_error": False, "result": response.json(), "decision_id": token.decision_id}

        return tool

    return wrap


@handoff_tool("git", "read", resource=lambda owner, repo: f"repo:{owner}/{repo}")
def get_repo(http, owner, repo):
    """Read a repository."""
    return http.get(f"/repos/{owner}/{repo}")


@handoff_tool("git", "open_pr", resource=lambda owner, repo, **_: f"repo:{owner}/{repo}")
def open_pull_request(http, owner, repo, title, head, base):
    """Open a pull request."""
    return http.post(f"/repos/{owner}/{repo}/pulls", json={"title": title, "head": head, "base": base})


TOOLS = {"get_repo": get_repo, "open_pull_request": open_pull_request}


def run(task, name, **arguments):
    """What a framework does when the model asks for a tool: call it, hand back the result."""
    outcome = TOOLS[name](task, **arguments)
    print(json.dumps({"tool": name, **outcome}), flush=True)


def main():
    # discover=False: Handoff's known paths under URL (the example config's issuer,
    # https://handoff.local, is not an address this machine can reach).
    with Client(URL, os.environ["HANDOFF_IDENTITY"], discover=False) as handoff:
        with handoff.open_task("Fix the build in acme/app", user="alice", purpose="release",
                               plan=["git"]) as task:
            run(task, "get_repo", owner="acme", repo="app")
            run(task, "get_repo", owner="acme", repo="app")  # the same call: a new token again
            pr = {"title": "Fix the build", "head": "fix", "base": "main"}
            run(task, "open_pull_request", owner="acme", repo="app", **pr)
        with handoff.open_task("Look at payments", user="alice", purpose="release",
                               plan=["payments"]) as task:
            run(task, "open_pull_request", owner="acme", repo="app", **pr)


if __name__ == "__main__":
    main()
