"""The dev HTTP adapter serves functions from their own binding metadata."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from sandbox import functions
from sandbox.devhost import DevHost

pytestmark = pytest.mark.integration
APP = (
    Path(__file__).resolve().parent.parent / "indexing" / "apps" / "devhost_app" / "function_app.py"
)


@pytest.fixture(scope="module")
def host():
    sent: list[tuple[str, str, object]] = []
    devhost = DevHost(
        functions.load(APP),
        function_key="fkey",
        master_key="mkey",
        on_output=lambda fn, binding, value: sent.append(
            (fn.name, binding.get("queueName"), value)
        ),
    )
    devhost.start()
    devhost.sent = sent  # type: ignore[attr-defined]
    yield devhost
    devhost.stop()


@pytest.fixture
def client():
    session = requests.Session()
    session.trust_env = False
    return session


def test_route_parameters_and_int_constraint_are_applied(host, client):
    # Given a function on items/{id:int}
    response = client.get(f"{host.base_url}/api/items/42?x=1", headers={"x-functions-key": "fkey"})
    # Then the route parameter and query reach the function
    assert response.status_code == 200
    assert response.json()["route"] == {"id": "42"}
    assert response.json()["params"] == {"x": "1"}
    # and a non-integer id does not match the route
    assert (
        client.get(
            f"{host.base_url}/api/items/abc", headers={"x-functions-key": "fkey"}
        ).status_code
        == 404
    )


def test_literal_route_wins_over_a_parameter(host, client):
    response = client.get(f"{host.base_url}/api/items/special?code=fkey")
    assert response.status_code == 200
    assert response.json()["route"] == {}


def test_optional_parameter_may_be_left_out(host, client):
    assert client.get(f"{host.base_url}/api/things/fan/parts").json()["route"] == {"name": "fan"}
    assert client.get(f"{host.base_url}/api/things/fan/parts/belt").json()["route"] == {
        "name": "fan",
        "part": "belt",
    }


def test_function_key_is_required_from_header_or_code_query(host, client):
    url = f"{host.base_url}/api/items/1"
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"x-functions-key": "wrong"}).status_code == 401
    assert client.get(url, params={"code": "fkey"}).status_code == 200
    assert client.get(url, headers={"x-functions-key": "mkey"}).status_code == 200


def test_admin_level_needs_the_master_key(host, client):
    url = f"{host.base_url}/api/admin/ping"
    assert client.post(url, headers={"x-functions-key": "fkey"}).status_code == 401
    assert client.post(url, headers={"x-functions-key": "mkey"}).status_code == 200


def test_methods_outside_the_binding_do_not_match(host, client):
    response = client.delete(f"{host.base_url}/api/items/1", headers={"x-functions-key": "fkey"})
    assert response.status_code == 404


def test_output_binding_values_reach_the_sink(host, client):
    response = client.post(
        f"{host.base_url}/api/send", data=b"hello", headers={"x-functions-key": "fkey"}
    )
    assert response.status_code == 202
    assert ("send", "outbox", "hello") in host.sent


def test_unhandled_function_error_is_an_empty_500(host, client):
    response = client.get(f"{host.base_url}/api/boom", headers={"x-functions-key": "fkey"})
    assert response.status_code == 500
    assert response.content == b""


def test_unknown_route_is_404(host, client):
    assert client.get(f"{host.base_url}/api/nope").status_code == 404
    assert client.get(f"{host.base_url}/other/items/1").status_code == 404
