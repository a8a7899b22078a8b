"""The client's tests run against a real `handoff serve`, started by the Rust end-to-end test
`python_client` (crates/handoff-cli/tests/e2e/python_client.rs), which passes it here:

- HANDOFF_BIN: the `handoff` binary (to issue dev identities and approve as an operator would)
- HANDOFF_URL: the server's base URL
- HANDOFF_DATA_DIR, HANDOFF_CONFIG: its data directory and config
- HANDOFF_EVIDENCE_KEY: the example CI's dev-only evidence signing key

Run alone, without them, every test is skipped."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class Handoff:
    binary: str
    url: str
    data_dir: str
    config: str
    evidence_key: str

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [self.binary, *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"handoff {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    def local(self, *args: str) -> str:
        """A command against the server's data directory and config."""
        return self.cli(*args, "--data-dir", self.data_dir, "--config", self.config)

    def identity(self, agent: str) -> str:
        return self.local("identity", "issue", "--agent", agent)

    def approver(self, user: str, group: str) -> str:
        return self.local("approver", "issue", "--user", user, "--group", group)

    def decide(self, approval_id: str, verdict: str = "approve", user: str = "olivia") -> None:
        """An owner of the payments system decides, with the CLI."""
        token = self.approver(user, "payments-owners")
        self.cli("approvals", verdict, approval_id, "--reason", "checked by the test",
                 "--server", self.url, "--token", token)


@pytest.fixture(scope="session")
def handoff() -> Handoff:
    names = ["HANDOFF_BIN", "HANDOFF_URL", "HANDOFF_DATA_DIR", "HANDOFF_CONFIG", "HANDOFF_EVIDENCE_KEY"]
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        pytest.skip(f"no Handoff server to test against ({', '.join(missing)} unset)")
    return Handoff(*(os.environ[n] for n in names))


def claims(jwt: str) -> dict[str, Any]:
    """A JWT's payload, unverified (the Rust tests verify signatures; these read claims)."""
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
