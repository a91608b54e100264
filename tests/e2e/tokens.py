"""Agent tokens for the end-to-end tests and the demo, minted two independent ways:

* with PyJWT + cryptography (`mint`), an implementation that shares no code with intentgate, and by
  hand for tokens no well-behaved library produces (`compact`: alg none, crit, tampered, confused);
* with the project's own signer, the `mint` example (`ProjectMinter`).

Keys are the TEST-ONLY keys of tests/fixtures/test-keys.json. `es256-rotated` is deliberately absent
from every token issuer's key set in the shipped configs (it plays a key the gateway does not know for
agent tokens); the demo's and the sender tests' approver signs human approvals with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

REPO = Path(__file__).resolve().parents[2]
TEST_KEYS_PATH = REPO / "tests" / "fixtures" / "test-keys.json"
TEST_KEYS: dict[str, dict] = {k["kid"]: k for k in json.loads(TEST_KEYS_PATH.read_text())["keys"]}

# The JWK members that make a key private; a gateway config carries only what is left.
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi"})

# The key each algorithm is tested with.
KID_FOR_ALG = {
    "ES256": "es256-1",
    "ES384": "es384-1",
    "RS256": "rsa-1",
    "PS256": "rsa-1",
    "EdDSA": "ed25519-1",
    "HS256": "hs256-1",
}

# Marks a claim (or header member) to leave out of a token entirely.
DROP: Any = object()


def public_jwk(kid: str) -> dict:
    return {m: v for m, v in TEST_KEYS[kid].items() if m not in PRIVATE_JWK_MEMBERS}


def private_key(kid: str):
    """The signing key of a test JWK as PyJWT wants it (a cryptography key, or bytes for oct)."""
    return jwt.PyJWK(TEST_KEYS[kid]).key


def public_key_pem(kid: str) -> bytes:
    """The PEM a naive verifier would load for `kid`: what an algorithm-confusion attacker uses as an
    HMAC secret."""
    return (
        private_key(kid)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def new_jti() -> str:
    return uuid.uuid4().hex


def claims(
    issuer: str,
    audience: str | list[str],
    subject: str,
    lifetime_s: int = 300,
    now: int | None = None,
    **overrides: Any,
) -> dict:
    """A valid claims set; `overrides` replace members, and `DROP` removes one."""
    now = int(time.time()) if now is None else now
    base: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime_s,
        "jti": new_jti(),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not DROP}


def tool_call_entry(
    location: str, action: str, identifier: str, privileges: list[str], **extra: Any
) -> dict:
    """One RFC 9396 `authorization_details` entry of intentgate's type (token-profile.md §4)."""
    return {
        "type": "urn:intentgate:tool-call",
        "locations": [location],
        "actions": [action],
        "identifier": identifier,
        "privileges": privileges,
        **extra,
    }


def mint(payload: dict, alg: str = "ES256", kid: str | None = None, typ: Any = "at+jwt", **header: Any) -> str:
    """Sign with PyJWT. `kid` defaults to the test key for `alg`; `typ=DROP` leaves typ out."""
    kid = KID_FOR_ALG[alg] if kid is None else kid
    headers = {"kid": kid, **header}
    # PyJWT writes typ "JWT" unless told otherwise; a falsy typ makes it leave typ out.
    headers["typ"] = None if typ is DROP else typ
    return jwt.encode(payload, private_key(kid), algorithm=alg, headers=headers)


def compact(
    header: dict, payload: dict | bytes, signature: bytes | None = None, *, sign_with: str | None = None
) -> str:
    """Assemble a compact JWS by hand, for tokens a library refuses to produce.

    `sign_with` names a test kid whose key signs the input with the header's `alg` (via PyJWT's
    algorithm objects); otherwise `signature` is used as given (b"" for alg none)."""
    payload_bytes = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    signing_input = f"{b64url_json(header)}.{b64url(payload_bytes)}"
    if sign_with is not None:
        algorithm = jwt.get_algorithm_by_name(header["alg"])
        signature = algorithm.sign(signing_input.encode(), algorithm.prepare_key(private_key(sign_with)))
    return f"{signing_input}.{b64url(signature or b'')}"


def hs256_with_secret(header: dict, payload: dict, secret: bytes) -> str:
    """HS256 by hand with any secret, including a public key's PEM (PyJWT rightly refuses that)."""
    signing_input = f"{b64url_json(header)}.{b64url_json(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def tamper_signature(token: str) -> str:
    """Flip one bit in the middle of the signature (the last character can carry only padding bits)."""
    head, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{payload}.{b64url(bytes(raw))}"


def replace_payload(token: str, payload: dict) -> str:
    """Keep the header and signature of a genuine token, swap its claims."""
    head, _, signature = token.split(".")
    return f"{head}.{b64url_json(payload)}.{signature}"


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ProjectMinter:
    """Tokens signed by intentgate's own test signer: the `mint` example (feature `testkit`).

    Contract: JSON `{"kid", "alg", "header", "claims"}` on stdin, the compact JWS on stdout."""

    BINARY = REPO / "target" / "debug" / "examples" / "mint"

    @classmethod
    def build(cls) -> "ProjectMinter":
        """cargo build is a no-op when the example is up to date, so this also keeps it fresh."""
        result = subprocess.run(
            ["cargo", "build", "--quiet", "--features", "testkit", "--example", "mint"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"cannot build the mint example:\n{result.stderr}")
        return cls()

    def mint(self, payload: dict, alg: str = "ES256", kid: str | None = None, header: dict | None = None) -> str:
        request = {
            "kid": KID_FOR_ALG[alg] if kid is None else kid,
            "alg": alg,
            "header": {"typ": "at+jwt", **(header or {})},
            "claims": payload,
        }
        result = subprocess.run(
            [str(self.BINARY)], input=json.dumps(request), capture_output=True, text=True, timeout=30
        )
        if result.returncode != 0:
            raise RuntimeError(f"mint failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout.strip()
