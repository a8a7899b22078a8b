"""What both console browser scripts share: the server the Rust test started (its URL, binary,
data directory and config from the environment), the large payment that needs an owner's
approval, the token-exchange names, and the CLI."""

import os
import subprocess

BIN = os.environ["HANDOFF_BIN"]
URL = os.environ["HANDOFF_URL"]
DATA = os.environ["HANDOFF_DATA_DIR"]
CONFIG = os.environ["HANDOFF_CONFIG"]
LARGE = [{"type": "payments", "amount": 250000, "currency": "EUR", "creditor": "ACME GmbH"}]
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TXN = "urn:ietf:params:oauth:token-type:txn_token"
JWT = "urn:ietf:params:oauth:token-type:jwt"


def cli(*args: str) -> str:
    """`handoff ARGS`; its stdout, or a failure naming the command and its stderr."""
    done = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise AssertionError(f"handoff {' '.join(args)}: {done.stderr}")
    return done.stdout.strip()
