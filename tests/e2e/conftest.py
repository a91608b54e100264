"""Fixtures: one Envoy (with its own upstream) per distinct policy, shared by the whole session so that
the suite starts only a handful of Envoys."""

from __future__ import annotations

import pytest

from harness import Gateway, load_e2e_policy, start_gateway
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
