"""Fixtures: one Envoy (with its own upstream) per distinct policy, shared by the whole session so that
the suite starts only a handful of Envoys. The JSON-RPC tests add real MCP servers (subprocesses on
127.0.0.1), one per response mode, each behind its own Envoy."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from harness import Gateway, load_e2e_policy, start_gateway
from mcp_tool_server import ToolServerProcess, spawn_tool_server
from tokens import ProjectMinter


def _gateway(tmp_path_factory, name: str, policy: dict):
    gateway: Gateway = start_gateway(policy, tmp_path_factory.mktemp(name))
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    """envoy/policies/e2e.json as shipped: enforce mode."""
    yield from _gateway(tmp_path_factory, "enforce", load_e2e_policy())


@pytest.fixture(scope="session")
def dry_run_gateway(tmp_path_factory):
    """The same policy in dry_run: decide and audit, never block."""
    yield from _gateway(tmp_path_factory, "dry-run", load_e2e_policy(mode="dry_run"))


@pytest.fixture(scope="session")
def custom_audit_gateway(tmp_path_factory):
    """The same policy with the non-default audit settings: another header prefix, and the
    Authorization header forwarded (the positive control for "the token is not forwarded")."""
    policy = load_e2e_policy(audit={"header_prefix": "x-gw-", "forward_authorization": True})
    yield from _gateway(tmp_path_factory, "custom-audit", policy)


@pytest.fixture(scope="session")
def project_minter() -> ProjectMinter:
    """intentgate's own signer (examples/mint.rs), built on first use."""
    return ProjectMinter.build()


# --- JSON-RPC: a real MCP server behind Envoy -----------------------------------------------------


@dataclass
class McpGateway:
    """An Envoy running the e2e policy whose `/mcp` route leads to a real MCP server (a subprocess of
    tests/e2e/mcp_tool_server.py); every other path, A2A included, leads to the recording upstream."""

    gateway: Gateway
    server: ToolServerProcess
    mode: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.port}/mcp"

    @property
    def envoy(self):
        return self.gateway.envoy


def _mcp_server(tmp_path_factory, name: str, mode: str, notify: bool) -> ToolServerProcess:
    workdir = tmp_path_factory.mktemp(name)
    return spawn_tool_server(mode=mode, notify=notify, record=workdir / "received.jsonl", workdir=workdir)


def _mcp_gateway(tmp_path_factory, name: str, server: ToolServerProcess, mode: str, policy: dict):
    gateway = start_gateway(policy, tmp_path_factory.mktemp(f"{name}-envoy"), mcp_port=server.port)
    try:
        yield McpGateway(gateway, server, mode)
    finally:
        gateway.stop()


@pytest.fixture(scope="session")
def mcp_json_server(tmp_path_factory):
    """The MCP server answering every POST with `application/json`."""
    server = _mcp_server(tmp_path_factory, "mcp-json", "json", notify=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mcp_sse_server(tmp_path_factory):
    """The MCP server answering with `text/event-stream`. With notify, every tools/list and
    tools/call result follows a notifications/message event, and the 2026-07-28 flow streams too
    (the SDK answers that flow with application/json when a handler emits nothing)."""
    server = _mcp_server(tmp_path_factory, "mcp-sse", "sse", notify=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mcp_json(tmp_path_factory, mcp_json_server):
    yield from _mcp_gateway(tmp_path_factory, "mcp-json", mcp_json_server, "json", load_e2e_policy())


@pytest.fixture(scope="session")
def mcp_sse(tmp_path_factory, mcp_sse_server):
    yield from _mcp_gateway(tmp_path_factory, "mcp-sse", mcp_sse_server, "sse", load_e2e_policy())


@pytest.fixture(scope="session", params=["json", "sse"])
def mcp(request) -> McpGateway:
    """Both server modes: application/json and text/event-stream responses."""
    return request.getfixturevalue(f"mcp_{request.param}")


@pytest.fixture(scope="session")
def mcp_big_body(tmp_path_factory, mcp_json_server):
    """The e2e policy with a 1 MiB body cap, for hostile bodies that only fit under a larger cap."""
    policy = load_e2e_policy()
    policy["jsonrpc"] = {**policy["jsonrpc"], "max_body_bytes": 1024 * 1024}
    yield from _mcp_gateway(tmp_path_factory, "mcp-big-body", mcp_json_server, "json", policy)
