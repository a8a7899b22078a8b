#!/usr/bin/env python3
"""An independent verifier of a Handoff audit log, written from docs/audit-format.md alone.

    audit_verify.py --chain CHAIN.jsonl --jwks JWKS.json [--checkpoints FILE] [--issuer ISS]

CHAIN.jsonl is `handoff audit export --format chain`; JWKS.json is Handoff's
/.well-known/jwks.json; FILE holds checkpoints, one compact JWS a line (`handoff audit export
--format checkpoints`, or an `[audit] checkpoint_file`). Exits 0 when the chain is intact and
every checkpoint is genuine and matches it; 1 with the first problem on stdout otherwise; 2 on
bad usage. Needs only the standard library and PyJWT (with cryptography, for EdDSA and ES256).
"""

import argparse
import hashlib
import json
import sys

import jwt

GENESIS = "0" * 64
CHECKPOINT_TYP = "handoff-checkpoint+jwt"
CHECKPOINT_USE = "handoff-checkpoint"


class Broken(Exception):
    pass


def read_chain(path):
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as e:
                raise Broken(f"line {number} of the chain is not JSON: {e}")
    return records


def verify_chain(records):
    """Returns {seq: hash} of an intact chain, or raises Broken naming the first break."""
    expected_seq, prev = 1, GENESIS
    heads = {}
    for record in records:
        for field, kind in (("seq", int), ("at", int), ("body", str), ("prev_hash", str), ("hash", str)):
            if not isinstance(record.get(field), kind) or isinstance(record.get(field), bool):
                raise Broken(f"a record has no valid `{field}`: {record!r:.200}")
        seq = record["seq"]
        if seq != expected_seq:
            raise Broken(f"record {expected_seq} is missing (the next record is {seq})")
        try:
            body = json.loads(record["body"])
        except ValueError:
            raise Broken(f"record {seq}: its body is not JSON")
        digest = hashlib.sha256(record["body"].encode("utf-8")).hexdigest()
        if digest != record["hash"]:
            raise Broken(f"record {seq} was altered: its hash does not match its body")
        if body.get("seq") != seq:
            raise Broken(f"record {seq} is out of place: its body says it is record {body.get('seq')}")
        event = body.get("event")
        if not isinstance(event, dict) or body.get("at") != record["at"] or event.get("task") != record.get("task"):
            raise Broken(f"record {seq} was altered: its columns differ from its body")
        if body.get("prev") != prev or record["prev_hash"] != prev:
            raise Broken(f"record {seq} does not follow record {seq - 1}: the link differs")
        heads[seq] = record["hash"]
        prev = record["hash"]
        expected_seq += 1
    return heads


def checkpoint_keys(jwks):
    keys = {}
    for jwk in jwks.get("keys", []):
        if jwk.get("use") != CHECKPOINT_USE or "kid" not in jwk:
            continue
        keys[jwk["kid"]] = (jwk.get("alg"), jwt.PyJWK.from_dict(jwk))
    return keys


def verify_checkpoint(token, keys, issuer):
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        raise Broken(f"not a compact JWS: {e}")
    if header.get("typ") != CHECKPOINT_TYP:
        raise Broken(f"its typ is not {CHECKPOINT_TYP}")
    found = keys.get(header.get("kid"))
    if found is None:
        raise Broken("it is not signed by a checkpoint key of the JWKS")
    alg, key = found
    if header.get("alg") != alg or alg not in ("EdDSA", "ES256"):
        raise Broken("its algorithm is not its key's")
    try:
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[alg],
            options={"verify_exp": False, "verify_aud": False, "require": ["iss", "iat"]},
        )
    except jwt.PyJWTError as e:
        raise Broken(f"its signature does not verify: {e}")
    seq, head = claims.get("seq"), claims.get("head")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or not isinstance(head, str):
        raise Broken("its claims lack seq or head")
    if issuer is not None and claims.get("iss") != issuer:
        raise Broken(f"its issuer is {claims.get('iss')!r}, not {issuer!r}")
    return claims


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", required=True)
    parser.add_argument("--jwks", required=True)
    parser.add_argument("--checkpoints")
    parser.add_argument("--issuer")
    args = parser.parse_args(argv)
    try:
        heads = verify_chain(read_chain(args.chain))
        last = max(heads, default=0)
        with open(args.jwks, encoding="utf-8") as f:
            keys = checkpoint_keys(json.load(f))
        checked = 0
        if args.checkpoints:
            with open(args.checkpoints, encoding="utf-8") as f:
                lines = [(n, l.strip()) for n, l in enumerate(f, 1) if l.strip()]
            for number, token in lines:
                try:
                    claims = verify_checkpoint(token, keys, args.issuer)
                    seq, head = claims["seq"], claims["head"]
                    if seq == 0:
                        if head != GENESIS:
                            raise Broken("an empty log's head is not GENESIS")
                    elif seq > last:
                        raise Broken(f"it covers record {seq}, but the log ends at record {last}: records were removed from its end")
                    elif heads[seq] != head:
                        raise Broken(f"record {seq} does not have the head it signed: the log was rewritten")
                except Broken as e:
                    raise Broken(f"checkpoint on line {number}: {e}")
                checked += 1
        print(f"OK: {len(heads)} record(s), {checked} checkpoint(s)")
        return 0
    except Broken as e:
        print(f"BROKEN: {e}")
        return 1
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
