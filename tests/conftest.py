"""Core fixtures: the sandbox CA, Entra ID, a test client, Azurite (once per session).

Peer fixtures live in ``tests/fixtures/<peer>.py`` and are loaded as plugins, so each peer's
fixtures sit beside nothing else's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from sandbox import azurite as azurite_mod
from sandbox import tls as tls_mod
from sandbox.entra import EntraPeer, Issuer

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tls_mod.Tls:
    return tls_mod.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture(scope="session")
def entra(issuer: Issuer, tls: tls_mod.Tls) -> Iterator[EntraPeer]:
    peer = EntraPeer(issuer, tls=tls)
    peer.start()
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def test_client(entra: EntraPeer) -> dict[str, str]:
    """The sandbox-only client every peer accepts."""
    client_id, secret = entra.register_client()
    return {"tenantId": entra.issuer.tenant_id, "clientId": client_id, "clientSecret": secret}


@pytest.fixture(scope="session")
def http(tls: tls_mod.Tls) -> requests.Session:
    """A requests session trusting the sandbox CA (and ignoring REQUESTS_CA_BUNDLE)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(tls.ca_path)
    return session


@pytest.fixture(scope="session")
def bearer(issuer: Issuer, test_client: dict[str, str], entra: EntraPeer) -> Callable[[str], str]:
    """Mint a valid token for an audience directly (tests that are not about the token flow)."""

    def mint(audience: str) -> str:
        return issuer.issue(test_client["clientId"], audience)

    return mint


@pytest.fixture(scope="session")
def azurite() -> Iterator[azurite_mod.Azurite]:
    """One in-memory Azurite for the whole test session."""
    instance = azurite_mod.start()
    yield instance
    instance.stop()
