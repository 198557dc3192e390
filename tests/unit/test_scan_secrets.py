"""The secret search finds what it must (plain and encoded, anywhere in a file) and reports where
without ever repeating the value, so a "found: 0" from it means something."""

from __future__ import annotations

import base64
import json
import secrets
import stat
import urllib.parse
from pathlib import Path

import pytest

from sandbox import scan_secrets, secrets_registry
from sandbox.entra import Issuer
from sandbox.scan_secrets import Scanner, encodings

pytestmark = pytest.mark.unit


def fresh_secret() -> str:
    return secrets.token_urlsafe(24)


def test_a_planted_plain_secret_is_found_at_its_line_and_column_without_repeating_it():
    # Given a log holding a secret on its third line
    secret = fresh_secret()
    text = f"first line\nsecond line\n2026 DEBUG x.y [-] got {secret} back\n"
    # When it is searched
    result = Scanner({secret: "entra-client-secret"}).scan_text(text, "app.log")
    # Then it is found once, where it is, and the report does not hold it
    assert [str(f) for f in result.findings] == ["app.log:3:24: entra-client-secret (plain)"]
    assert secret not in json.dumps(result.as_json())
    assert result.lines == 3


def test_a_secret_inside_a_basic_auth_header_is_found_at_every_byte_alignment():
    # Given a password base64-encoded after user names of three lengths (three alignments)
    secret = fresh_secret()
    lines = [
        "Authorization: Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
        for user in ("ab", "abc", "abcd")
    ]
    # When the lines are searched
    result = Scanner({secret: "configured-sap"}).scan_text("\n".join(lines), "log")
    # Then each line is a finding, by a base64 form
    assert [f.line for f in result.findings] == [1, 2, 3]
    assert all(f.encoding.startswith("base64") for f in result.findings)


def test_a_secret_percent_encoded_in_a_query_or_a_form_or_escaped_in_json_is_found():
    # Given a value with characters that every one of those encodings changes
    secret = 'p@ss w/rd+="x"&y'
    forms = [
        "GET /token?client_secret=" + urllib.parse.quote(secret, safe=""),
        "body grant_type=client_credentials&client_secret=" + urllib.parse.quote_plus(secret),
        "json " + json.dumps({"password": secret}),
    ]
    # When they are searched
    result = Scanner({secret: "secret"}).scan_text("\n".join(forms), "log")
    # Then each is found, by its encoding
    assert [(f.line, f.encoding) for f in result.findings] == [
        (1, "url"),
        (2, "form"),
        (3, "json"),
    ]


def test_a_jwt_among_thousands_of_issued_ones_is_found_and_a_clean_log_has_no_finding():
    # Given 500 JWTs the sandbox Issuer signed (they share a long header prefix)
    issuer = Issuer()
    tokens = [issuer.issue("client", "https://org.crm.dynamics.com") for _ in range(500)]
    scanner = Scanner(dict.fromkeys(tokens, "entra-jwt"))
    clean = "\n".join(f"DEBUG urllib3 GET /api/data/v9.2/accounts?$top={i} 200" for i in range(99))
    # When a clean log, and the same log with one token, are searched
    dirty = clean + f"\nDEBUG shared.http Authorization: Bearer {tokens[321]}\n"
    # Then only the token's line is found
    assert scanner.scan_text(clean, "clean").findings == []
    assert [(f.line, f.kind) for f in scanner.scan_text(dirty, "dirty").findings] == [
        (100, "entra-jwt")
    ]


def test_a_secret_cut_by_a_read_chunk_boundary_is_found_once_with_its_file_position(
    tmp_path, monkeypatch
):
    # Given a file read in 64-byte chunks, with a secret straddling the first boundary
    monkeypatch.setattr(scan_secrets, "CHUNK", 64)
    secret = fresh_secret()
    path = tmp_path / "big.log"
    prefix = "x" * 20 + "\n" + "y" * 30
    path.write_text(prefix + secret + "\n" + "z" * 200 + "\n" + secret + "\n")
    # When the file is searched
    lines, size, findings = Scanner({secret: "mainframe-token"}).scan_file(path, "big.log")
    # Then both occurrences are found, once each, at their line and column in the whole file
    assert [str(f) for f in findings] == [
        "big.log:2:31: mainframe-token (plain)",
        "big.log:4:1: mainframe-token (plain)",
    ]
    assert (lines, size) == (4, path.stat().st_size)


def test_encodings_leave_out_base64_characters_that_depend_on_the_neighbouring_bytes():
    # Given a value and its base64 forms at each alignment
    value = "0123456789abcdef"
    forms = encodings(value)
    # When the value is encoded after any prefix and with any suffix
    for prefix in ("", "a", "ab", "abc", "abcd"):
        for suffix in ("", "!", "!!"):
            encoded = base64.b64encode(f"{prefix}{value}{suffix}".encode())
            # Then one of the forms is inside the encoding
            assert any(forms[name] in encoded for name in forms if name.startswith("base64")), (
                prefix,
                suffix,
            )


def test_the_registry_keeps_issued_values_and_its_dump_round_trips_owner_readable_only(tmp_path):
    # Given values recorded as a peer records them, one too short to search for
    token = fresh_secret()
    secrets_registry.record("mainframe-token", token)
    secrets_registry.record("mainframe-token", "short")
    # When the registry is dumped and read back
    path = tmp_path / "state" / "issued-secrets.txt"
    count = secrets_registry.dump(path)
    loaded = secrets_registry.load(path)
    # Then the value is there with its kind, the short one is not, and only the owner may read
    assert loaded[token] == "mainframe-token"
    assert "short" not in loaded
    assert count == len(loaded) >= 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_issuer_records_every_token_it_signs():
    # Given the sandbox Issuer; when it signs a token
    token = Issuer().issue("client", "https://vault.azure.net")
    # Then the registry holds it as an Entra JWT
    assert secrets_registry.snapshot()[token] == "entra-jwt"


def test_the_command_line_exits_1_naming_the_place_and_2_when_nothing_is_known(tmp_path, capsys):
    # Given a log with a secret, and registry dumps with and without that secret
    secret = fresh_secret()
    log = tmp_path / "logs" / "a.log"
    log.parent.mkdir()
    log.write_text(f"ok\nleak {urllib.parse.quote(secret)}\n")
    known = tmp_path / "known.txt"
    known.write_text(f"function-key\t{secret}\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    figures = tmp_path / "figures.json"
    # When the command line searches the log's folder with each
    found = scan_secrets.main([str(log.parent), "--secrets", str(known), "--json", str(figures)])
    out = capsys.readouterr().out
    nothing_known = scan_secrets.main([str(log.parent), "--secrets", str(empty)])
    # Then a finding exits 1 and is reported by place and kind only; nothing to search for exits 2
    assert found == 1
    assert f"{log}:2:6: function-key (plain)" in out
    assert secret not in out and secret not in figures.read_text()
    assert json.loads(figures.read_text())["found"] == 1
    assert nothing_known == 2


def test_a_clean_file_exits_0_with_its_figures(tmp_path):
    # Given a log without the secret
    log = tmp_path / "a.log"
    log.write_text("one\ntwo\nthree")
    known = tmp_path / "known.txt"
    known.write_text(f"function-key\t{fresh_secret()}\n")
    figures = tmp_path / "figures.json"
    # When it is searched
    code = scan_secrets.main([str(log), "--secrets", str(known), "--json", str(figures)])
    # Then it passes, having searched three lines for one secret
    body = json.loads(figures.read_text())
    assert code == 0
    assert (body["linesScanned"], body["secretsKnown"], body["found"]) == (3, 1, 0)


def test_a_folder_is_searched_recursively_and_a_finding_names_its_file(tmp_path):
    # Given a folder with two files, one holding the secret
    secret = fresh_secret()
    (tmp_path / "a.json").write_text('{"ok": true}\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.html").write_text(f"<p>{secret}</p>\n")
    # When the folder is searched
    result = Scanner({secret: "configured-hmac"}).scan_paths([Path(tmp_path)])
    # Then both files were searched and the finding names the file it is in
    assert result.files == 2
    assert [f.source for f in result.findings] == [str(tmp_path / "sub" / "b.html")]
