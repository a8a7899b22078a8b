"""Signed evidence: what a system such as CI reports about a task (``tests_passed`` for a
commit), as an ES256 JWT signed with the key registered in ``[systems.ID.evidence]``.

Needs ``cryptography`` (``pip install handoff-client[evidence]``)::

    from handoff_client.evidence import sign_evidence
    jwt = sign_evidence(open("ci-key.pem", "rb").read(), system="ci", task=task_id,
                        kind="tests_passed", fields={"commit": "abc123"},
                        audience="https://handoff.local")
    Client(url, identity="").send_evidence(jwt)   # or POST it as application/jwt
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any, Mapping


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_evidence(
    key_pem: bytes,
    *,
    system: str,
    task: str,
    kind: str,
    fields: Mapping[str, Any],
    audience: str,
    kid: str | None = None,
    jti: str | None = None,
    issued_at: int | None = None,
    expires_in: int | None = None,
) -> str:
    """An evidence JWT: ``iss`` = the system, ``aud`` = Handoff's trust domain, ``iat``, a
    fresh ``jti`` (unique: a second report with the same id is a replay), ``task``, ``kind``
    and ``data`` = ``fields``; signed ES256 with the P-256 private key ``key_pem`` (PKCS#8 or
    SEC1 PEM). ``kid`` names the key in the system's JWKS (optional when it has one key)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("evidence is signed ES256: the key must be an EC P-256 private key")
    now = int(time.time()) if issued_at is None else issued_at
    header: dict[str, Any] = {"alg": "ES256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    claims: dict[str, Any] = {
        "iss": system,
        "aud": audience,
        "iat": now,
        "jti": jti or f"ev-{secrets.token_hex(12)}",
        "task": task,
        "kind": kind,
        "data": dict(fields),
    }
    if expires_in is not None:
        claims["exp"] = now + expires_in
    signing_input = ".".join(
        _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    der = key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
