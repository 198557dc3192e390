"""MainframeClient against the sandbox LOS gateway: tokens, paging, strictness, errors, rotation."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.adapters.mainframe import MainframeClient
from shared.adapters.secrets import SecretProvider
from shared.errors import PermanentError, TransientError
from shared.http import RetryPolicy, make_session

pytestmark = pytest.mark.integration


class ManualClock:
    """A monotonic clock moved by hand, so token-expiry tests never sleep."""

    def __init__(self) -> None:
        self.now = 50_000.0

    def __call__(self) -> float:
        return self.now


def _no_sleep(_: float) -> None:
    """Retries are exercised for real; only the waiting between them is skipped."""


def _order(ordno: int, lstupd: str) -> dict[str, str]:
    return {"ORDNO": f"{ordno:010d}", "CUSTNO": "C0000001  ", "STATUS": "O", "LSTUPD": lstupd}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_client(mainframe, mainframe_api_client, tls, clock):
    def make(**overrides) -> MainframeClient:
        options = {
            "session": make_session(tls.ca_path),
            "policy": RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05),
            "sleep": _no_sleep,
            "clock": clock,
        }
        options.update(overrides)
        secret = options.pop("client_secret", lambda: mainframe_api_client["clientSecret"])
        return MainframeClient(
            mainframe.base_url, mainframe_api_client["clientId"], secret, **options
        )

    return make


def test_list_changes_follows_every_page_and_keeps_records_raw(mainframe, make_client):
    # Given 25 orders in the legacy format
    orders = [_order(n, f"2026010510{n:04d}") for n in range(1, 26)]
    mainframe.seed({"orders": orders})
    client = make_client()
    # When they are listed ten per page
    pages = list(client.list_changes("orders", None, page_size=10))
    # Then three pages carry all 25 records untouched, ASOF is one UTC instant,
    # and the client made one token request and three listing requests
    assert [len(p.records) for p in pages] == [10, 10, 5]
    assert [r for p in pages for r in p.records] == orders
    assert len({p.asof for p in pages}) == 1
    assert pages[0].asof.tzinfo == dt.UTC
    assert pages[-1].next_page_token is None
    assert client.token_requests == 1
    assert client.stats.requests == 3


def test_since_is_strict_and_sent_as_a_utc_legacy_timestamp(mainframe, make_client):
    # Given orders at 10:00:00 and 10:00:01 UTC
    mainframe.seed({"orders": [_order(1, "20260105100000"), _order(2, "20260105100001")]})
    # When listing since 11:00:00 in UTC+1 (= 10:00:00 UTC)
    since = dt.datetime(2026, 1, 5, 11, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    records = [r for p in make_client().list_changes("orders", since) for r in p.records]
    # Then only the strictly newer one
    assert [r["ORDNO"] for r in records] == ["0000000002"]


def test_saved_asof_as_next_since_returns_exactly_the_k_changes(mainframe, make_client):
    # Given a first poll at a pinned mainframe time
    mainframe.seed({"orders": [_order(n, "20260105100000") for n in range(1, 21)]})
    mainframe.seed({"settings": [{"now": "20260601120000"}]})
    client = make_client()
    asof = next(iter(client.list_changes("orders", None))).asof
    # When four orders change afterwards
    mainframe.seed({"settings": [{"now": "20260601120007"}]})
    mainframe.touch("orders", [{"ORDNO": f"{n:010d}", "STATUS": "R"} for n in (3, 4, 11, 20)])
    # Then polling since the saved ASOF returns those four and nothing else
    changed = [r for p in client.list_changes("orders", asof, page_size=2) for r in p.records]
    assert sorted(r["ORDNO"] for r in changed) == [f"{n:010d}" for n in (3, 4, 11, 20)]


def test_token_is_cached_across_listings(mainframe, make_client):
    client = make_client()
    for _ in range(3):
        list(client.list_changes("customers", None))
    assert client.token_requests == 1
    assert len(mainframe.records("tokens")) == 1


def test_expired_token_is_refreshed_once_and_the_listing_succeeds(mainframe, make_client):
    # Given a client holding a token the mainframe then expires early
    mainframe.seed({"orders": [_order(1, "20260105100000")]})
    client = make_client()
    list(client.list_changes("orders", None))
    mainframe.expire_tokens()
    # When it lists again
    records = [r for p in client.list_changes("orders", None) for r in p.records]
    # Then one 401 led to exactly one new token and the listing went through
    assert len(records) == 1
    assert client.token_requests == 2
    assert client.stats.by_status == {200: 2, 401: 1}


def test_token_is_renewed_before_it_expires_without_a_401(mainframe, make_client, clock):
    # Given tokens living 40 s (the 30 s margin is capped at half the lifetime: renew after 20 s)
    mainframe.seed({"settings": [{"tokenLifetimeSeconds": 40}]})
    client = make_client()
    first = client.token()
    # When 19 s pass the cached token is still used; after 21 s a new one is fetched
    clock.now += 19
    assert client.token() == first
    clock.now += 2
    assert client.token() != first
    assert client.token_requests == 2


def test_page_size_over_the_limit_is_a_permanent_error_with_the_legacy_reason(
    mainframe, make_client
):
    with pytest.raises(PermanentError, match="PAGESIZE > 1000") as caught:
        list(make_client().list_changes("orders", None, page_size=1001))
    assert caught.value.code == "400"


def test_wrong_client_secret_is_a_permanent_error_without_the_secret(mainframe, make_client):
    with pytest.raises(PermanentError, match="INVALID CLIENT CREDENTIALS") as caught:
        list(make_client(client_secret=lambda: "a-wrong-secret").list_changes("orders", None))
    assert "a-wrong-secret" not in str(caught.value)


def test_throttled_pages_are_retried_and_the_listing_completes(mainframe, make_client, http):
    # Given 30 orders and a mainframe throttling half its answers (deterministic seed)
    mainframe.seed({"orders": [_order(n, f"2026010510{n:04d}") for n in range(1, 31)]})
    client = make_client(policy=RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.05))
    client.token()
    http.put(
        f"{mainframe.base_url}/_sandbox/faults",
        json={"rate429": 0.5, "retryAfterSeconds": 0, "seed": 7},
    ).raise_for_status()
    # When listed five per page
    records = [r for p in client.list_changes("orders", None, page_size=5) for r in p.records]
    # Then nothing is lost or repeated, and throttling really happened
    assert [r["ORDNO"] for r in records] == [f"{n:010d}" for n in range(1, 31)]
    assert client.stats.throttled > 0


def test_unavailable_mainframe_is_a_transient_error_after_bounded_retries(
    mainframe, make_client, http
):
    client = make_client()
    client.token()
    http.put(
        f"{mainframe.base_url}/_sandbox/faults", json={"rate5xx": 1, "faultPhase": "before"}
    ).raise_for_status()
    with pytest.raises(TransientError, match="after 4 attempts"):
        list(client.list_changes("orders", None))
    assert client.stats.requests == 4


def test_rotated_client_secret_is_reread_from_key_vault_once_refused(
    mainframe, mainframe_api_client, keyvault, vault_credential, tls, make_client
):
    # Given the client secret in Key Vault, read through the hub's SecretProvider (5 min cache)
    name = "mainframe-client-secret"
    keyvault.set_secret(name, mainframe_api_client["clientSecret"])
    secrets = SecretProvider(
        keyvault.base_url, vault_credential, ca_bundle=tls.ca_path, verify_challenge_resource=False
    )
    client = make_client(
        client_secret=lambda: secrets.get(name), on_secret_rejected=lambda: secrets.invalidate(name)
    )
    client.token()
    # When operators rotate the secret on the mainframe and in Key Vault, and tokens expire
    mainframe.register_client(mainframe_api_client["clientId"], "rotated-secret-value")
    keyvault.set_secret(name, "rotated-secret-value")
    mainframe.expire_tokens()
    # Then the next listing succeeds: the refused (cached) secret is dropped and re-read
    pages = list(client.list_changes("orders", None))
    assert [p.records for p in pages] == [[]]
    assert secrets.fetches == 2
