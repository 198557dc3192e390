"""Contract: the sandbox mainframe implements docs/mainframe-api.md (the LOS gateway API) exactly.

Each test names the section of docs/mainframe-api.md it reproduces.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def _order(ordno: int, lstupd: str, status: str = "O") -> dict[str, str]:
    return {
        "ORDNO": f"{ordno:010d}",
        "CUSTNO": "C0001234  ",
        "ORDDT": "20260105",
        "REQDT": "20260120",
        "STATUS": status,
        "CURR": "USD",
        "TOTAMT": "000001234567",
        "PLANT": "P100",
        "SLSREP": "JSMITH  ",
        "QTREF": " " * 40,
        "LSTUPD": lstupd,
    }


@pytest.fixture
def token(mainframe, mainframe_api_client, http) -> str:
    response = http.post(
        f"{mainframe.base_url}/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": mainframe_api_client["clientId"],
            "client_secret": mainframe_api_client["clientSecret"],
        },
    )
    response.raise_for_status()
    return response.json()["access_token"]


def _get(http, mainframe, token, entity="orders", **params):
    return http.get(
        f"{mainframe.base_url}/los/v1/{entity}",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
    )


def _seed(http, mainframe, **tables) -> None:
    http.post(f"{mainframe.base_url}/_sandbox/seed", json=tables).raise_for_status()


# ---- Authentication ----------------------------------------------------------------------------


def test_token_endpoint_issues_a_bearer_token_living_five_minutes(
    mainframe, mainframe_api_client, http
):
    # Given the hub's registered client; when it posts client credentials as a form
    response = http.post(
        f"{mainframe.base_url}/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": mainframe_api_client["clientId"],
            "client_secret": mainframe_api_client["clientSecret"],
        },
    )
    # Then "200 {access_token, token_type: Bearer, expires_in: 300}"
    body = response.json()
    assert response.status_code == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["access_token"]


def test_wrong_client_secret_is_401_rc08_invalid_client_credentials(
    mainframe, mainframe_api_client, http
):
    response = http.post(
        f"{mainframe.base_url}/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": mainframe_api_client["clientId"],
            "client_secret": "wrong",
        },
    )
    assert response.status_code == 401
    assert response.json() == {"RC": "08", "REASON": "INVALID CLIENT CREDENTIALS"}


def test_listing_without_a_token_is_401_token_invalid_with_los_realm(mainframe, http):
    response = http.get(f"{mainframe.base_url}/los/v1/orders")
    assert response.status_code == 401
    assert response.json() == {"RC": "08", "REASON": "TOKEN INVALID"}
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="LOS"'


def test_expired_token_is_401_token_expired(mainframe, token, http):
    # Given a token that was valid; when every token expires
    assert _get(http, mainframe, token).status_code == 200
    http.post(f"{mainframe.base_url}/_sandbox/tokens/expire").raise_for_status()
    # Then the same token is refused as expired
    response = _get(http, mainframe, token)
    assert response.status_code == 401
    assert response.json() == {"RC": "08", "REASON": "TOKEN EXPIRED"}


def test_token_lifetime_is_configurable_through_settings(mainframe, mainframe_api_client, http):
    _seed(http, mainframe, settings=[{"tokenLifetimeSeconds": 5}])
    response = http.post(
        f"{mainframe.base_url}/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": mainframe_api_client["clientId"],
            "client_secret": mainframe_api_client["clientSecret"],
        },
    )
    assert response.json()["expires_in"] == 5


# ---- Changed-only listings ---------------------------------------------------------------------


def test_records_come_back_exactly_as_stored_with_padding_intact(mainframe, token, http):
    # Given an order in the copybook format (padded ids, implied decimals)
    order = _order(123456, "20260105101500")
    _seed(http, mainframe, orders=[order])
    # When it is listed, then every field is byte-for-byte what was stored
    body = _get(http, mainframe, token).json()
    assert body["RECORDS"] == [order]
    assert body["NEXTPAGE"] is None


def test_changed_since_returns_only_records_strictly_newer(mainframe, token, http):
    # Given records at 10:00:00, 10:00:01 and 10:00:02
    _seed(
        http,
        mainframe,
        orders=[
            _order(1, "20260105100000"),
            _order(2, "20260105100001"),
            _order(3, "20260105100002"),
        ],
    )
    # When asked for changes since 10:00:01, then the equal one is excluded
    body = _get(http, mainframe, token, changedSince="20260105100001").json()
    assert [r["ORDNO"] for r in body["RECORDS"]] == ["0000000003"]
    # And without changedSince, everything
    assert len(_get(http, mainframe, token).json()["RECORDS"]) == 3


def test_pages_are_ordered_by_lstupd_then_key_and_asof_is_constant(mainframe, token, http):
    # Given seven orders, some sharing a timestamp, seeded out of order
    stamps = ["20260105100003", "20260105100001", "20260105100001", "20260105100002"]
    orders = [_order(n, stamps[n % 4]) for n in (7, 3, 5, 1, 6, 2, 4)]
    _seed(http, mainframe, orders=orders)
    # When listed three at a time following NEXTPAGE
    seen, asofs, params = [], set(), {"pageSize": 3}
    while True:
        body = _get(http, mainframe, token, **params).json()
        seen += [(r["LSTUPD"], r["ORDNO"]) for r in body["RECORDS"]]
        asofs.add(body["ASOF"])
        if body["NEXTPAGE"] is None:
            break
        params = {"pageSize": 3, "pageToken": body["NEXTPAGE"]}
    # Then every record once, in LSTUPD-then-key order, with one ASOF for the whole listing
    assert seen == sorted((o["LSTUPD"], o["ORDNO"]) for o in orders)
    assert len(asofs) == 1


def test_page_size_over_the_limit_is_400_rc12(mainframe, token, http):
    response = _get(http, mainframe, token, pageSize=1001)
    assert response.status_code == 400
    assert response.json() == {"RC": "12", "REASON": "PAGESIZE > 1000"}


def test_default_page_size_is_500(mainframe, token, http):
    _seed(
        http,
        mainframe,
        customers=[
            {"CUSTNO": f"C{n:07d}  ", "CUSTNM": "X".ljust(40), "LSTUPD": "20260105100000"}
            for n in range(501)
        ],
    )
    body = _get(http, mainframe, token, entity="customers").json()
    assert len(body["RECORDS"]) == 500
    assert body["NEXTPAGE"] is not None


def test_bad_changed_since_and_unknown_page_token_are_400_rc12(mainframe, token, http):
    bad_since = _get(http, mainframe, token, changedSince="2026-01-05")
    unknown_token = _get(http, mainframe, token, pageToken="not-a-token")
    assert (bad_since.status_code, bad_since.json()["RC"]) == (400, "12")
    assert (unknown_token.status_code, unknown_token.json()["RC"]) == (400, "12")


def test_unknown_entity_is_404_rc04_no_such_file(mainframe, token, http):
    response = _get(http, mainframe, token, entity="invoices")
    assert response.status_code == 404
    assert response.json() == {"RC": "04", "REASON": "NO SUCH FILE"}


def test_every_documented_entity_lists_by_its_key(mainframe, token, http):
    # Given one record of each entity
    _seed(
        http,
        mainframe,
        orderlines=[
            {
                "ORDNO": "0000000001",
                "LINENO": "0010",
                "ITEMNO": "SKU-1".ljust(18),
                "QTY": "00005000",
                "UPRICE": "0000012550",
                "STATUS": "O",
                "LSTUPD": "20260105100000",
            }
        ],
        inventory=[
            {
                "PLANT": "P100",
                "ITEMNO": "SKU-1".ljust(18),
                "ONHAND": "0000120",
                "ALLOC": "0000020",
                "LSTUPD": "20260105100000",
            }
        ],
        customers=[
            {
                "CUSTNO": "C0001234  ",
                "CUSTNM": "Fabrikam".ljust(40),
                "CITY": "Seattle",
                "STATE": "WA",
                "ZIP": "98101",
                "CNTRY": "US",
                "STATUS": "A",
                "LSTUPD": "20260105100000",
            }
        ],
    )
    # Then each listing answers with its record
    for entity in ("orderlines", "inventory", "customers"):
        assert len(_get(http, mainframe, token, entity=entity).json()["RECORDS"]) == 1


def test_touch_stamps_now_so_a_saved_asof_sees_exactly_the_changed_records(mainframe, token, http):
    # Given ten orders and a pinned business clock
    _seed(http, mainframe, orders=[_order(n, "20260105100000") for n in range(1, 11)])
    _seed(http, mainframe, settings=[{"now": "20260601120000"}])
    first = _get(http, mainframe, token).json()
    assert first["ASOF"] == "20260601120000"
    # When the mainframe changes three of them a few seconds later
    _seed(http, mainframe, settings=[{"now": "20260601120005"}])
    touched = http.post(
        f"{mainframe.base_url}/_sandbox/touch",
        json={"orders": [{"ORDNO": f"{n:010d}", "STATUS": "R"} for n in (2, 5, 9)]},
    ).json()
    assert touched["touched"] == {"orders": 3}
    # Then a listing since the saved ASOF returns exactly those, stamped with now, fields merged
    changed = _get(http, mainframe, token, changedSince=first["ASOF"]).json()["RECORDS"]
    assert [r["ORDNO"] for r in changed] == ["0000000002", "0000000005", "0000000009"]
    assert {r["LSTUPD"] for r in changed} == {"20260601120005"}
    assert {r["STATUS"] for r in changed} == {"R"}
    assert changed[0]["TOTAMT"] == "000001234567"


def test_bad_seed_is_refused_with_a_legacy_error(mainframe, http):
    response = http.post(f"{mainframe.base_url}/_sandbox/seed", json={"orders": [{"ordno": "1"}]})
    assert response.status_code == 400
    assert response.json()["RC"] == "12"


def test_throttling_answers_in_the_legacy_format_with_retry_after(mainframe, token, http):
    http.put(
        f"{mainframe.base_url}/_sandbox/faults", json={"rate429": 1, "retryAfterSeconds": 4}
    ).raise_for_status()
    response = _get(http, mainframe, token)
    assert response.status_code == 429
    assert response.json()["RC"] == "16"
    assert response.headers["Retry-After"] == "4"


# ---- Records: customers (key CUSTNO), keyed files ---------------------------------------------


def _customer(name: str, lstupd: str, custno: str = "C0001234  ") -> dict[str, str]:
    return {
        "CUSTNO": custno,
        "CUSTNM": name.upper().ljust(40),
        "CITY": "SEATTLE",
        "STATE": "WA",
        "ZIP": "98101",
        "CNTRY": "US",
        "STATUS": "A",
        "LSTUPD": lstupd,
    }


def test_customer_file_keeps_two_records_with_one_custno_and_pages_over_both(
    mainframe, token, http
):
    # Given the customer file holding one CUSTNO twice (keyed in again by hand, a later LSTUPD
    # for the second), plus another customer: the legacy file does not enforce unique keys
    _seed(
        http,
        mainframe,
        customers=[
            _customer("Fabrikam Inc", "20260105100000"),
            _customer("Fabrikam Incorporated", "20260105110000"),
            _customer("Contoso Ltd", "20260105100000", custno="C0000007  "),
        ],
    )
    # When the customers are listed a page of one record at a time
    names, page_token = [], None
    while True:
        params = {"pageSize": 1, **({"pageToken": page_token} if page_token else {})}
        body = _get(http, mainframe, token, entity="customers", **params).json()
        names += [(r["CUSTNO"], r["CUSTNM"].strip()) for r in body["RECORDS"]]
        page_token = body["NEXTPAGE"]
        if page_token is None:
            break
    # Then both records of C0001234 are listed, in LSTUPD then key order, none skipped
    assert names == [
        ("C0000007  ", "CONTOSO LTD"),
        ("C0001234  ", "FABRIKAM INC"),
        ("C0001234  ", "FABRIKAM INCORPORATED"),
    ]
    assert len(mainframe.records("customers")) == 3


def test_duplicate_customers_sharing_a_stamp_page_in_the_order_they_were_written(
    mainframe, token, http
):
    # Given two records with one CUSTNO and the same LSTUPD (the listing order is then the
    # order they were written in, so a cursor between them neither skips nor repeats)
    stamp = "20260105100000"
    _seed(http, mainframe, customers=[_customer("First", stamp), _customer("Second", stamp)])
    # When listed one per page
    first = _get(http, mainframe, token, entity="customers", pageSize=1).json()
    second = _get(
        http, mainframe, token, entity="customers", pageSize=1, pageToken=first["NEXTPAGE"]
    ).json()
    # Then each page carries one of them, in written order, and the second page is the last
    assert [r["CUSTNM"].strip() for r in first["RECORDS"] + second["RECORDS"]] == [
        "FIRST",
        "SECOND",
    ]
    assert second["NEXTPAGE"] is None


def test_touch_of_a_duplicated_custno_changes_the_first_record_written(mainframe, http):
    # Given one CUSTNO held twice
    _seed(
        http,
        mainframe,
        customers=[_customer("Fabrikam", "20260105100000"), _customer("Fab", "20260105110000")],
    )
    _seed(http, mainframe, settings=[{"now": "20260601120000"}])
    # When the mainframe's transaction changes that customer by key
    http.post(
        f"{mainframe.base_url}/_sandbox/touch",
        json={"customers": [{"CUSTNO": "C0001234  ", "STATUS": "H"}]},
    ).raise_for_status()
    # Then the first record written took the change (a keyed REWRITE finds the first one) and
    # the second is as it was
    records = {r["CUSTNM"].strip(): r for r in mainframe.records("customers")}
    assert (records["FABRIKAM"]["STATUS"], records["FABRIKAM"]["LSTUPD"]) == (
        "H",
        "20260601120000",
    )
    assert (records["FAB"]["STATUS"], records["FAB"]["LSTUPD"]) == ("A", "20260105110000")


def test_keyed_files_replace_a_record_seeded_again_with_its_key(mainframe, token, http):
    # Given an order seeded, then seeded again with the same ORDNO and a new status
    _seed(http, mainframe, orders=[_order(1, "20260105100000")])
    _seed(http, mainframe, orders=[_order(1, "20260105110000", status="R")])
    # Then the orders file (keyed by ORDNO) holds one record, the second one
    records = _get(http, mainframe, token).json()["RECORDS"]
    assert [(r["ORDNO"], r["STATUS"]) for r in records] == [("0000000001", "R")]
