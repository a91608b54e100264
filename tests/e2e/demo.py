"""The intentgate demo: Envoy with envoy/demo.yaml in front of the demo tool, and a scripted agent.

For each call it prints what the agent sent, what it got back, the decision, what the tool upstream
saw, and the audit record from Envoy's log. Everything it starts is stopped on exit, error or Ctrl-C.
Run it with scripts/demo (which builds dist/intentgate.wasm and the venv first).
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness import DEMO_CONFIG, REPO, Call, Envoy, EnvoyError, Gateway, demo_policy
from tokens import claims, mint, tool_call_entry
from upstream import Upstream

LISTEN_PORT, ADMIN_PORT, TOOL_PORT = 18000, 18001, 18002
PREFIX = "x-intentgate-"

POLICY = demo_policy()
AUDIENCE = POLICY["audience"]
ISSUER = POLICY["issuers"][0]["issuer"]
AGENTS = POLICY["issuers"][0]["subject_prefixes"][0]
MFA = POLICY["step_up"]["acr_values"][0]


def agent_token(agent: str, alg: str = "ES256", **claim_values) -> str:
    """A token from the demo issuer for `agent`, signed with the TEST key for `alg`."""
    return mint(claims(ISSUER, AUDIENCE, AGENTS + agent, client_id=agent, **claim_values), alg=alg)


def grant(tool: str, action: str, risk: str) -> dict:
    return tool_call_entry(AUDIENCE, action, tool, [risk])


@dataclass
class Scene:
    title: str
    story: str
    method: str
    target: str
    token: str | None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None


def scenes() -> list[Scene]:
    now = int(time.time())
    return [
        Scene(
            "allowed read",
            'support-bot searches tickets; its token carries scope "tickets:read"',
            "GET", "/api/tickets?q=printer",
            agent_token("support-bot", scope="tickets:read"),
        ),
        Scene(
            "allowed write",
            "support-bot closes a ticket; task task-7f3a approved exactly this tool (RFC 9396 authorization_details)",
            "PUT", "/api/tickets/T-1042",
            agent_token("support-bot", alg="EdDSA", txn="task-7f3a",
                        authorization_details=[grant("update_ticket", "tickets.update", "write")]),
            (("content-type", "application/json"),),
            b'{"status": "closed"}',
        ),
        Scene(
            "scope violation",
            "support-bot, holding only tickets:read, tries to refund a payment",
            "POST", "/api/payments/refund",
            agent_token("support-bot", scope="tickets:read", txn="task-7f3a"),
            (("content-type", "application/json"),),
            b'{"ticket": "T-1042", "amount": 20}',
        ),
        Scene(
            "expired token",
            "support-bot replays a token that expired two minutes ago",
            "GET", "/api/tickets",
            agent_token("support-bot", scope="tickets:read", iat=now - 420, exp=now - 120),
        ),
        Scene(
            "high-risk call without step-up",
            "ops-bot may rotate secrets for its task, but no human re-authenticated recently",
            "POST", "/api/secrets/db-password/rotate",
            agent_token("ops-bot", alg="RS256", txn="task-9c1e",
                        authorization_details=[grant("rotate_secret", "secrets.rotate", "credential")]),
        ),
        Scene(
            "high-risk call after step-up",
            f'the same call once the human behind it authenticated with acr "{MFA}" a minute ago',
            "POST", "/api/secrets/db-password/rotate",
            agent_token("ops-bot", alg="RS256", txn="task-9c1e", acr=MFA, auth_time=now - 60,
                        authorization_details=[grant("rotate_secret", "secrets.rotate", "credential")]),
        ),
        Scene(
            "spoofed audit headers",
            "support-bot sends its own x-intentgate-* headers, claiming to be an admin with approval",
            "GET", "/api/tickets/T-1042",
            agent_token("support-bot", scope="tickets:read"),
            (
                ("x-intentgate-subject", "spiffe://example.com/agent/admin"),
                ("x-intentgate-decision", "allow"),
                ("x-intentgate-approved-by", "security-team"),
            ),
        ),
    ]


# --- output ----------------------------------------------------------------------------------------


def short(token: str) -> str:
    return f"{token[:24]}…({len(token)} chars)"


def show(number: int, scene: Scene, call: Call, envoy: Envoy) -> None:
    print(f"\n━━ {number}. {scene.title} ━━  {scene.story}")
    print(f"  agent  → {scene.method} {scene.target}")
    if scene.token:
        header = json.loads(base64.urlsafe_b64decode(scene.token.split(".")[0] + "=="))
        print(f"           authorization: Bearer {short(scene.token)}  [{header['alg']}, kid {header['kid']}]")
    for name, value in scene.headers:
        print(f"           {name}: {value}")
    if scene.body:
        print(f"           body: {scene.body.decode()}")

    response = call.response
    record = envoy.audit_record(call.audit_id) if call.audit_id else None
    verdict = f"decision={record['decision']} reason={record['reason']}" if record else "(no audit record)"
    print(f"  agent  ← {response.status} {response.reason}   {verdict}")
    if response.header("www-authenticate"):
        print(f"           www-authenticate: {response.header('www-authenticate')}")
    if response.status >= 400:
        print(f"           body: {response.body.decode(errors='replace')}")

    seen = call.forwarded
    if seen is None:
        print("  tool   : received nothing (intentgate answered)")
    else:
        print(f"  tool   : received {seen.method} {seen.path}")
        for name, values in sorted(seen.headers_with_prefix(PREFIX).items()):
            for value in values:
                print(f"           {name}: {value}")
        print(f"           authorization: {'(removed)' if seen.header('authorization') is None else 'FORWARDED'}")

    if record:
        print("  audit  :")
        for line in json.dumps(record, indent=2).splitlines():
            print(f"           {line}")


# --- running it ------------------------------------------------------------------------------------


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _interrupt(signum, frame) -> None:
    """SIGTERM gets the same clean shutdown as Ctrl-C."""
    raise KeyboardInterrupt


def main() -> int:
    busy = [p for p in (LISTEN_PORT, ADMIN_PORT, TOOL_PORT) if port_in_use(p)]
    if busy:
        print(f"demo: port(s) {busy} on 127.0.0.1 are in use; stop whatever holds them and retry", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)

    workdir = Path(tempfile.mkdtemp(prefix="intentgate-demo-"))
    upstream = envoy = None
    try:
        upstream = Upstream(TOOL_PORT, name="demo-tool").start()
        envoy = Envoy(DEMO_CONFIG.read_text(), ADMIN_PORT, LISTEN_PORT, workdir, cwd=REPO)
        envoy.start()
        gateway = Gateway(envoy, upstream)
        print("intentgate demo")
        config = DEMO_CONFIG.relative_to(REPO)
        print(f"  Envoy 127.0.0.1:{LISTEN_PORT} ({config}, admin {ADMIN_PORT}) → demo tool 127.0.0.1:{TOOL_PORT}")
        print(f"  audience {AUDIENCE}, issuer {ISSUER}; tokens signed with the TEST keys of tests/fixtures")
        for number, scene in enumerate(scenes(), start=1):
            call = gateway.call(scene.method, scene.target, scene.token, scene.headers, scene.body)
            show(number, scene, call, envoy)
        stats = envoy.stats()
        print("\n━━ counters (admin /stats?filter=intentgate, non-zero) ━━")
        for name, value in sorted(stats.items()):
            if value:
                print(f"  {name}: {value}")
        return 0
    except EnvoyError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        return 130
    finally:
        if envoy is not None:
            envoy.stop()
        if upstream is not None:
            upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        print("\ndemo: stopped Envoy and the demo tool", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
