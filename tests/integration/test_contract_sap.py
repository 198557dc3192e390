"""Contract tests: the SAP sandbox peer behaves as SAP S/4HANA's OData V2 APIs are documented.

Sources cited per test (full references in docs/sap-api.md):
- [EDMX]    API_SALES_ORDER_SRV / API_PRODUCT_SRV metadata, gregorwolf/teched2020-DT261-cap srv/external/
- [CSRF]    SAP blog "How does CSRF token work? SAP Gateway" (blogs.sap.com, 2021-06-04)
- [KBA3048] SAP KBA 3048103 "403 Error Occurs When Executing OData Call via External Consumers"
- [KBA3514] SAP KBA 3514624 "Error 428 Precondition Required when sending a patch request via API"
- [KBA3539] SAP KBA 3539067 (API_OUTBOUND_DELIVERY_SRV: 412 stale ETag, 428 missing ETag)
- [GWERR]   help.sap.com "Error Response Control for Backend Data Provider"; SAP Community blog on
            API_PURCHASEREQ_PROCESS_SRV error responses (innererror.application, errordetails)
- [SOJSON]  SAP Community thread "API_SALES_ORDER_SRV" (GET response with __metadata/etag) and
            SAP API sandbox responses ("/Date(1474433263752+0000)/", "TotalNetAmount": "1000.00")
- [ATP]     API_PRODUCT_AVAILY_INFO_BASIC metadata (CDS import in
            aliceminjipark/btp-extension-s4-material-availability)
- [EQUI]    API_EQUIPMENT sandbox response (latonaio/sap-api-integrations-equipment-master-reads)
- [PRICE]   API_SLSPRICINGCONDITIONRECORD_SRV entities (SAP Cloud SDK client,
            gregorwolf/epmbp-consumer-app)
- [REALM]   401 answers of SAP NetWeaver AS ABAP: WWW-Authenticate: Basic realm="SAP NetWeaver
            Application Server [<SID>/<client>]" (observed in public SAP client code)
- [ODATAV2] OData V2 URI conventions (odata.org): $filter operators, literals, '' escaping,
            $inlinecount, server-driven paging with __next
- [BP]      API_BUSINESS_PARTNER metadata (A_CustomerType: key Customer, CustomerName 80
            read-only, OrderIsBlockedForCustomer, DeletionIndicator), EDMX copy in
            SAP-samples/cloud-cap-risk-management srv/external/API_BUSINESS_PARTNER.edmx
- [PPR0]    learning.sap.com "Introducing Pricing Fundamentals in S/4HANA Cloud": condition type
            PPR0 is the base price in S/4HANA's pricing
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.sap import AUDIENCE, SapPeer

pytestmark = pytest.mark.integration

JSON = {"Accept": "application/json"}
ORDER = {
    "SalesOrderType": "OR",
    "SalesOrganization": "1710",
    "DistributionChannel": "10",
    "OrganizationDivision": "00",
    "SoldToParty": "17100001",
    "PurchaseOrderByCustomer": "QT-2026-0001",
    "TransactionCurrency": "EUR",
    "RequestedDeliveryDate": "/Date(1798761600000)/",
}
ETAG = re.compile(r"^W/\"datetimeoffset'\d{4}-\d{2}-\d{2}T\d{2}%3A\d{2}%3A\d{2}\.\d{7}Z'\"$")


@pytest.fixture
def client(tls, sap_auth) -> Iterator[requests.Session]:
    """A fresh HTTP session (own cookie jar) authenticated as the communication user."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(tls.ca_path)
    session.auth = sap_auth
    yield session
    session.close()


def odata(sap: SapPeer, path: str) -> str:
    return f"{sap.base_url}/sap/opu/odata/sap/{path}"


def fetch_token(
    sap: SapPeer, client: requests.Session, service: str = "API_SALES_ORDER_SRV"
) -> str:
    response = client.get(odata(sap, f"{service}/"), headers={**JSON, "X-CSRF-Token": "Fetch"})
    assert response.status_code == 200
    return response.headers["x-csrf-token"]


def create_order(sap: SapPeer, client: requests.Session, **overrides: Any) -> requests.Response:
    token = fetch_token(sap, client)
    body = {
        **ORDER,
        **overrides,
    }
    body.setdefault(
        "to_Item",
        [
            {"Material": "PUMP-100", "RequestedQuantity": "2", "ProductionPlant": "1710"},
            {"Material": "VALVE-7", "RequestedQuantity": "10", "ProductionPlant": "1710"},
        ],
    )
    return client.post(
        odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder"),
        json=body,
        headers={**JSON, "X-CSRF-Token": token},
    )


def error_of(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error["message"]) == {"lang", "value"}
    assert isinstance(error["innererror"]["errordetails"], list)
    return error


# ---- CSRF ------------------------------------------------------------------------------------
def test_csrf_fetch_returns_a_token_and_the_security_session_cookie(sap, client):
    # [CSRF] GET with X-CSRF-Token: Fetch answers 200 with the token and Set-Cookie;
    # [KBA3048] the session cookie is SAP_SESSIONID_<SID>_<client> (or sap-XSRF_...).
    response = client.get(
        odata(sap, "API_SALES_ORDER_SRV/"), headers={**JSON, "X-CSRF-Token": "Fetch"}
    )
    assert response.status_code == 200
    assert len(response.headers["x-csrf-token"]) >= 20
    assert f"SAP_SESSIONID_{sap.system_id}_{sap.client}" in client.cookies
    # Then fetching again within the session returns the same token (one token per session)
    again = client.get(
        odata(sap, "API_SALES_ORDER_SRV/"), headers={**JSON, "X-CSRF-Token": "Fetch"}
    )
    assert again.headers["x-csrf-token"] == response.headers["x-csrf-token"]


def test_head_request_can_fetch_the_token(sap, client):
    # [CSRF] the fetch may use any non-modifying request; clients often send HEAD to the root
    response = client.head(
        odata(sap, "API_SALES_ORDER_SRV/"), headers={**JSON, "X-CSRF-Token": "Fetch"}
    )
    assert response.status_code == 200
    assert response.headers["x-csrf-token"]


def test_modifying_request_without_token_gets_403_csrf_required(sap, client, sap_catalog):
    # Given a valid session but no token header [CSRF]
    fetch_token(sap, client)
    # When an order is posted without the token
    response = client.post(odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder"), json=ORDER, headers=JSON)
    # Then SAP answers 403 with X-CSRF-Token: Required and "CSRF token validation failed" [KBA3048]
    assert response.status_code == 403
    assert response.headers["x-csrf-token"] == "Required"
    assert "CSRF token validation failed" in response.text
    assert sap.records("A_SalesOrder") == []


def test_token_without_its_session_cookie_is_refused(sap, client, tls, sap_auth, sap_catalog):
    # Given a token fetched in one session [KBA3048: the check compares header and cookie]
    token = fetch_token(sap, client)
    other = requests.Session()
    other.trust_env, other.verify, other.auth = False, str(tls.ca_path), sap_auth
    # When it is replayed from a session that never received the cookie
    response = other.post(
        odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder"),
        json=ORDER,
        headers={**JSON, "X-CSRF-Token": token},
    )
    # Then it is refused
    assert response.status_code == 403
    assert response.headers["x-csrf-token"] == "Required"


def test_token_and_cookie_replayed_together_are_accepted(sap, client, sap_catalog):
    # [CSRF] store the token and all Set-Cookie cookies, send both on every change
    response = create_order(sap, client)
    assert response.status_code == 201


def test_ended_session_requires_a_new_token(sap, client, sap_catalog):
    # Given a token whose security session has ended [CSRF: "when the session renews the
    # CSRF token has to be renewed as well"]
    token = fetch_token(sap, client)
    sap.expire_sessions()
    # When it is used
    response = client.post(
        odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder"),
        json=ORDER,
        headers={**JSON, "X-CSRF-Token": token},
    )
    # Then 403 Required, and a fresh fetch makes the same request succeed
    assert response.status_code == 403
    assert response.headers["x-csrf-token"] == "Required"
    assert create_order(sap, client).status_code == 201


def test_batch_requests_need_the_token_too(sap, client):
    # [CSRF] "$batch requests are always sent with POST" and need the token like any change
    response = client.post(
        odata(sap, "API_SALES_ORDER_SRV/$batch"), data=b"--batch--", headers=JSON
    )
    assert response.status_code == 403
    assert response.headers["x-csrf-token"] == "Required"
    # The sandbox does not implement $batch itself (docs/sap-api.md): with a token it says so
    token = fetch_token(sap, client)
    response = client.post(
        odata(sap, "API_SALES_ORDER_SRV/$batch"),
        data=b"--batch--",
        headers={**JSON, "X-CSRF-Token": token},
    )
    assert response.status_code == 501
    assert error_of(response)["code"] == "ZSANDBOX/501"


# ---- authentication --------------------------------------------------------------------------
def test_wrong_password_gets_sap_logon_error_with_basic_realm(sap, tls, sap_auth):
    # [REALM] 401 with the system id and client in the realm and an HTML logon page
    session = requests.Session()
    session.trust_env, session.verify = False, str(tls.ca_path)
    response = session.get(
        odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder"), headers=JSON, auth=(sap_auth[0], "nope")
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Basic realm="SAP NetWeaver Application Server [{sap.system_id}/{sap.client}]"'
    )
    assert response.headers["Content-Type"].startswith("text/html")
    # Missing credentials and an unknown user get the same answer
    assert (
        session.get(odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder"), headers=JSON).status_code == 401
    )
    assert (
        session.get(
            odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder"), headers=JSON, auth=("GHOST", "x")
        ).status_code
        == 401
    )


def test_user_does_not_exist_in_another_sap_client(sap, client):
    # [REALM] the user master is per client: sap-client=050 refuses a user of client 100
    response = client.get(
        odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder"), params={"sap-client": "050"}, headers=JSON
    )
    assert response.status_code == 401
    ok = client.get(
        odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder"),
        params={"sap-client": sap.client},
        headers=JSON,
    )
    assert ok.status_code == 200


def test_bearer_token_for_the_sap_audience_is_accepted(sap, tls, issuer, test_client):
    # Principal propagation / OAuth: a token for api://sap-s4hana (docs/sap-api.md)
    session = requests.Session()
    session.trust_env, session.verify = False, str(tls.ca_path)
    good = issuer.issue(test_client["clientId"], AUDIENCE)
    other = issuer.issue(test_client["clientId"], "https://vault.azure.net")
    url = odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder")
    assert session.get(url, headers={**JSON, "Authorization": f"Bearer {good}"}).status_code == 200
    assert session.get(url, headers={**JSON, "Authorization": f"Bearer {other}"}).status_code == 401


# ---- deep insert and reads -------------------------------------------------------------------
def test_deep_insert_creates_order_and_items_with_server_numbers_and_totals(
    sap, client, sap_catalog
):
    # [EDMX] InsertRestrictions: "Creates a sales order header using deep insert requests";
    # SalesOrder is assigned by SAP; TotalNetAmount/NetAmount are sap:creatable="false" (computed)
    response = create_order(sap, client)
    assert response.status_code == 201
    order = response.json()["d"]
    assert order["SalesOrder"] == "1"
    assert response.headers["Location"].endswith("/A_SalesOrder('1')")
    assert ETAG.match(response.headers["ETag"])
    assert order["__metadata"]["etag"] == response.headers["ETag"]
    assert order["__metadata"]["type"] == "API_SALES_ORDER_SRV.A_SalesOrderType"
    items = order["to_Item"]["results"]
    assert [i["SalesOrderItem"] for i in items] == ["10", "20"]
    # 2 x 1250.00 + 10 x 40.50, decimals as strings with the currency's decimals [SOJSON]
    assert [i["NetAmount"] for i in items] == ["2500.00", "405.00"]
    assert order["TotalNetAmount"] == "2905.00"
    assert order["OverallSDProcessStatus"] == "A"
    assert order["PurchaseOrderByCustomer"] == "QT-2026-0001"
    # A second order gets the next number
    assert create_order(sap, client).json()["d"]["SalesOrder"] == "2"


def test_deep_insert_accepts_the_v2_results_wrapper_and_partners(sap, client, sap_catalog):
    # [ODATAV2] inline collections may be written as {"results": [...]}; [EDMX] to_Partner
    response = create_order(
        sap,
        client,
        to_Item={"results": [{"Material": "PUMP-100", "RequestedQuantity": "1"}]},
        to_Partner=[{"PartnerFunction": "SH", "Customer": "17100002"}],
    )
    assert response.status_code == 201
    partners = response.json()["d"]["to_Partner"]["results"]
    assert partners[0]["PartnerFunction"] == "SH"
    assert partners[0]["Customer"] == "17100002"


def test_read_only_and_unknown_properties_are_refused_on_create(sap, client, sap_catalog):
    # [EDMX] TotalNetAmount is sap:creatable="false"; an unknown property is invalid
    read_only = create_order(sap, client, TotalNetAmount="1.00")
    assert read_only.status_code == 400
    assert error_of(read_only)["innererror"]["errordetails"][0]["target"] == "TotalNetAmount"
    unknown = create_order(sap, client, QuoteId="Q-1")
    assert unknown.status_code == 400
    assert "QuoteId" in error_of(unknown)["message"]["value"]
    # A deep insert is all or nothing: an item with an unknown material leaves no order behind
    bad_item = create_order(sap, client, to_Item=[{"Material": "NOPE", "RequestedQuantity": "1"}])
    assert bad_item.status_code == 400
    assert "NOPE" in error_of(bad_item)["message"]["value"]
    assert sap.records("A_SalesOrder") == []


def test_decimal_must_be_a_json_string_and_fit_its_scale(sap, client, sap_catalog):
    # [ODATAV2] Edm.Decimal is a string in V2 JSON; [EDMX] RequestedQuantity Scale="3"
    as_number = create_order(
        sap, client, to_Item=[{"Material": "PUMP-100", "RequestedQuantity": 2}]
    )
    assert as_number.status_code == 400
    too_precise = create_order(
        sap, client, to_Item=[{"Material": "PUMP-100", "RequestedQuantity": "1.0001"}]
    )
    assert too_precise.status_code == 400


def test_max_length_is_enforced_for_the_quote_reference(sap, client, sap_catalog):
    # [EDMX] PurchaseOrderByCustomer MaxLength="35": the quote id must fit
    response = create_order(sap, client, PurchaseOrderByCustomer="Q" * 36)
    assert response.status_code == 400
    assert "35" in error_of(response)["message"]["value"]


def test_entity_read_has_metadata_etag_dates_and_deferred_navigation(sap, client, sap_catalog):
    create_order(sap, client)
    # [SOJSON] {"d": {...}} with __metadata (uri, type, etag) and __deferred navigation links
    response = client.get(odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder('1')"), headers=JSON)
    assert response.status_code == 200
    order = response.json()["d"]
    assert response.headers["ETag"] == order["__metadata"]["etag"]
    assert order["to_Item"]["__deferred"]["uri"].endswith("/A_SalesOrder('1')/to_Item")
    # Edm.DateTime as /Date(ms)/, Edm.DateTimeOffset as /Date(ms+0000)/ [SOJSON]
    assert order["RequestedDeliveryDate"] == "/Date(1798761600000)/"
    assert re.fullmatch(r"/Date\(\d{13}\+0000\)/", order["LastChangeDateTime"])
    # ABAP initial values: empty strings, not null; dates may be null
    assert order["SalesGroup"] == ""
    assert order["CustomerPurchaseOrderDate"] is None
    # A zero-padded key finds the same order (ALPHA conversion)
    padded = client.get(odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder('0000000001')"), headers=JSON)
    assert padded.json()["d"]["SalesOrder"] == "1"
    # The named-key form works too
    named = client.get(odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder(SalesOrder='1')"), headers=JSON)
    assert named.status_code == 200


def test_navigation_and_expand_return_items(sap, client, sap_catalog):
    create_order(sap, client)
    # [EDMX] NavigationRestrictions: to_Item "Reads all items of a specific sales order"
    items = client.get(
        odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder('1')/to_Item"), headers=JSON
    ).json()["d"]
    assert [i["Material"] for i in items["results"]] == ["PUMP-100", "VALVE-7"]
    expanded = client.get(
        odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder"), params={"$expand": "to_Item"}, headers=JSON
    ).json()["d"]["results"][0]
    assert len(expanded["to_Item"]["results"]) == 2
    item = client.get(
        odata(sap, "API_SALES_ORDER_SRV/A_SalesOrderItem(SalesOrder='1',SalesOrderItem='20')"),
        headers=JSON,
    ).json()["d"]
    assert item["RequestedQuantity"] == "10.000"


def test_unknown_set_key_and_service_are_404_in_sap_format(sap, client):
    # [GWERR] "Resource not found for segment ..." (/IWBEP/CM_MGW_RT/020); unknown service
    # /IWFND/MED/170 "No service found for namespace ..."
    missing_key = client.get(odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder('999')"), headers=JSON)
    assert missing_key.status_code == 404
    error = error_of(missing_key)
    assert error["message"]["value"] == "Resource not found for segment 'A_SalesOrderType'"
    assert error["innererror"]["application"]["service_id"] == "API_SALES_ORDER_SRV"
    missing_set = client.get(odata(sap, "API_SALES_ORDER_SRV/A_Quote"), headers=JSON)
    assert missing_set.status_code == 404
    missing_service = client.get(odata(sap, "API_QUOTE_SRV/A_Quote"), headers=JSON)
    assert missing_service.status_code == 404
    assert error_of(missing_service)["code"] == "/IWFND/MED/170"


def test_malformed_json_is_400_and_oversized_body_is_refused(sap, client, sap_catalog):
    token = fetch_token(sap, client)
    headers = {**JSON, "X-CSRF-Token": token, "Content-Type": "application/json"}
    response = client.post(
        odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder"), data=b'{"SalesOrderType": ', headers=headers
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "/IWBEP/CM_MGW_RT/008"
    big = b'{"SalesOrderType":"' + b"x" * (sap.max_body_bytes + 10) + b'"}'
    too_big = client.post(odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder"), data=big, headers=headers)
    assert too_big.status_code == 413
    assert "error" in too_big.json()


def test_json_is_served_only_on_request(sap, client):
    # SAP Gateway answers Atom XML unless JSON is asked for ($format=json or Accept); the
    # sandbox refuses rather than answer XML (docs/sap-api.md, "Deviations")
    url = odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder")
    assert client.get(url, headers={"Accept": "*/*"}).status_code == 406
    assert client.get(url, params={"$format": "json"}, headers={"Accept": "*/*"}).status_code == 200


def test_metadata_is_edmx_with_the_concurrency_token(sap, client):
    # [EDMX] LastChangeDateTime Edm.DateTimeOffset ConcurrencyMode="Fixed" sap:updatable="false"
    response = client.get(odata(sap, "API_SALES_ORDER_SRV/$metadata"))
    assert response.status_code == 200
    root = ET.fromstring(response.content)
    edm = "{http://schemas.microsoft.com/ado/2008/09/edm}"
    stamp = next(p for p in root.iter(f"{edm}Property") if p.get("Name") == "LastChangeDateTime")
    assert stamp.get("Type") == "Edm.DateTimeOffset"
    assert stamp.get("ConcurrencyMode") == "Fixed"
    sets = {e.get("Name") for e in root.iter(f"{edm}EntitySet")}
    assert {"A_SalesOrder", "A_SalesOrderItem", "A_SalesOrderHeaderPartner"} <= sets


# ---- updates and optimistic locking ----------------------------------------------------------
def test_patch_without_if_match_is_428(sap, client, sap_catalog):
    create_order(sap, client)
    token = fetch_token(sap, client)
    # [KBA3514] PATCH without If-Match: "428 Precondition Required"
    response = client.patch(
        odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder('1')"),
        json={"ShippingCondition": "01"},
        headers={**JSON, "X-CSRF-Token": token},
    )
    assert response.status_code == 428
    assert "If-Match" in error_of(response)["message"]["value"]


def test_patch_with_current_etag_is_204_with_a_new_etag_and_stale_etag_is_412(
    sap, client, sap_catalog
):
    created = create_order(sap, client)
    first_etag = created.headers["ETag"]
    token = fetch_token(sap, client)
    url = odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder('1')")
    # When the order is changed with its current ETag [EDMX ConcurrencyMode="Fixed"]
    ok = client.patch(
        url,
        json={"ShippingCondition": "01"},
        headers={**JSON, "X-CSRF-Token": token, "If-Match": first_etag},
    )
    # Then 204 with a new ETag, and LastChangeDateTime advanced
    assert ok.status_code == 204
    assert ok.headers["ETag"] != first_etag
    assert client.get(url, headers=JSON).json()["d"]["ShippingCondition"] == "01"
    # And the old ETag is now stale: 412 [KBA3539]
    stale = client.patch(
        url,
        json={"ShippingCondition": "02"},
        headers={**JSON, "X-CSRF-Token": token, "If-Match": first_etag},
    )
    assert stale.status_code == 412
    assert error_of(stale)["code"] == "/IWBEP/CM_MGW_RT/190"


def test_merge_verb_and_method_tunnelling_update_like_patch(sap, client, sap_catalog):
    # [ODATAV2] V2 partial update is MERGE; SAP UI5 tunnels it as POST + X-HTTP-Method
    etag = create_order(sap, client).headers["ETag"]
    token = fetch_token(sap, client)
    url = odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder('1')")
    merged = client.request(
        "MERGE",
        url,
        json={"ShippingCondition": "05"},
        headers={**JSON, "X-CSRF-Token": token, "If-Match": etag},
    )
    assert merged.status_code == 204
    tunnelled = client.post(
        url,
        json={"DeliveryBlockReason": "01"},
        headers={
            **JSON,
            "X-CSRF-Token": token,
            "If-Match": merged.headers["ETag"],
            "X-HTTP-Method": "MERGE",
        },
    )
    assert tunnelled.status_code == 204
    assert client.get(url, headers=JSON).json()["d"]["DeliveryBlockReason"] == "01"


def test_read_only_field_in_update_is_refused_but_unchanged_echo_is_accepted(
    sap, client, sap_catalog
):
    etag = create_order(sap, client).headers["ETag"]
    token = fetch_token(sap, client)
    url = odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder('1')")
    # [EDMX] TotalNetAmount sap:updatable="false"
    refused = client.patch(
        url,
        json={"TotalNetAmount": "1.00"},
        headers={**JSON, "X-CSRF-Token": token, "If-Match": etag},
    )
    assert refused.status_code == 400
    echoed = client.patch(
        url,
        json={"TotalNetAmount": "2905.00", "ShippingCondition": "01"},
        headers={**JSON, "X-CSRF-Token": token, "If-Match": etag},
    )
    assert echoed.status_code == 204


def test_item_update_is_locked_by_the_order_etag_and_recomputes_totals(sap, client, sap_catalog):
    etag = create_order(sap, client).headers["ETag"]
    token = fetch_token(sap, client)
    url = odata(sap, "API_SALES_ORDER_SRV/A_SalesOrderItem(SalesOrder='1',SalesOrderItem='10')")
    assert (
        client.patch(
            url, json={"RequestedQuantity": "3"}, headers={**JSON, "X-CSRF-Token": token}
        ).status_code
        == 428
    )
    response = client.patch(
        url,
        json={"RequestedQuantity": "3"},
        headers={**JSON, "X-CSRF-Token": token, "If-Match": etag},
    )
    assert response.status_code == 204
    order = client.get(odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder('1')"), headers=JSON)
    assert order.json()["d"]["TotalNetAmount"] == "4155.00"  # 3 x 1250 + 405
    assert order.headers["ETag"] == response.headers["ETag"] != etag


def test_a_change_made_in_sap_advances_last_change_date_time(sap, client, http, sap_catalog):
    created = create_order(sap, client)
    before = created.json()["d"]
    # When a user changes the order in SAP (control surface)
    changed = http.post(
        f"{sap.base_url}/_sandbox/change",
        json=[
            {
                "entitySet": "A_SalesOrder",
                "key": {"SalesOrder": "1"},
                "values": {"OverallSDProcessStatus": "C"},
            }
        ],
    )
    assert changed.status_code == 200
    after = client.get(odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder('1')"), headers=JSON).json()[
        "d"
    ]
    # Then the read-only status changed, the change stamp moved on and the old ETag is stale
    assert after["OverallSDProcessStatus"] == "C"
    assert int(after["LastChangeDateTime"][6:19]) >= int(before["LastChangeDateTime"][6:19])
    assert after["__metadata"]["etag"] != created.headers["ETag"]
    token = fetch_token(sap, client)
    stale = client.patch(
        odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder('1')"),
        json={"ShippingCondition": "01"},
        headers={**JSON, "X-CSRF-Token": token, "If-Match": created.headers["ETag"]},
    )
    assert stale.status_code == 412


def test_item_created_through_navigation_gets_the_next_number(sap, client, sap_catalog):
    # [EDMX] to_Item InsertRestrictions: "Creates a sales order item for a specific sales order"
    etag = create_order(sap, client).headers["ETag"]
    token = fetch_token(sap, client)
    response = client.post(
        odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder('1')/to_Item"),
        json={"Material": "VALVE-7", "RequestedQuantity": "1"},
        headers={**JSON, "X-CSRF-Token": token},
    )
    assert response.status_code == 201
    assert response.json()["d"]["SalesOrderItem"] == "30"
    order = client.get(odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder('1')"), headers=JSON)
    assert order.json()["d"]["TotalNetAmount"] == "2945.50"
    assert order.headers["ETag"] != etag


def test_put_replaces_all_updatable_fields(sap, client, sap_catalog):
    # [ODATAV2] PUT replaces the entity: fields left out return to their initial value
    etag = create_order(sap, client, ShippingCondition="01").headers["ETag"]
    token = fetch_token(sap, client)
    url = odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder('1')")
    body = {k: v for k, v in ORDER.items() if k != "RequestedDeliveryDate"}
    response = client.put(url, json=body, headers={**JSON, "X-CSRF-Token": token, "If-Match": etag})
    assert response.status_code == 204
    order = client.get(url, headers=JSON).json()["d"]
    assert order["ShippingCondition"] == ""
    assert order["RequestedDeliveryDate"] is None
    # A replacement without the mandatory organisational data is refused
    incomplete = client.put(
        url,
        json={"SalesOrderType": "OR"},
        headers={**JSON, "X-CSRF-Token": token, "If-Match": response.headers["ETag"]},
    )
    assert incomplete.status_code == 400


def test_delete_needs_if_match_and_removes_items(sap, client, sap_catalog):
    etag = create_order(sap, client).headers["ETag"]
    token = fetch_token(sap, client)
    url = odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder('1')")
    assert client.delete(url, headers={**JSON, "X-CSRF-Token": token}).status_code == 428
    assert (
        client.delete(url, headers={**JSON, "X-CSRF-Token": token, "If-Match": etag}).status_code
        == 204
    )
    assert sap.records("A_SalesOrderItem") == []


# ---- query options ---------------------------------------------------------------------------
@pytest.fixture
def orders(sap, sap_catalog) -> None:
    """Twelve orders for query tests, numbered 1..12, with varied fields."""
    rows = []
    for n in range(1, 13):
        rows.append(
            {
                "SalesOrderType": "OR",
                "SalesOrganization": "1710" if n % 2 else "1010",
                "DistributionChannel": "10",
                "OrganizationDivision": "00",
                "SoldToParty": "O'BRIEN" if n == 7 else f"CUST{n % 3}",
                "PurchaseOrderByCustomer": f"QT-{n:04d}",
                "TransactionCurrency": "EUR",
                "TotalNetAmount": str(n * 100),
                "LastChangeDateTime": f"2026-05-{n:02d}T09:30:00.{n:03d}Z",
            }
        )
    with sap.lock:
        sap.seed({"A_SalesOrder": rows})


def query(sap: SapPeer, client: requests.Session, **params: str) -> requests.Response:
    return client.get(odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder"), params=params, headers=JSON)


def numbers(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["SalesOrder"] for r in response.json()["d"]["results"]]


def test_filter_comparisons_logic_and_quote_escaping(sap, client, orders):
    # [ODATAV2] eq ne gt ge lt le, and/or/not, parentheses; '' escapes a quote in a literal
    assert numbers(query(sap, client, **{"$filter": "SoldToParty eq 'O''BRIEN'"})) == ["7"]
    assert numbers(query(sap, client, **{"$filter": "TotalNetAmount gt 1000M"})) == ["11", "12"]
    assert numbers(
        query(sap, client, **{"$filter": "TotalNetAmount le 200 or SalesOrder eq '12'"})
    ) == ["1", "2", "12"]
    assert numbers(
        query(
            sap,
            client,
            **{
                "$filter": "(SalesOrganization eq '1010' and TotalNetAmount ge 1000M) and not (SalesOrder eq '12')"
            },
        )
    ) == ["10"]
    assert len(numbers(query(sap, client, **{"$filter": "SalesOrganization ne '1710'"}))) == 6
    assert numbers(query(sap, client, **{"$filter": "substringof('BRI', SoldToParty)"})) == ["7"]
    assert numbers(
        query(sap, client, **{"$filter": "startswith(PurchaseOrderByCustomer, 'QT-001')"})
    ) == ["10", "11", "12"]


def test_filter_on_sales_order_number_compares_numerically(sap, client, orders):
    # SalesOrder is CHAR10 with ALPHA conversion inside SAP: '9' < '10' as numbers [EDMX]
    assert numbers(query(sap, client, **{"$filter": "SalesOrder gt '9'"})) == ["10", "11", "12"]
    assert numbers(query(sap, client, **{"$filter": "SalesOrder lt '0000000003'"})) == ["1", "2"]


def test_delta_filter_on_last_change_date_time(sap, client, orders):
    # protocols.md delta pattern: LastChangeDateTime gt datetimeoffset'...' ordered ascending;
    # comparisons run at the stamp's precision (seven fractional digits)
    response = query(
        sap,
        client,
        **{
            "$filter": "LastChangeDateTime gt datetimeoffset'2026-05-10T09:30:00.0100000Z'",
            "$orderby": "LastChangeDateTime asc",
        },
    )
    assert numbers(response) == ["11", "12"]
    inclusive = query(
        sap,
        client,
        **{"$filter": "LastChangeDateTime ge datetimeoffset'2026-05-10T09:30:00.0100000Z'"},
    )
    assert numbers(inclusive) == ["10", "11", "12"]
    offset = query(
        sap,
        client,
        **{"$filter": "LastChangeDateTime lt datetimeoffset'2026-05-02T11:30:00+02:00'"},
    )
    assert numbers(offset) == ["1"]


def test_filter_with_wrong_literal_type_or_syntax_is_400(sap, client, orders):
    # [ODATAV2] a DateTimeOffset property compares with datetimeoffset literals only
    wrong_type = query(
        sap, client, **{"$filter": "LastChangeDateTime gt datetime'2026-05-10T00:00:00'"}
    )
    assert wrong_type.status_code == 400
    assert "LastChangeDateTime" in error_of(wrong_type)["message"]["value"]
    for bad in (
        "SalesOrder eq",
        "SalesOrder eq 'x' and",
        "Unknown eq 'x'",
        "SalesOrder eq 'unterminated",
    ):
        response = query(sap, client, **{"$filter": bad})
        assert response.status_code == 400, bad
        error_of(response)


def test_orderby_several_properties_and_direction(sap, client, orders):
    response = query(
        sap, client, **{"$orderby": "SalesOrganization asc,TotalNetAmount desc", "$top": "3"}
    )
    assert numbers(response) == ["12", "10", "8"]
    assert query(sap, client, **{"$orderby": "Nope asc"}).status_code == 400


def test_top_skip_and_inlinecount(sap, client, orders):
    # [ODATAV2] $inlinecount=allpages adds __count (a string in V2 JSON) for the whole result
    response = query(
        sap,
        client,
        **{"$top": "3", "$skip": "4", "$inlinecount": "allpages", "$orderby": "SalesOrder asc"},
    )
    assert numbers(response) == ["5", "6", "7"]
    assert response.json()["d"]["__count"] == "12"
    assert query(sap, client, **{"$top": "-1"}).status_code == 400
    assert query(sap, client, **{"$inlinecount": "sometimes"}).status_code == 400


def test_server_side_paging_returns_next_link_with_skiptoken(sap, client, http, orders):
    # [ODATAV2] server-driven paging: a partial page carries __next; following it completes
    http.post(
        f"{sap.base_url}/_sandbox/seed", json={"settings": [{"maxPageSize": 5}]}
    ).raise_for_status()
    response = query(sap, client, **{"$filter": "SalesOrder ne '3'", "$inlinecount": "allpages"})
    seen = numbers(response)
    body = response.json()["d"]
    assert body["__count"] == "11"
    pages = 1
    while "__next" in body:
        assert "$skiptoken=" in body["__next"]
        response = client.get(body["__next"], headers=JSON)
        seen += numbers(response)
        body = response.json()["d"]
        pages += 1
    assert pages == 3
    assert seen == [str(n) for n in range(1, 13) if n != 3]
    # $top smaller than the page limit needs no next link
    assert "__next" not in query(sap, client, **{"$top": "4"}).json()["d"]


def test_select_limits_properties_but_keeps_metadata(sap, client, orders):
    row = query(sap, client, **{"$select": "SalesOrder,TotalNetAmount", "$top": "1"}).json()["d"][
        "results"
    ][0]
    assert set(row) == {"__metadata", "SalesOrder", "TotalNetAmount"}
    assert row["TotalNetAmount"] == "100.00"
    assert query(sap, client, **{"$select": "Nope"}).status_code == 400
    assert query(sap, client, **{"$foo": "1"}).status_code == 400


# ---- other services --------------------------------------------------------------------------
def test_availability_at_plant_is_stock_less_open_order_demand(sap, client, sap_catalog):
    # [ATP] DetermineAvailabilityAt(SupplyingPlant, Material, ATPCheckingRule, RequestedUTCDateTime)
    # returns an AvailabilityRecord (AvailableQuantityInBaseUnit Decimal(16,3), BaseUnit)
    create_order(sap, client)  # 2 x PUMP-100 at plant 1710
    response = client.get(
        odata(sap, "API_PRODUCT_AVAILY_INFO_BASIC/DetermineAvailabilityAt"),
        params={
            "SupplyingPlant": "'1710'",
            "Material": "'PUMP-100'",
            "ATPCheckingRule": "'A'",
            "RequestedUTCDateTime": "datetimeoffset'2026-12-01T00:00:00Z'",
        },
        headers=JSON,
    )
    assert response.status_code == 200
    record = response.json()["d"]["DetermineAvailabilityAt"]
    assert record["__metadata"]["type"] == "API_PRODUCT_AVAILY_INFO_BASIC.AvailabilityRecord"
    assert record["AvailableQuantityInBaseUnit"] == "10.000"
    assert record["BaseUnit"] == "PC"
    assert re.fullmatch(r"/Date\(\d+\)/", record["PeriodStartUTCDateTime"])


def test_availability_timeseries_and_quantity_check(sap, client, sap_catalog):
    # [ATP] CalculateAvailabilityTimeseries returns a collection; DetermineAvailabilityOf tells
    # when a requested quantity is available
    series = client.get(
        odata(sap, "API_PRODUCT_AVAILY_INFO_BASIC/CalculateAvailabilityTimeseries"),
        params={"ATPCheckingRule": "'A'", "Material": "'PUMP-100'", "SupplyingPlant": "'1010'"},
        headers=JSON,
    ).json()["d"]["results"]
    assert [r["AvailableQuantityInBaseUnit"] for r in series] == ["3.000"]
    params = {"Material": "'PUMP-100'", "SupplyingPlant": "'1010'", "ATPCheckingRule": "'A'"}
    enough = client.get(
        odata(sap, "API_PRODUCT_AVAILY_INFO_BASIC/DetermineAvailabilityOf"),
        params={**params, "RequestedQuantityInBaseUnit": "2M"},
        headers=JSON,
    ).json()["d"]["DetermineAvailabilityOf"]
    assert enough["AvailableQuantityInBaseUnit"] == "2.000"
    short = client.get(
        odata(sap, "API_PRODUCT_AVAILY_INFO_BASIC/DetermineAvailabilityOf"),
        params={**params, "RequestedQuantityInBaseUnit": "5M"},
        headers=JSON,
    ).json()["d"]["DetermineAvailabilityOf"]
    assert short["PeriodStartUTCDateTime"] == "/Date(253402300799000)/"


def test_availability_refuses_missing_parameters_and_unknown_plants(sap, client, sap_catalog):
    url = odata(sap, "API_PRODUCT_AVAILY_INFO_BASIC/DetermineAvailabilityAt")
    missing = client.get(url, params={"Material": "'PUMP-100'"}, headers=JSON)
    assert missing.status_code == 400
    unquoted = client.get(
        url,
        params={
            "SupplyingPlant": "1710",
            "Material": "'PUMP-100'",
            "ATPCheckingRule": "'A'",
            "RequestedUTCDateTime": "datetimeoffset'2026-12-01T00:00:00Z'",
        },
        headers=JSON,
    )
    assert unquoted.status_code == 400
    unknown = client.get(
        url,
        params={
            "SupplyingPlant": "'9999'",
            "Material": "'PUMP-100'",
            "ATPCheckingRule": "'A'",
            "RequestedUTCDateTime": "datetimeoffset'2026-12-01T00:00:00Z'",
        },
        headers=JSON,
    )
    assert unknown.status_code == 400
    assert "9999" in error_of(unknown)["message"]["value"]


@pytest.fixture
def equipment(sap) -> None:
    with sap.lock:
        sap.seed(
            {
                "Equipment": [
                    {
                        "Equipment": "10000000",
                        "ValidityEndDate": "/Date(253402214400000)/",
                        "ValidityStartDate": "2017-04-13T00:00:00",
                        "EquipmentName": "Pump 100 at Acme",
                        "Material": "PUMP-100",
                        "SerialNumber": "SN-0001",
                        "LastChangeDateTime": "2026-05-01T08:00:00Z",
                        "to_Partner": [
                            {
                                "PartnerFunction": "SP",
                                "EquipmentPartnerObjectNmbr": "1",
                                "Partner": "17100001",
                            }
                        ],
                    },
                    {
                        "Equipment": "10000001",
                        "ValidityEndDate": "9999-12-31T00:00:00",
                        "EquipmentName": "Valve 7 at Acme",
                        "Material": "VALVE-7",
                        "LastChangeDateTime": "2026-05-03T08:00:00Z",
                    },
                ]
            }
        )


def test_equipment_reads_with_composite_datetime_key_partners_and_delta(sap, client, equipment):
    # [EQUI] key (Equipment, ValidityEndDate=datetime'9999-12-31T00:00:00'), to_Partner
    url = odata(
        sap,
        "API_EQUIPMENT/Equipment(Equipment='10000000',ValidityEndDate=datetime'9999-12-31T00:00:00')",
    )
    record = client.get(url, params={"$expand": "to_Partner"}, headers=JSON).json()["d"]
    assert record["EquipmentName"] == "Pump 100 at Acme"
    assert record["ValidityEndDate"] == "/Date(253402214400000)/"
    assert "ValidityEndDate=datetime'9999-12-31T00%3A00%3A00'" in record["__metadata"]["uri"]
    assert record["to_Partner"]["results"][0]["Partner"] == "17100001"
    changed = client.get(
        odata(sap, "API_EQUIPMENT/Equipment"),
        params={"$filter": "LastChangeDateTime gt datetimeoffset'2026-05-02T00:00:00Z'"},
        headers=JSON,
    ).json()["d"]["results"]
    assert [e["Equipment"] for e in changed] == ["10000001"]


def test_equipment_is_read_only_in_the_sandbox(sap, client, equipment):
    token = fetch_token(sap, client, "API_EQUIPMENT")
    response = client.post(
        odata(sap, "API_EQUIPMENT/Equipment"),
        json={"EquipmentName": "x"},
        headers={**JSON, "X-CSRF-Token": token},
    )
    assert response.status_code == 405
    error_of(response)


def test_products_and_price_conditions_read_with_expand(sap, client, sap_catalog):
    # [EDMX] A_Product with to_Description; [PRICE] A_SlsPrcgConditionRecord with
    # to_SlsPrcgCndnRecdValidity (Material, SalesOrganization, validity dates)
    product = client.get(
        odata(sap, "API_PRODUCT_SRV/A_Product('PUMP-100')"),
        params={"$expand": "to_Description"},
        headers=JSON,
    ).json()["d"]
    assert product["to_Description"]["results"][0]["ProductDescription"] == "Pump 100"
    assert "etag" not in product["__metadata"]  # LastChangeDateTime is no concurrency token here
    conditions = client.get(
        odata(sap, "API_SLSPRICINGCONDITIONRECORD_SRV/A_SlsPrcgCndnRecdValidity"),
        params={"$filter": "Material eq 'PUMP-100'", "$expand": "to_SlsPrcgConditionRecord"},
        headers=JSON,
    ).json()["d"]["results"]
    assert conditions[0]["to_SlsPrcgConditionRecord"]["ConditionRateValue"] == "1250.000000000"
    assert conditions[0]["ConditionValidityEndDate"] == "/Date(253402214400000)/"
    plants = client.get(
        odata(sap, "API_PRODUCT_SRV/A_ProductPlant"),
        params={"$filter": "Product eq 'PUMP-100'"},
        headers=JSON,
    ).json()["d"]["results"]
    assert sorted(p["Plant"] for p in plants) == ["1010", "1710"]


def test_throttling_fault_answers_in_sap_error_format(sap, client, http):
    http.put(
        f"{sap.base_url}/_sandbox/faults", json={"rate429": 1, "retryAfterSeconds": 4}
    ).raise_for_status()
    response = client.get(odata(sap, "API_SALES_ORDER_SRV/A_SalesOrder"), headers=JSON)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "4"
    error_of(response)


# ---- customers (API_BUSINESS_PARTNER) and S/4HANA prices ----------------------------------------
@pytest.fixture
def customers(sap) -> None:
    with sap.lock:
        sap.seed(
            {
                "A_Customer": [
                    {
                        "Customer": "17100001",
                        "CustomerName": "Inlandskunde DE 1",
                        "CustomerAccountGroup": "CUST",
                        "OrderIsBlockedForCustomer": "01",
                        "DeletionIndicator": False,
                    },
                    {"Customer": "17100002", "CustomerName": "Inlandskunde DE 2"},
                ]
            }
        )


def test_customers_read_by_key_with_their_order_block(sap, client, customers):
    # [BP] A_Customer keyed by Customer; CustomerName is sap:creatable/updatable="false"
    url = odata(sap, "API_BUSINESS_PARTNER/A_Customer('17100001')")
    customer = client.get(url, headers=JSON).json()["d"]
    assert customer["CustomerName"] == "Inlandskunde DE 1"
    assert customer["OrderIsBlockedForCustomer"] == "01"
    assert customer["DeletionIndicator"] is False
    assert customer["__metadata"]["type"] == "API_BUSINESS_PARTNER.A_CustomerType"
    listed = client.get(odata(sap, "API_BUSINESS_PARTNER/A_Customer"), headers=JSON).json()
    assert [c["Customer"] for c in listed["d"]["results"]] == ["17100001", "17100002"]
    metadata = client.get(odata(sap, "API_BUSINESS_PARTNER/$metadata")).text
    assert '<EntityType Name="A_CustomerType"' in metadata
    assert 'Name="CustomerName" Type="Edm.String" MaxLength="80"' in metadata


def test_a_customer_number_is_one_customer_so_seeding_it_again_replaces_it(sap, http, customers):
    # [BP] Customer is the only key of A_Customer: SAP cannot hold two customers under one number
    http.post(
        f"{sap.base_url}/_sandbox/seed",
        json={"A_Customer": [{"Customer": "17100002", "CustomerName": "Renamed"}]},
    ).raise_for_status()
    records = http.get(f"{sap.base_url}/_sandbox/records/A_Customer").json()["records"]
    assert [(r["Customer"], r["CustomerName"]) for r in records] == [
        ("17100001", "Inlandskunde DE 1"),
        ("17100002", "Renamed"),
    ]


def test_customers_are_read_only_in_the_sandbox(sap, client, customers):
    token = fetch_token(sap, client, "API_BUSINESS_PARTNER")
    response = client.post(
        odata(sap, "API_BUSINESS_PARTNER/A_Customer"),
        json={"Customer": "17100003"},
        headers={**JSON, "X-CSRF-Token": token},
    )
    assert response.status_code == 405
    error_of(response)


def test_items_are_priced_from_s4hana_ppr0_condition_records(sap, client, http):
    # [PPR0] S/4HANA prices with condition type PPR0; [PRICE] the material and sales area are
    # on the validity (to_SlsPrcgCndnRecdValidity)
    http.post(
        f"{sap.base_url}/_sandbox/seed",
        json={
            "A_Product": [{"Product": "RTU-010", "ProductType": "FERT", "BaseUnit": "EA"}],
            "A_SlsPrcgConditionRecord": [
                {
                    "ConditionRecord": "0000000201",
                    "ConditionType": "PPR0",
                    "ConditionRateValue": "15500.50",
                    "ConditionRateValueUnit": "EUR",
                    "ConditionQuantity": "1",
                    "to_SlsPrcgCndnRecdValidity": [
                        {
                            "ConditionValidityStartDate": "2020-01-01T00:00:00",
                            "ConditionValidityEndDate": "9999-12-31T00:00:00",
                            "ConditionType": "PPR0",
                            "SalesOrganization": "1710",
                            "DistributionChannel": "10",
                            "Material": "RTU-010",
                        }
                    ],
                }
            ],
        },
    ).raise_for_status()
    response = create_order(
        sap,
        client,
        to_Item=[{"Material": "RTU-010", "RequestedQuantity": "2", "ProductionPlant": "1710"}],
    )
    assert response.status_code == 201, response.text
    order = response.json()["d"]
    assert order["to_Item"]["results"][0]["NetAmount"] == "31001.00"
    assert order["TotalNetAmount"] == "31001.00"
