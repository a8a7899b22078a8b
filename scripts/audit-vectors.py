#!/usr/bin/env python3
"""Makes the tampered test vectors of testdata/audit/ from a genuine log there.

    scripts/audit-vectors.py testdata/audit

Reads chain.jsonl, checkpoints.jws and jwks.json (exported once from a running server: see
docs/audit-format.md) and writes truncated, edited, removed, reordered and rewritten chains and
two forged checkpoint files. Needs PyJWT with cryptography (target/mcp-venv has both).
"""

import base64
import hashlib
import json
import os
import sys

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def lines(path):
    with open(path, encoding="utf-8") as f:
        return [l.rstrip("\n") for l in f if l.strip()]


def write(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(row + "\n")


def dump(record):
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def main(folder):
    chain = [json.loads(l) for l in lines(os.path.join(folder, "chain.jsonl"))]
    checkpoints = lines(os.path.join(folder, "checkpoints.jws"))
    assert len(chain) >= 4, "the genuine chain needs at least four records"

    write(os.path.join(folder, "truncated.jsonl"), [dump(r) for r in chain[:-1]])

    edited = [dict(r) for r in chain]
    edited[1]["body"] = edited[1]["body"].replace('"deny"', '"permit"', 1)
    assert edited[1]["body"] != chain[1]["body"], "record 2 must be a deny"
    write(os.path.join(folder, "edited.jsonl"), [dump(r) for r in edited])

    write(os.path.join(folder, "removed.jsonl"), [dump(r) for r in chain[:1] + chain[2:]])

    swapped = [dict(r) for r in chain]
    swapped[1], swapped[2] = dict(chain[2]), dict(chain[1])
    swapped[1]["seq"], swapped[2]["seq"] = 2, 3
    write(os.path.join(folder, "reordered.jsonl"), [dump(r) for r in swapped])

    # Record 2 changed and every record from it re-sealed: the chain alone verifies.
    rewritten, prev = [], chain[0]["hash"]
    rewritten.append(chain[0])
    for record in chain[1:]:
        body = json.loads(record["body"])
        if body["seq"] == 2:
            body["event"]["outcome"] = "permit"
        body["prev"] = prev
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        rewritten.append(dict(record, body=text, prev_hash=prev, hash=digest))
        prev = digest
    write(os.path.join(folder, "rewritten.jsonl"), [dump(r) for r in rewritten])

    genuine = checkpoints[-1]
    header = jwt.get_unverified_header(genuine)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    other = Ed25519PrivateKey.generate()
    forged = jwt.encode(claims, other, algorithm="EdDSA", headers={"typ": header["typ"], "kid": header["kid"]})
    write(os.path.join(folder, "forged-key.jws"), [forged])

    head, _, signature = genuine.split(".")
    claims["seq"] = claims["seq"] - 1
    payload = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=").decode()
    write(os.path.join(folder, "forged-signature.jws"), [f"{head}.{payload}.{signature}"])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "testdata/audit")
