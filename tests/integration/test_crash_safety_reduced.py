"""Crash safety, reduced (issue 8 part 2; ``make test``): the SAP inbound batch (flow 10) is
SIGKILLed mid-page, between the bronze write and the silver commit, and mid-bulk-upsert, and
converges on the end state of an uninterrupted run; at each kill no watermark is ahead of
committed data. The full suite over every job is ``tests/verify/test_crash_safety.py``.

Jobs run in child processes with the world's settings (``tests.crash.runner``); the kills are real
SIGKILLs — from the harness while a sandbox peer holds the chosen request in flight
(``/_sandbox/hold``), or from the child itself at a named hub function (``tests.crash.hooks``;
the hub has no crash hooks). Each run uses its own Azurite account, never the session's.
"""

from __future__ import annotations

import random
import threading

import pytest
import requests

from sandbox.datagen import generate
from sandbox.world import MAINFRAME_CLIENT
from shared.adapters.state import DEFAULT_TABLE, WatermarkStore
from tests.crash.catalogue import REQUIRED_KINDS, plan
from tests.crash.checks import check_export, check_mainframe, check_sap_inbound
from tests.crash.harness import Config, context, crash_world, run_pipeline, start_run
from tests.crash.snapshot import compare

pytestmark = pytest.mark.integration

SEED = 20261122
SCALE = 100
KINDS = ("mid-page", "bronze-written-silver-not-committed", "mid-bulk-upsert")


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    with crash_world(tmp_path_factory.mktemp("crash")) as world:
        yield world


def test_sap_batch_killed_mid_page_before_silver_and_mid_upsert_converges_to_a_clean_run(worlds):
    # Given a small generated world and one kill point of each named kind, drawn from the seed
    config = Config(seed=SEED, scale=SCALE, stages=("sap_inbound",), gold=False)
    points = plan(
        random.Random(SEED),
        context(generate(SEED, SCALE), config),
        config.stages,
        len(KINDS),
        kinds=KINDS,
        only_kinds=True,
    )
    # When the batch runs uninterrupted on a fresh world, and on another fresh world it is
    # SIGKILLed at each point in turn (each kill followed by the checks and a new attempt)
    _, reference = run_pipeline(worlds, config, {}, "reference")
    crashed, state = run_pipeline(worlds, config, points, "crashed")
    # Then every point was reached and ended the child by SIGKILL
    assert [k["child"]["killedBySigkill"] for k in crashed.kills] == [True, True, True]
    assert sorted(k["kind"] for k in crashed.kills) == sorted(KINDS)
    # and at no kill point did a watermark cover data that was not committed
    assert [(k["where"], k["watermarks"]) for k in crashed.kills if k["violations"]] == []
    assert crashed.final["violations"] == 0
    # and after the re-run the world equals the uninterrupted one: nothing lost or duplicated
    comparison = compare(reference, state)
    assert comparison.equal, comparison.examples
    assert comparison.rows > 0


def test_checks_flag_watermarks_moved_past_data_no_job_committed(worlds):
    # Given a fresh world whose SAP, mainframe and Dataverse hold records no job has read
    run = start_run(worlds, Config(seed=SEED, scale=SCALE, stages=(), gold=False), "ahead")
    store = WatermarkStore(run.reader.tables.table(DEFAULT_TABLE))
    # When watermarks and a delta token are moved past them, as a job that advanced before it
    # committed would leave them
    store.reset("sap-inbound", "A_SalesOrder", "2099-01-01T00:00:00+00:00")
    store.reset("poll_mainframe", "orders", "2099-01-01T00:00:00Z")
    link = f"{run.reader.peer('dataverse')}/api/data/v9.2/accounts?$deltatoken=999999999!01/01/2099"
    store.reset("dataverse-export", "accounts", link)
    # Then each check counts every record the mark covers as not committed
    checks = [*check_sap_inbound(run.reader), *check_mainframe(run.reader)]
    checks += check_export(run.reader)
    assert {(c.job, c.entity) for c in checks} == {
        ("sap-inbound", "A_SalesOrder"),
        ("poll_mainframe", "orders"),
        ("dataverse-export", "accounts"),
    }
    for check in checks:
        assert check.covered > 0
        assert check.committed == 0
        assert check.violation_count == check.covered


def test_peer_hold_keeps_a_request_in_flight_until_released(worlds):
    # Given a fresh world's mainframe gateway and its registered API client
    run = start_run(worlds, Config(seed=SEED, scale=SCALE, stages=(), gold=False), "hold")
    world = worlds.world
    mainframe = run.reader.peer("mainframe")
    http = worlds.http
    form = {
        "grant_type": "client_credentials",
        "client_id": MAINFRAME_CLIENT,
        "client_secret": world.secret_values["mainframe"],
    }
    answers: list[object] = []

    def call() -> None:
        client = requests.Session()  # its own connection, as a separate process would have
        client.trust_env = False
        client.verify = str(world.ca_bundle)
        try:
            answers.append(
                client.post(f"{mainframe}/auth/token", data=form, timeout=30).status_code
            )
        except requests.ConnectionError as exc:
            answers.append(exc)

    def tokens() -> int:
        return len(run.reader.records("mainframe", "tokens"))

    for phase, issued, answer in (("before", 0, "dropped"), ("after", 1, 200)):
        answers.clear()
        before = tokens()
        # When the next token request is held in this phase
        rule = {"method": "POST", "path": "^/auth/token", "nth": 1, "phase": phase}
        assert http.put(f"{mainframe}/_sandbox/hold", json=rule, timeout=10).status_code == 200
        client = threading.Thread(target=call)
        client.start()
        held = http.get(f"{mainframe}/_sandbox/hold", params={"wait": "10"}, timeout=30).json()
        # Then the peer holds it: the client has no answer, and the operation ran only "after"
        assert held["held"] is True
        assert held["request"] == {"method": "POST", "path": "/auth/token"}
        assert answers == []
        assert tokens() - before == issued
        # and once released, "before" is dropped unanswered, "after" gets the answer it made
        http.delete(f"{mainframe}/_sandbox/hold", timeout=10).raise_for_status()
        client.join(30)
        assert len(answers) == 1
        assert ("dropped" if isinstance(answers[0], Exception) else answers[0]) == answer
        assert tokens() - before == issued


def test_kill_plan_is_reproducible_from_the_seed_and_reaches_every_job():
    # Given the full pipeline's catalogue for a generated world
    config = Config(seed=SEED, scale=300)
    ctx = context(generate(SEED, 300), config)
    # When twelve kill points are drawn twice with the same seed, and once with another
    first = plan(random.Random(SEED), ctx, config.stages, 12, kinds=REQUIRED_KINDS)
    again = plan(random.Random(SEED), ctx, config.stages, 12, kinds=REQUIRED_KINDS)
    other = plan(random.Random(SEED + 1), ctx, config.stages, 12, kinds=REQUIRED_KINDS)
    # Then the same seed gives the same points, another seed others
    assert first == again
    assert first != other
    # and every job has at least one, in its own progress order, twelve in all
    assert all(first[stage] for stage in config.stages)
    assert {p.kind for points in first.values() for p in points} >= set(REQUIRED_KINDS)
    assert sum(len(points) for points in first.values()) == 12
    for points in first.values():
        assert [p.position for p in points] == sorted(p.position for p in points)
