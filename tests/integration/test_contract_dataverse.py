"""Contract tests: the sandbox Dataverse environment answers as the Web API v9.2 documents.

Sources are MicrosoftDocs/powerapps-docs files under ``powerapps-docs/developer/data-platform/``
(cited by path below) and MicrosoftDocs/SupportArticles-docs
``support/power-platform/dataverse/dataverse-web-api-and-sdk/web-api-client-errors.md``.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
import requests

from tests.fixtures.dataverse import DataverseApi

pytestmark = pytest.mark.integration

CRLF = "\r\n"


def batch_body(boundary: str, items: list[Any]) -> str:
    """A $batch body: items are (method, url, body|None, headers) or ("changeset", [...])."""
    lines: list[str] = []
    for item in items:
        lines.append(f"--{boundary}")
        if item[0] == "changeset":
            inner = f"changeset_{uuid.uuid4().hex}"
            lines += [f"Content-Type: multipart/mixed; boundary={inner}", ""]
            for number, (method, url, body, headers) in enumerate(item[1], start=1):
                lines += [
                    f"--{inner}",
                    "Content-Type: application/http",
                    "Content-Transfer-Encoding: binary",
                    f"Content-ID: {number}",
                    "",
                ]
                lines += _operation(method, url, body, headers)
            lines.append(f"--{inner}--")
        else:
            method, url, body, headers = item
            lines += ["Content-Type: application/http", "Content-Transfer-Encoding: binary", ""]
            lines += _operation(method, url, body, headers)
    lines.append(f"--{boundary}--")
    return CRLF.join(lines) + CRLF


def _operation(method: str, url: str, body: str | None, headers: dict[str, str]) -> list[str]:
    lines = [f"{method} {url} HTTP/1.1"]
    if body is not None:
        lines.append("Content-Type: application/json; type=entry")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return [*lines, "", body or ""]


def parse_batch(response: requests.Response) -> list[tuple[int, dict[str, str], str]]:
    """(status, headers, body) for every operation of a batch response, change sets flattened."""
    return _parse(response.content.decode(), response.headers["Content-Type"])


def _parse(text: str, content_type: str) -> list[tuple[int, dict[str, str], str]]:
    boundary = re.search(r"boundary=([^;\s]+)", content_type).group(1).strip('"')
    out: list[tuple[int, dict[str, str], str]] = []
    for chunk in text.split(f"--{boundary}")[1:]:
        if chunk.startswith("--"):
            break
        head, _, payload = chunk.strip(CRLF).partition(CRLF + CRLF)
        if "multipart/mixed" in head:
            inner_type = next(line for line in head.split(CRLF) if "multipart/mixed" in line)
            out += _parse(payload, inner_type)
            continue
        status_line, _, rest = payload.partition(CRLF)
        header_block, _, body = rest.partition(CRLF + CRLF)
        lines = [*head.split(CRLF), *header_block.split(CRLF)]  # MIME headers carry Content-ID
        headers = dict(line.split(": ", 1) for line in lines if ": " in line)
        out.append((int(status_line.split()[1]), headers, body.strip()))
    return out


def error_of(response: requests.Response) -> tuple[str, str]:
    error = response.json()["error"]
    return error["code"], error["message"]


# ---- authentication -----------------------------------------------------------------------------


def test_missing_token_gets_401_with_the_bearer_challenge_naming_authority_and_resource(dv, entra):
    # Given no Authorization header
    # When calling the Web API
    response = dv.http.get(dv.api + "accounts")
    # Then (authenticate-oauth.md; the challenge clients use for tenant discovery):
    # 401, an empty body, WWW-Authenticate: Bearer authorization_uri=<authority>/<tenant>/oauth2/authorize
    assert response.status_code == 401
    assert response.content == b""
    challenge = response.headers["WWW-Authenticate"]
    assert challenge == (
        f"Bearer authorization_uri={entra.base_url}/{dv.peer.issuer.tenant_id}/oauth2/authorize, "
        f"resource_id={dv.peer.base_url}/"
    )


def test_token_for_another_audience_or_expired_is_refused(dv, issuer, test_client):
    # Given tokens for the wrong resource and an expired one (audience must be the environment URL)
    wrong = issuer.issue(test_client["clientId"], "https://other.crm.dynamics.com")
    expired = issuer.issue(test_client["clientId"], dv.peer.base_url, lifetime=-30)
    for token in (wrong, expired):
        # When each is presented
        response = dv.http.get(dv.api + "accounts", headers={"Authorization": f"Bearer {token}"})
        # Then 401 with the challenge
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")


def test_audience_with_trailing_slash_is_accepted(dv, issuer, test_client):
    # Given a token whose audience is the environment URL with a trailing slash
    token = issuer.issue(test_client["clientId"], dv.peer.base_url + "/")
    # When it is used
    response = dv.http.get(dv.api + "WhoAmI", headers={"Authorization": f"Bearer {token}"})
    # Then it is accepted (both spellings are the environment's resource)
    assert response.status_code == 200


def test_app_becomes_an_application_user_that_stamps_its_writes(dv, test_client):
    # Given an app calling for the first time (authenticate-oauth.md: server-to-server needs an
    # application user bound to the app registration)
    whoami = dv.request("GET", "WhoAmI").json()
    # When it creates a row
    dv.request(
        "POST", "accounts", json={"name": "Stamped", "accountnumber": "S-1"}
    ).raise_for_status()
    # Then a systemusers row carries its applicationid, and the row names it as creator/modifier
    users = [u for u in dv.records("systemusers") if u["applicationid"] == test_client["clientId"]]
    assert [u["systemuserid"] for u in users] == [whoami["UserId"]]
    row = dv.request("GET", "accounts(accountnumber='S-1')").json()
    assert row["_createdby_value"] == row["_modifiedby_value"] == whoami["UserId"]
    assert row["createdon"].endswith("Z")
    assert int(row["versionnumber"]) > 0
    assert row["@odata.etag"] == f'W/"{row["versionnumber"]}"'


# ---- create, retrieve, update, upsert, delete ---------------------------------------------------


def test_post_creates_with_204_and_odata_entityid(dv):
    # webapi/create-entity-web-api.md: 204 No Content with OData-EntityId
    response = dv.request("POST", "accounts", json={"name": "Contoso", "accountnumber": "A-1"})
    assert response.status_code == 204
    entity_id = response.headers["OData-EntityId"]
    assert re.fullmatch(re.escape(dv.api) + r"accounts\([0-9a-f-]{36}\)", entity_id)
    assert dv.request("GET", entity_id).json()["name"] == "Contoso"


def test_post_with_return_representation_answers_201_and_the_selected_columns(dv):
    # create-entity-web-api.md "Create with data returned": Prefer: return=representation -> 201
    response = dv.request(
        "POST",
        "accounts?$select=name,accountnumber",
        json={"name": "Rep", "accountnumber": "R-1"},
        headers={"Prefer": "return=representation"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["@odata.context"].endswith("$metadata#accounts(name,accountnumber)/$entity")
    assert {k for k in body if not k.startswith("@")} == {"name", "accountnumber", "accountid"}
    assert response.headers["Preference-Applied"] == "return=representation"


def test_alternate_key_with_a_quote_character_round_trips(dv):
    # OData literals double a single quote (protocols.md); use-alternate-key-reference-record.md
    dv.request(
        "PATCH", "accounts(accountnumber='O''Brien')", json={"name": "O'Brien Ltd"}
    ).raise_for_status()
    row = dv.request("GET", "accounts(accountnumber='O''Brien')").json()
    assert row["accountnumber"] == "O'Brien"
    assert row["name"] == "O'Brien Ltd"


def test_composite_alternate_key_with_string_and_integer_parts(dv):
    # use-alternate-key-reference-record.md: multi-part keys (k1='a',k2=2)
    url = "contoso_legacyorderlines(contoso_ordernumber='0000123456',contoso_linenumber=10)"
    assert dv.request("PATCH", url, json={"contoso_sku": "RTU-100"}).status_code == 204
    row = dv.request("GET", url).json()
    assert (row["contoso_ordernumber"], row["contoso_linenumber"], row["contoso_sku"]) == (
        "0000123456",
        10,
        "RTU-100",
    )
    # the primary key form addresses the same row
    by_id = dv.request(
        "GET",
        f"contoso_legacyorderlines(contoso_legacyorderlineid={row['contoso_legacyorderlineid']})",
    )
    assert by_id.json()["contoso_sku"] == "RTU-100"


def test_missing_rows_are_404_with_the_documented_codes(dv):
    # perform-conditional-operations-using-web-api.md: "account With Id = ... Does Not Exist";
    # web-service-error-codes: RecordNotFoundByEntityKey 0x80060891 for alternate keys
    missing = uuid.uuid4()
    by_id = dv.request("GET", f"accounts({missing})")
    assert by_id.status_code == 404
    assert error_of(by_id) == ("0x80040217", f"account With Id = {missing} Does Not Exist")
    by_key = dv.request("GET", "accounts(accountnumber='nope')")
    assert by_key.status_code == 404
    assert error_of(by_key) == (
        "0x80060891",
        "A record with the specified key values does not exist in account entity",
    )


def test_key_columns_that_are_not_a_defined_key_are_refused(dv):
    # web-service-error-codes: EntityKeyNotDefined 0x80060890
    response = dv.request("GET", "accounts(name='Contoso')")
    assert response.status_code == 400
    assert error_of(response)[0] == "0x80060890"


def test_duplicate_alternate_key_on_create_is_412_0x80040237(dv):
    # duplicate keys answer 412 "A record with matching key values already exists." (0x80040237);
    # keys compare case-insensitively like Dataverse's SQL collation
    dv.request(
        "POST", "accounts", json={"name": "One", "accountnumber": "DUP-1"}
    ).raise_for_status()
    response = dv.request("POST", "accounts", json={"name": "Two", "accountnumber": "dup-1"})
    assert response.status_code == 412
    assert error_of(response) == ("0x80040237", "A record with matching key values already exists.")


def test_patch_without_conditions_creates_then_updates_with_204(dv):
    # use-upsert-insert-update-record.md: 204 + OData-EntityId either way
    url = "accounts(accountnumber='U-1')"
    created = dv.request("PATCH", url, json={"name": "First"})
    updated = dv.request("PATCH", url, json={"name": "Second"})
    assert created.status_code == updated.status_code == 204
    assert created.headers["OData-EntityId"] == updated.headers["OData-EntityId"] == dv.api + url
    assert [r["name"] for r in dv.records("accounts")] == ["Second"]


def test_patch_with_return_representation_is_201_on_create_and_200_on_update(dv):
    # use-upsert-insert-update-record.md "Create with upsert and return=representation"
    url = "accounts(accountnumber='U-2')?$select=accountid"
    prefer = {"Prefer": "return=representation"}
    first = dv.request("PATCH", url, json={"name": "x"}, headers=prefer)
    second = dv.request("PATCH", url, json={"name": "y"}, headers=prefer)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["accountid"] == second.json()["accountid"]
    assert second.headers["ETag"] == second.json()["@odata.etag"]


def test_if_match_star_prevents_create(dv):
    # perform-conditional-operations-using-web-api.md "Prevent create in upsert": 404
    response = dv.request(
        "PATCH", f"accounts({uuid.uuid4()})", json={"name": "x"}, headers={"If-Match": "*"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["message"].endswith("Does Not Exist")
    assert dv.records("accounts") == []


def test_if_none_match_star_on_existing_is_412(dv):
    # perform-conditional-operations-using-web-api.md "Prevent update in upsert": 412
    url = "accounts(accountnumber='C-1')"
    dv.request("PATCH", url, json={"name": "orig"}).raise_for_status()
    response = dv.request("PATCH", url, json={"name": "changed"}, headers={"If-None-Match": "*"})
    assert response.status_code == 412
    assert error_of(response) == ("0x80040237", "A record with matching key values already exists.")
    assert dv.request("GET", url).json()["name"] == "orig"


def test_stale_row_version_in_if_match_is_412_and_current_one_succeeds(dv):
    # perform-conditional-operations-using-web-api.md "Apply optimistic concurrency on update"
    url = "accounts(accountnumber='C-2')"
    dv.request("PATCH", url, json={"name": "v1"}).raise_for_status()
    etag = dv.request("GET", url).json()["@odata.etag"]
    dv.request("PATCH", url, json={"name": "v2"}).raise_for_status()
    stale = dv.request("PATCH", url, json={"name": "v3"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert error_of(stale) == (
        "0x80060882",
        "The version of the existing record doesn't match the RowVersion property provided.",
    )
    current = dv.request("GET", url).json()["@odata.etag"]
    assert (
        dv.request("PATCH", url, json={"name": "v3"}, headers={"If-Match": current}).status_code
        == 204
    )
    stale_delete = dv.request("DELETE", url, headers={"If-Match": etag})
    assert stale_delete.status_code == 412


def test_if_none_match_etag_on_get_answers_304_when_unchanged(dv):
    # perform-conditional-operations-using-web-api.md "Conditional retrievals"
    url = "accounts(accountnumber='C-3')"
    dv.request("PATCH", url, json={"name": "same"}).raise_for_status()
    etag = dv.request("GET", url).json()["@odata.etag"]
    assert dv.request("GET", url, headers={"If-None-Match": etag}).status_code == 304


def test_key_values_in_the_body_are_dropped_on_update_and_used_on_create(dv):
    # use-upsert-insert-update-record.md: on update the URL's key values win (the body's are
    # removed); on create the body's key values are used even when they differ
    dv.request(
        "PATCH", "accounts(accountnumber='K-1')", json={"name": "a", "accountnumber": "K-1"}
    ).raise_for_status()
    dv.request(
        "PATCH", "accounts(accountnumber='K-1')", json={"name": "b", "accountnumber": "K-9"}
    ).raise_for_status()
    assert [(r["accountnumber"], r["name"]) for r in dv.records("accounts")] == [("K-1", "b")]
    dv.request(
        "PATCH", "accounts(accountnumber='K-2')", json={"name": "c", "accountnumber": "K-3"}
    ).raise_for_status()
    assert sorted(r["accountnumber"] for r in dv.records("accounts")) == ["K-1", "K-3"]


def test_lookups_bind_by_key_or_id_and_read_back_as_value_properties(dv):
    # create-entity-web-api.md "Associate table rows on create": <nav>@odata.bind;
    # web-api-client-errors.md: customer lookups bind through parentcustomerid_account
    dv.request("PATCH", "accounts(accountnumber='L-1')", json={"name": "Parent"}).raise_for_status()
    account_id = dv.request("GET", "accounts(accountnumber='L-1')").json()["accountid"]
    dv.request(
        "PATCH",
        "contacts(contoso_contactnumber='P-1')",
        json={
            "lastname": "Key",
            "parentcustomerid_account@odata.bind": "/accounts(accountnumber='L-1')",
        },
    ).raise_for_status()
    dv.request(
        "PATCH",
        "contacts(contoso_contactnumber='P-2')",
        json={"lastname": "Id", "parentcustomerid_account@odata.bind": f"accounts({account_id})"},
    ).raise_for_status()
    rows = dv.request(
        "GET",
        "contacts?$select=lastname,_parentcustomerid_value",
        headers={"Prefer": 'odata.include-annotations="*"'},
    ).json()["value"]
    assert {r["_parentcustomerid_value"] for r in rows} == {account_id}
    assert {
        r["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] for r in rows
    } == {"account"}
    # the logical name is not a navigation property (web-api-client-errors.md)
    wrong = dv.request(
        "PATCH",
        "contacts(contoso_contactnumber='P-3')",
        json={"parentcustomerid@odata.bind": "/accounts(accountnumber='L-1')"},
    )
    assert wrong.status_code == 400
    assert error_of(wrong)[0] == "0x80048d19"
    assert "An undeclared property 'parentcustomerid'" in error_of(wrong)[1]
    missing = dv.request(
        "PATCH",
        "contacts(contoso_contactnumber='P-4')",
        json={"parentcustomerid_account@odata.bind": "/accounts(accountnumber='nobody')"},
    )
    assert missing.status_code == 404
    assert error_of(missing)[0] == "0x80060891"


def test_delete_by_key_then_again_is_404(dv):
    # update-delete-entities-using-web-api.md "Basic delete": 204
    dv.request("PATCH", "accounts(accountnumber='D-1')", json={"name": "x"}).raise_for_status()
    assert dv.request("DELETE", "accounts(accountnumber='D-1')").status_code == 204
    again = dv.request("DELETE", "accounts(accountnumber='D-1')")
    assert again.status_code == 404
    assert error_of(again)[0] == "0x80060891"


def test_delete_cascades_to_quote_lines_and_unlinks_referencing_rows(dv):
    # Given a quote with a line (parental relationship) and a contact referencing an account
    dv.request(
        "PATCH", "quotes(contoso_quotingtoolid='Q-D')", json={"name": "q"}
    ).raise_for_status()
    dv.request(
        "PATCH",
        "quotedetails(contoso_quotelinekey='Q-D|1')",
        json={"quoteid@odata.bind": "/quotes(contoso_quotingtoolid='Q-D')", "quantity": 1},
    ).raise_for_status()
    dv.request("PATCH", "accounts(accountnumber='D-2')", json={"name": "a"}).raise_for_status()
    dv.request(
        "PATCH",
        "contacts(contoso_contactnumber='D-2')",
        json={"parentcustomerid_account@odata.bind": "/accounts(accountnumber='D-2')"},
    ).raise_for_status()
    # When the parents are deleted
    dv.request("DELETE", "quotes(contoso_quotingtoolid='Q-D')").raise_for_status()
    dv.request("DELETE", "accounts(accountnumber='D-2')").raise_for_status()
    # Then the line went with its quote, and the contact keeps living without the link
    assert dv.records("quotedetails") == []
    assert [c["_parentcustomerid_value"] for c in dv.records("contacts")] == [None]


def test_payload_errors_answer_with_the_documented_codes(dv):
    # web-api-client-errors.md "Invalid property ... was found in entity": 400 0x0
    unknown = dv.request("POST", "accounts", json={"Name": "x"})
    assert unknown.status_code == 400
    assert error_of(unknown)[0] == "0x0"
    assert (
        "Invalid property 'Name' was found in entity 'Microsoft.Dynamics.CRM.account'"
        in error_of(unknown)[1]
    )
    # a value the OData reader cannot convert: 0x80048d19 "Error identified in Payload ..."
    wrong_type = dv.request("POST", "accounts", json={"name": 42})
    assert error_of(wrong_type)[0] == "0x80048d19"
    assert (
        "Cannot convert the literal '42' to the expected type 'Edm.String'"
        in error_of(wrong_type)[1]
    )
    # execute-batch-operations-using-web-api.md: too long a string is 0x80044331
    too_long = dv.request("POST", "accounts", json={"name": "x" * 161})
    assert error_of(too_long) == (
        "0x80044331",
        "A validation error occurred.  The length of the 'name' "
        "attribute of the 'account' entity exceeded the maximum allowed length of '160'.",
    )
    bad_choice = dv.request("POST", "territories", json={"contoso_level": 9})
    assert error_of(bad_choice)[0] == "0x80044331"
    bad_json = dv.request(
        "POST", "accounts", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert error_of(bad_json)[0] == "0x80048d19"
    assert dv.records("accounts") == []


def test_oversized_body_is_refused_with_413(dv, monkeypatch):
    # Given an environment that takes at most 1 KiB per request
    monkeypatch.setattr(dv.peer, "max_body_bytes", 1024)
    # When a larger body arrives
    response = dv.request("POST", "accounts", json={"name": "x" * 2000})
    # Then 413 in the Web API error shape
    assert response.status_code == 413
    assert "error" in response.json()


def test_unknown_entity_set_is_404_resource_not_found_for_the_segment(dv):
    # web-api-client-errors.md "Resource not found for the segment": 404 0x8006088a
    response = dv.request("GET", "Account")
    assert response.status_code == 404
    assert error_of(response) == ("0x8006088a", "Resource not found for the segment 'Account'.")


def test_unknown_property_in_select_is_400_code_0x0(dv):
    # web-api-client-errors.md "Could not find a property named '{property name}'"
    response = dv.request("GET", "accounts?$select=Name")
    assert response.status_code == 400
    assert error_of(response) == (
        "0x0",
        "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.account'.",
    )


def test_key_with_characters_iis_refuses_fails_in_the_path_but_works_inside_batch(dv):
    # define-alternate-keys-portal.md: key data with / # < > * % & : \ ? + breaks GET and PATCH
    response = dv.request("PATCH", "accounts(accountnumber='A%26B')", json={"name": "x"})
    assert response.status_code == 400
    assert "potentially dangerous Request.Path" in response.text
    # ...while the same operation inside $batch reaches Dataverse
    boundary = "batch_amp"
    body = batch_body(
        boundary, [("PATCH", "/api/data/v9.2/accounts(accountnumber='A%26B')", '{"name":"x"}', {})]
    )
    result = dv.request(
        "POST",
        "$batch",
        data=body.encode(),
        headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
    )
    assert [p[0] for p in parse_batch(result)] == [204]
    assert [r["accountnumber"] for r in dv.records("accounts")] == ["A&B"]


# ---- quotes -------------------------------------------------------------------------------------


def test_only_draft_quotes_are_editable(dv):
    # quote.md: Draft 0/1, Active 1/2-3; only Draft quotes can be edited
    url = "quotes(contoso_quotingtoolid='Q-1')"
    dv.request("PATCH", url, json={"name": "Draft quote"}).raise_for_status()
    assert dv.request("GET", url).json()["statecode"] == 0
    dv.request("PATCH", url, json={"statecode": 1, "statuscode": 2}).raise_for_status()
    refused = dv.request("PATCH", url, json={"name": "edited while active"})
    assert refused.status_code == 400
    assert error_of(refused) == (
        "0x8004022e",
        "The object cannot be updated because it is read-only.",
    )
    # back to Draft it is editable again
    dv.request("PATCH", url, json={"statecode": 0, "statuscode": 1}).raise_for_status()
    assert dv.request("PATCH", url, json={"name": "edited as draft"}).status_code == 204


def test_quote_state_and_status_pairs_are_validated(dv):
    url = "quotes(contoso_quotingtoolid='Q-2')"
    dv.request("PATCH", url, json={"name": "q"}).raise_for_status()
    # a status of another state
    mismatch = dv.request("PATCH", url, json={"statecode": 1, "statuscode": 4})
    assert mismatch.status_code == 400
    assert error_of(mismatch)[0] == "0x80048408"
    assert "4 is not a valid status code for state code QuoteState.Active" in error_of(mismatch)[1]
    # a draft cannot jump to Won without being activated
    jump = dv.request("PATCH", url, json={"statecode": 2, "statuscode": 4})
    assert error_of(jump)[0] == "0x80048408"
    # a new quote starts as Draft
    active_on_create = dv.request(
        "PATCH", "quotes(contoso_quotingtoolid='Q-3')", json={"statecode": 1}
    )
    assert active_on_create.status_code == 400
    # statecode alone takes that state's default status; Active -> Won is accepted
    dv.request("PATCH", url, json={"statecode": 1}).raise_for_status()
    assert dv.request("GET", url).json()["statuscode"] == 2
    dv.request("PATCH", url, json={"statecode": 2, "statuscode": 4}).raise_for_status()
    assert (
        dv.request("GET", url).json()["statecode"],
        dv.request("GET", url).json()["statuscode"],
    ) == (2, 4)


def test_lines_of_an_active_quote_cannot_change(dv):
    dv.request(
        "PATCH", "quotes(contoso_quotingtoolid='Q-4')", json={"name": "q"}
    ).raise_for_status()
    line = "quotedetails(contoso_quotelinekey='Q-4|1')"
    dv.request(
        "PATCH",
        line,
        json={"quoteid@odata.bind": "/quotes(contoso_quotingtoolid='Q-4')", "quantity": 2},
    ).raise_for_status()
    dv.request(
        "PATCH", "quotes(contoso_quotingtoolid='Q-4')", json={"statecode": 1}
    ).raise_for_status()
    changed = dv.request("PATCH", line, json={"quantity": 3})
    assert error_of(changed)[0] == "0x8004022e"
    added = dv.request(
        "PATCH",
        "quotedetails(contoso_quotelinekey='Q-4|2')",
        json={"quoteid@odata.bind": "/quotes(contoso_quotingtoolid='Q-4')", "quantity": 1},
    )
    assert error_of(added)[0] == "0x8004022e"
    assert dv.request("DELETE", line).status_code == 400


# ---- queries ------------------------------------------------------------------------------------


@pytest.fixture
def catalog(dv):
    """Accounts with varied values for filter tests."""
    dv.seed(
        {
            "accounts": [
                {
                    "name": "Alpha",
                    "accountnumber": "F-1",
                    "address1_city": "Austin",
                    "statecode": 0,
                    "contoso_creditstatus": 100000000,
                    "createdon": "2024-01-10T08:00:00Z",
                },
                {
                    "name": "bravo",
                    "accountnumber": "F-2",
                    "address1_city": "Boston",
                    "statecode": 1,
                    "statuscode": 2,
                    "createdon": "2024-02-10T08:00:00Z",
                },
                {
                    "name": "Charlie's",
                    "accountnumber": "F-3",
                    "address1_city": None,
                    "statecode": 0,
                    "contoso_creditstatus": 100000002,
                    "createdon": "2024-03-10T08:00:00Z",
                },
            ]
        }
    )
    return dv


def _names(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(r["name"] for r in response.json()["value"])


def test_filter_operators_and_literal_kinds(catalog):
    # webapi/query/filter-rows.md: comparison and logical operators, string/number/null/date literals
    q = catalog
    assert _names(q.request("GET", "accounts", params={"$filter": "name eq 'Charlie''s'"})) == [
        "Charlie's"
    ]
    assert _names(q.request("GET", "accounts", params={"$filter": "statecode ne 0"})) == ["bravo"]
    assert _names(
        q.request("GET", "accounts", params={"$filter": "contoso_creditstatus ge 100000001"})
    ) == ["Charlie's"]
    assert _names(q.request("GET", "accounts", params={"$filter": "address1_city eq null"})) == [
        "Charlie's"
    ]
    assert _names(
        q.request(
            "GET",
            "accounts",
            params={
                "$filter": "(statecode eq 1 or address1_city eq null) and not (name eq 'bravo')"
            },
        )
    ) == ["Charlie's"]
    assert _names(q.request("GET", "accounts", params={"$filter": "createdon lt 2024-02-01"})) == [
        "Alpha"
    ]
    assert _names(
        q.request(
            "GET",
            "accounts",
            params={
                "$filter": "createdon gt 2024-02-10T08:00:00Z and createdon le 2024-03-10T09:00:00+01:00"
            },
        )
    ) == ["Charlie's"]
    assert _names(
        q.request(
            "GET", "accounts", params={"$filter": "contains(name,'ar') or endswith(name,'vo')"}
        )
    ) == ["Charlie's", "bravo"]
    some_id = q.request("GET", "accounts(accountnumber='F-1')").json()["accountid"]
    assert _names(q.request("GET", "accounts", params={"$filter": f"accountid eq {some_id}"})) == [
        "Alpha"
    ]
    owner = q.request("GET", "accounts(accountnumber='F-1')").json()["_ownerid_value"]
    assert (
        len(_names(q.request("GET", "accounts", params={"$filter": f"_ownerid_value eq {owner}"})))
        == 3
    )


def test_string_comparison_is_case_insensitive(catalog):
    # Dataverse compares strings with a case-insensitive collation
    assert _names(catalog.request("GET", "accounts", params={"$filter": "name eq 'BRAVO'"})) == [
        "bravo"
    ]
    assert _names(
        catalog.request("GET", "accounts", params={"$filter": "startswith(name,'a')"})
    ) == ["Alpha"]


def test_malformed_filter_is_400_syntax_error(catalog):
    response = catalog.request("GET", "accounts", params={"$filter": "name eq"})
    assert response.status_code == 400
    code, message = error_of(response)
    assert code == "0x80060888"
    assert message.startswith("Syntax error at position")


def test_incompatible_operand_types_are_refused(catalog):
    response = catalog.request("GET", "accounts", params={"$filter": "name eq 5"})
    assert response.status_code == 400
    assert "incompatible types" in error_of(response)[1]


def test_orderby_top_and_count(catalog):
    # webapi/query/order-rows.md, limit-number-rows.md, count-rows.md
    response = catalog.request(
        "GET",
        "accounts",
        params={
            "$select": "name",
            "$orderby": "address1_city desc,name",
            "$top": "2",
            "$count": "true",
        },
    )
    body = response.json()
    assert [r["name"] for r in body["value"]] == ["bravo", "Alpha"]
    assert body["@odata.count"] == 2
    nulls_first = catalog.request(
        "GET", "accounts", params={"$select": "name", "$orderby": "address1_city"}
    ).json()
    assert nulls_first["value"][0]["name"] == "Charlie's"


def test_paging_follows_next_link_and_reports_the_page_size_applied(dv):
    # webapi/query/page-results.md: Prefer: odata.maxpagesize=N -> @odata.nextLink with $skiptoken
    dv.seed({"uoms": [{"name": f"U{i:03d}"} for i in range(25)]})
    headers = {"Prefer": "odata.maxpagesize=10"}
    names: list[str] = []
    url = "uoms?$select=name&$orderby=name"
    pages = 0
    while url:
        response = dv.request("GET", url, headers=headers)
        assert response.headers["Preference-Applied"] == "odata.maxpagesize=10"
        body = response.json()
        names += [r["name"] for r in body["value"]]
        url = body.get("@odata.nextLink")
        pages += 1
        if url:
            assert "$skiptoken=" in url
    assert pages == 3
    assert names == [f"U{i:03d}" for i in range(25)]


def test_default_page_is_5000_rows(dv):
    # page-results.md: 5,000 rows per page unless a smaller page is asked for
    dv.seed({"uoms": [{"name": f"N{i:05d}"} for i in range(5001)]})
    body = dv.request("GET", "uoms?$select=name").json()
    assert len(body["value"]) == 5000
    assert "@odata.nextLink" in body


def test_sdkmessagefilters_answer_which_tables_support_bulk_messages(dv):
    # bulk-operations.md "Availability with standard tables": a filter id when supported, else empty
    def supported(message: str, table: str) -> bool:
        response = dv.request(
            "GET",
            "sdkmessagefilters",
            params={
                "$select": "sdkmessagefilterid",
                "$filter": "sdkmessageid/name eq @message and primaryobjecttypecode eq @table",
                "@message": f"'{message}'",
                "@table": f"'{table}'",
            },
        )
        assert response.status_code == 200
        return bool(response.json()["value"])

    assert supported("UpsertMultiple", "quote")
    assert not supported("UpsertMultiple", "goal")
    assert supported("CreateMultiple", "account") and not supported("UpsertMultiple", "account")


# ---- $batch -------------------------------------------------------------------------------------


def _post_batch(dv: DataverseApi, items: list[Any], **headers: str) -> requests.Response:
    boundary = f"batch_{uuid.uuid4().hex}"
    return dv.request(
        "POST",
        "$batch",
        data=batch_body(boundary, items).encode(),
        headers={"Content-Type": f'multipart/mixed; boundary="{boundary}"', **headers},
    )


def test_batch_runs_operations_in_order_and_answers_multipart(dv):
    # execute-batch-operations-using-web-api.md "Batch requests" / "Batch responses"
    response = _post_batch(
        dv,
        [
            ("POST", "/api/data/v9.2/accounts", '{"name":"B1","accountnumber":"B-1"}', {}),
            ("PATCH", f"{dv.api}accounts(accountnumber='B-2')", '{"name":"B2"}', {}),
            ("GET", "/api/data/v9.2/accounts?$select=name&$orderby=name", None, {}),
        ],
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    parts = parse_batch(response)
    assert [p[0] for p in parts] == [204, 204, 200]
    assert "OData-EntityId" in parts[0][1]
    assert "B1" in parts[2][2] and "B2" in parts[2][2]


def test_change_set_is_atomic_and_its_failure_is_one_error_part(dv):
    # "Change sets": if any operation fails, completed ones are rolled back
    response = _post_batch(
        dv,
        [
            (
                "changeset",
                [
                    ("POST", "/api/data/v9.2/accounts", '{"name":"ok","accountnumber":"CS-1"}', {}),
                    ("POST", "/api/data/v9.2/accounts", '{"name":"' + "x" * 200 + '"}', {}),
                ],
            ),
            ("GET", "/api/data/v9.2/accounts", None, {}),
        ],
        Prefer="odata.continue-on-error",
    )
    parts = parse_batch(response)
    assert [p[0] for p in parts] == [400, 200]
    assert '"0x80044331"' in parts[0][2]
    assert '"value":[]' in parts[1][2]
    assert dv.records("accounts") == []


def test_content_id_references_work_in_url_and_body(dv):
    # "Reference URIs in an operation": $1 in a later request's URL and in @odata.bind
    response = _post_batch(
        dv,
        [
            (
                "changeset",
                [
                    (
                        "POST",
                        "/api/data/v9.2/accounts",
                        '{"name":"Ref","accountnumber":"REF-1"}',
                        {},
                    ),
                    (
                        "POST",
                        "/api/data/v9.2/contacts",
                        '{"lastname":"L","parentcustomerid_account@odata.bind":"$1"}',
                        {},
                    ),
                    ("PATCH", "$1", '{"name":"Ref renamed"}', {}),
                ],
            )
        ],
    )
    assert response.status_code == 200
    parts = parse_batch(response)
    assert [p[0] for p in parts] == [204, 204, 204]
    assert [p[1].get("Content-ID") for p in parts] == ["1", "2", "3"]
    account = dv.records("accounts")[0]
    assert account["name"] == "Ref renamed"
    assert dv.records("contacts")[0]["_parentcustomerid_value"] == account["accountid"]


def test_unknown_content_id_reference_is_400(dv):
    # "Referencing a Content-ID before it has been declared ... will return HTTP 400"
    response = _post_batch(
        dv,
        [
            (
                "changeset",
                [
                    (
                        "POST",
                        "/api/data/v9.2/contacts",
                        '{"lastname":"L","parentcustomerid_account@odata.bind":"$7"}',
                        {},
                    ),
                ],
            )
        ],
    )
    assert response.status_code == 400
    assert (
        "Content-ID Reference: '$7' does not exist in the batch context."
        in parse_batch(response)[0][2]
    )


def test_get_inside_a_change_set_is_refused(dv):
    # "GET requests are not allowed within change sets"
    response = _post_batch(dv, [("changeset", [("GET", "/api/data/v9.2/accounts", None, {})])])
    assert response.status_code == 400


def test_without_continue_on_error_the_batch_stops_at_the_first_error(dv):
    # "Handling errors": the batch error is that of the first failing request; later ones don't run
    response = _post_batch(
        dv,
        [
            ("POST", "/api/data/v9.2/accounts", '{"name":"' + "x" * 200 + '"}', {}),
            ("POST", "/api/data/v9.2/accounts", '{"name":"never","accountnumber":"N-1"}', {}),
        ],
    )
    assert response.status_code == 400
    assert [p[0] for p in parse_batch(response)] == [400]
    assert dv.records("accounts") == []


def test_with_continue_on_error_the_batch_is_200_and_each_part_has_its_status(dv):
    # "Prefer: odata.continue-on-error ... The batch request will return 200 OK"
    response = _post_batch(
        dv,
        [
            ("POST", "/api/data/v9.2/accounts", '{"name":"' + "x" * 200 + '"}', {}),
            ("POST", "/api/data/v9.2/accounts", '{"name":"runs","accountnumber":"N-2"}', {}),
        ],
        Prefer="odata.continue-on-error",
    )
    assert response.status_code == 200
    assert [p[0] for p in parse_batch(response)] == [400, 204]
    assert [r["name"] for r in dv.records("accounts")] == ["runs"]


def test_more_than_1000_operations_are_refused(dv):
    # "Batch requests can contain up to 1000 individual requests"
    items = [("GET", "/api/data/v9.2/WhoAmI", None, {})] * 1001
    response = _post_batch(dv, items)
    assert response.status_code == 400
    assert "at most 1000" in error_of(response)[1]


def test_batch_body_without_crlf_line_endings_is_refused(dv):
    # web-api-client-errors.md "Stream was not readable": non-CRLF line endings fail with 0x80048d19
    body = batch_body("batch_lf", [("GET", "/api/data/v9.2/WhoAmI", None, {})]).replace(CRLF, "\n")
    response = dv.request(
        "POST",
        "$batch",
        data=body.encode(),
        headers={"Content-Type": "multipart/mixed; boundary=batch_lf"},
    )
    assert response.status_code == 400
    assert error_of(response)[0] == "0x80048d19"
    assert "Stream was not readable" in error_of(response)[1]


# ---- bulk messages ------------------------------------------------------------------------------


def _targets(n: int, prefix: str = "BK", bad: set[int] | None = None) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        rows.append(
            {
                "@odata.type": "Microsoft.Dynamics.CRM.quote",
                "@odata.id": f"quotes(contoso_quotingtoolid='{prefix}-{i}')",
                "name": ("x" * 400) if bad and i in bad else f"Quote {i}",
                "totalamount": Decimal("1234.5678") if i == 0 else i,
            }
        )
    return rows


def test_upsertmultiple_creates_then_updates_by_alternate_key(dv):
    # webapi/reference/upsertmultiple: Targets with @odata.id "<set>(<key>='v')" -> 204
    response = dv.request(
        "POST",
        "quotes/Microsoft.Dynamics.CRM.UpsertMultiple",
        data=_json({"Targets": _targets(3)}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 204
    again = _targets(3)
    again[1]["name"] = "renamed"
    assert (
        dv.request(
            "POST",
            "quotes/Microsoft.Dynamics.CRM.UpsertMultiple",
            data=_json({"Targets": again}),
            headers={"Content-Type": "application/json"},
        ).status_code
        == 204
    )
    rows = {r["contoso_quotingtoolid"]: r for r in dv.records("quotes")}
    assert len(rows) == 3
    assert rows["BK-1"]["name"] == "renamed"
    assert rows["BK-0"]["totalamount"] == 1234.5678


def test_createmultiple_returns_ids_and_updatemultiple_answers_204(dv):
    # bulk-operations.md CreateMultiple -> 200 {"Ids": [...]}, UpdateMultiple -> 204
    created = dv.request(
        "POST",
        "territories/Microsoft.Dynamics.CRM.CreateMultiple",
        json={
            "Targets": [
                {
                    "@odata.type": "Microsoft.Dynamics.CRM.territory",
                    "name": "T1",
                    "contoso_territorycode": "T1",
                },
                {
                    "@odata.type": "Microsoft.Dynamics.CRM.territory",
                    "name": "T2",
                    "contoso_territorycode": "T2",
                },
            ]
        },
    )
    assert created.status_code == 200
    ids = created.json()["Ids"]
    assert created.json()["@odata.context"].endswith(
        "$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse"
    )
    updated = dv.request(
        "POST",
        "territories/Microsoft.Dynamics.CRM.UpdateMultiple",
        json={
            "Targets": [
                {
                    "@odata.type": "Microsoft.Dynamics.CRM.territory",
                    "territoryid": ids[0],
                    "name": "T1 renamed",
                }
            ]
        },
    )
    assert updated.status_code == 204
    missing = dv.request(
        "POST",
        "territories/Microsoft.Dynamics.CRM.UpdateMultiple",
        json={
            "Targets": [
                {
                    "@odata.type": "Microsoft.Dynamics.CRM.territory",
                    "territoryid": str(uuid.uuid4()),
                    "name": "x",
                }
            ]
        },
    )
    # bulk-operations.md "Contact With Ids = <guid> Do Not Exist"
    assert "With Ids = " in error_of(missing)[1]
    assert sorted(r["name"] for r in dv.records("territories")) == ["T1 renamed", "T2"]


def test_bulk_message_on_a_table_without_it_is_0x80040800(dv):
    # web-service-error-codes: SdkEntityDoesNotSupportMessage 0x80040800
    for table, entity_set in (("account", "accounts"), ("goal", "goals")):
        response = dv.request(
            "POST", f"{entity_set}/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": []}
        )
        assert response.status_code == 400
        assert error_of(response) == (
            "0x80040800",
            f"The 'UpsertMultiple' method does not support entities of type '{table}'. "
            "MessageProcessorCache returned MessageProcessor.Empty. ",
        )


def test_one_failing_row_rolls_back_the_whole_request_and_is_named(dv):
    # bulk-operations.md "On Error behavior with standard tables": all operations roll back
    response = dv.request(
        "POST",
        "quotes/Microsoft.Dynamics.CRM.UpsertMultiple",
        data=_json({"Targets": _targets(5, bad={3})}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "0x80044331"
    assert error["target"] == "Targets[3]"
    assert dv.records("quotes") == []


def test_targets_need_odata_type_and_respect_the_size_limit(dv):
    # bulk-operations.md: "You must set the @odata.type property for each item in the Targets"
    untyped = dv.request(
        "POST",
        "quotes/Microsoft.Dynamics.CRM.UpsertMultiple",
        json={"Targets": [{"@odata.id": "quotes(contoso_quotingtoolid='X')", "name": "x"}]},
    )
    assert untyped.status_code == 400
    assert error_of(untyped)[0] == "0x80048d19"
    dv.settings(maxBulkTargets=2)
    too_many = dv.request(
        "POST",
        "quotes/Microsoft.Dynamics.CRM.UpsertMultiple",
        data=_json({"Targets": _targets(3)}),
        headers={"Content-Type": "application/json"},
    )
    assert too_many.status_code == 400
    assert "exceeds the limit of 2" in error_of(too_many)[1]


def _json(payload: Any) -> bytes:
    return json.dumps(payload, default=float).encode()


# ---- change tracking ----------------------------------------------------------------------------


def test_track_changes_returns_rows_and_a_delta_link_then_only_changes(dv):
    # use-change-tracking-synchronize-data-external-systems.md
    dv.seed(
        {
            "accounts": [
                {"name": "keep", "accountnumber": "T-1"},
                {"name": "change", "accountnumber": "T-2"},
                {"name": "drop", "accountnumber": "T-3"},
            ]
        }
    )
    first = dv.request(
        "GET", "accounts?$select=name,accountnumber", headers={"Prefer": "odata.track-changes"}
    )
    assert first.status_code == 200
    assert first.headers["Preference-Applied"] == "odata.track-changes"
    body = first.json()
    assert len(body["value"]) == 3
    delta_link = body["@odata.deltaLink"]
    assert "$deltatoken=" in delta_link and "$select=name,accountnumber" in delta_link
    # When rows change, appear and disappear
    dv.request(
        "PATCH", "accounts(accountnumber='T-2')", json={"name": "changed"}
    ).raise_for_status()
    dv.request("PATCH", "accounts(accountnumber='T-4')", json={"name": "new"}).raise_for_status()
    dropped = dv.request("GET", "accounts(accountnumber='T-3')").json()["accountid"]
    dv.request("DELETE", "accounts(accountnumber='T-3')").raise_for_status()
    delta = dv.request("GET", delta_link).json()
    # Then only the changes come back: full rows for new/updated, $deletedEntity for deletions
    assert delta["@odata.context"].endswith("$metadata#accounts(name,accountnumber)/$delta")
    upserts = [v for v in delta["value"] if "$deletedEntity" not in v.get("@odata.context", "")]
    deletions = [v for v in delta["value"] if "$deletedEntity" in v.get("@odata.context", "")]
    assert sorted(v["name"] for v in upserts) == ["changed", "new"]
    assert deletions == [
        {
            "@odata.context": f"{dv.api}$metadata#accounts/$deletedEntity",
            "id": dropped,
            "reason": "deleted",
        }
    ]
    # and the next delta link starts after them
    assert dv.request("GET", delta["@odata.deltaLink"]).json()["value"] == []


def test_track_changes_pages_the_initial_read_and_the_deltas(dv):
    dv.seed({"accounts": [{"name": f"P{i}", "accountnumber": f"P-{i}"} for i in range(7)]})
    prefer = {"Prefer": "odata.track-changes,odata.maxpagesize=3"}
    seen: list[str] = []
    url: str | None = "accounts?$select=name"
    delta_link = None
    while url:
        body = dv.request("GET", url, headers=prefer).json()
        seen += [v["name"] for v in body["value"]]
        url = body.get("@odata.nextLink")
        delta_link = body.get("@odata.deltaLink", delta_link)
    assert sorted(seen) == sorted(f"P{i}" for i in range(7))
    for i in range(4):
        dv.request(
            "PATCH", f"accounts(accountnumber='P-{i}')", json={"name": f"Q{i}"}
        ).raise_for_status()
    changed: list[str] = []
    url = delta_link
    while url:
        body = dv.request("GET", url, headers=prefer).json()
        changed += [v["name"] for v in body["value"]]
        url = body.get("@odata.nextLink")
    assert sorted(changed) == ["Q0", "Q1", "Q2", "Q3"]


def test_filter_orderby_and_top_are_refused_with_track_changes(dv):
    # "Query options not supported in Change Tracking Web API request"
    for option in ("$filter=name eq 'a'", "$orderby=name", "$top=1"):
        response = dv.request(
            "GET", f"accounts?$select=name&{option}", headers={"Prefer": "odata.track-changes"}
        )
        assert response.status_code == 400
        assert "isn't supported when Change Tracking is enabled" in error_of(response)[1]


def test_table_without_change_tracking_is_refused(dv):
    # web-service-error-codes: ChangeTrackingNotEnabledForEntity 0x80072491
    response = dv.request(
        "GET", "contacts?$select=lastname", headers={"Prefer": "odata.track-changes"}
    )
    assert response.status_code == 400
    assert error_of(response) == ("0x80072491", "Entity contact isn't enabled for change tracking.")


def test_expired_or_unknown_delta_tokens_are_refused_with_0x80044352(dv):
    # change tracking: tokens expire (7 days by default); ExpiredVersionStamp 0x80044352
    link = dv.request(
        "GET", "accounts?$select=name", headers={"Prefer": "odata.track-changes"}
    ).json()["@odata.deltaLink"]
    assert dv.request("GET", link).status_code == 200
    expired_message = (
        "0x80044352",
        "Version stamp associated with the client has expired. Please perform a full sync.",
    )
    # When the control surface expires every token
    dv.http.post(f"{dv.peer.base_url}/_sandbox/expire-delta-tokens").raise_for_status()
    assert error_of(dv.request("GET", link)) == expired_message
    # When tokens may be at most 0 seconds old
    fresh = dv.request(
        "GET", "accounts?$select=name", headers={"Prefer": "odata.track-changes"}
    ).json()["@odata.deltaLink"]
    dv.seed({"_settings": [{"deltaTokenMaxAgeSeconds": 0}]})
    time.sleep(0.01)
    assert error_of(dv.request("GET", fresh)) == expired_message
    # An unknown token
    assert (
        error_of(dv.request("GET", "accounts?$select=name&$deltatoken=1!01/01/2020 00:00:00"))
        == expired_message
    )


# ---- service protection -------------------------------------------------------------------------


def test_every_response_carries_dop_hint_and_remaining_budget_headers(dv):
    # send-parallel-requests.md (x-ms-dop-hint), api-limits.md (x-ms-ratelimit-* headers)
    dv.settings(dopHint=6)
    response = dv.request("GET", "WhoAmI")
    assert response.headers["x-ms-dop-hint"] == "6"
    assert int(response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"]) == 5999
    assert float(response.headers["x-ms-ratelimit-time-remaining-xrm-requests"]) > 0


def test_request_budget_exceeded_answers_429_with_retry_after_and_0x80072322(dv):
    # api-limits.md "Number of requests": 429, Retry-After seconds, 0x80072322
    dv.settings(requestLimit=3, windowSeconds=60)
    statuses = [dv.request("GET", "WhoAmI").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    throttled = dv.request("GET", "WhoAmI")
    assert error_of(throttled) == (
        "0x80072322",
        "Number of requests exceeded the limit of 3 over time window of 60 seconds.",
    )
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60


def test_concurrent_requests_over_the_limit_are_refused_with_0x80072326(dv):
    # api-limits.md "Concurrent requests": exceeding it returns an error immediately
    # Given one concurrent request allowed, each taking a while to execute
    dv.settings(concurrencyLimit=1, executionDelayMs=1500, throttleRetryAfterSeconds=0)
    start = threading.Barrier(2)
    answers: list[requests.Response] = []

    def call() -> None:
        start.wait()
        answers.append(dv.request("GET", "WhoAmI"))

    # When two requests arrive together
    workers = [threading.Thread(target=call) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    # Then one runs and the other is refused at once
    assert sorted(a.status_code for a in answers) == [200, 429]
    refused = next(a for a in answers if a.status_code == 429)
    assert error_of(refused) == (
        "0x80072326",
        "Number of concurrent requests exceeded the limit of 1.",
    )


def test_execution_time_budget_exceeded_answers_0x80072321(dv):
    # api-limits.md "Execution time": combined execution time in the window
    dv.settings(executionTimeLimitSeconds=0.05, executionDelayMs=60)
    assert dv.request("GET", "WhoAmI").status_code == 200
    response = dv.request("GET", "WhoAmI")
    assert response.status_code == 429
    assert error_of(response)[0] == "0x80072321"


def test_throttle_fault_uses_the_dataverse_429_shape(dv):
    dv.faults(rate429=1, retryAfterSeconds=2)
    response = dv.request("GET", "WhoAmI")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert error_of(response)[0] == "0x80072322"


# ---- control surface ----------------------------------------------------------------------------


def test_seed_by_entity_set_and_read_records(dv):
    dv.seed(
        {
            "territories": [{"name": "West", "contoso_territorycode": "W", "contoso_level": 1}],
            "goals": [
                {
                    "title": "G",
                    "contoso_goalkey": "W|2025-01",
                    "targetmoney": 100,
                    "contoso_TerritoryId@odata.bind": "/territories(contoso_territorycode='W')",
                }
            ],
        }
    )
    goal = dv.records("goals")[0]
    territory = dv.records("territories")[0]
    assert goal["_contoso_territoryid_value"] == territory["territoryid"]
    assert goal["statecode"] == 0
    bad = dv.http.post(f"{dv.peer.base_url}/_sandbox/seed", json={"nonsense": []})
    assert bad.status_code == 400


def test_settings_refuse_unknown_fields_and_bad_values(dv):
    assert (
        dv.http.put(f"{dv.peer.base_url}/_sandbox/settings", json={"bogus": 1}).status_code == 400
    )
    assert (
        dv.http.put(f"{dv.peer.base_url}/_sandbox/settings", json={"requestLimit": 0}).status_code
        == 400
    )
    assert (
        dv.http.put(
            f"{dv.peer.base_url}/_sandbox/settings", json={"bulkSupport": {"account": ["Nope"]}}
        ).status_code
        == 400
    )
