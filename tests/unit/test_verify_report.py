"""``scripts/verify_report.py``: the figures of a ``make verify`` run, from pytest's JUnit XML and
the suites' ``out/verify-*.json``, into ``out/verify.json`` and docs/reliability.md."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from scripts import verify_report

pytestmark = pytest.mark.unit

MODULES = ("test_fault_soak", "test_crash_safety", "test_schemathesis", "test_secrets_in_logs")


def write_run(
    out: Path, tests: Path, *, failing: str | None = None, started: dt.datetime | None = None
) -> None:
    """A run's JUnit XML with two tests per module, the one named ``failing`` failed."""
    started = started or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)
    out.mkdir(parents=True, exist_ok=True)
    tests.mkdir(parents=True, exist_ok=True)
    cases = []
    for module in MODULES:
        (tests / f"{module}.py").write_text("")
        for n in (1, 2):
            body = '<failure message="boom"/>' if module == failing and n == 2 else ""
            cases.append(
                f'<testcase classname="tests.verify.{module}" name="test_{n}" time="1">{body}'
                "</testcase>"
            )
    failures = 1 if failing else 0
    (out / "verify-junit.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
        f'<testsuite name="pytest" errors="0" failures="{failures}" skipped="0" tests="8" '
        f'time="1260.5" timestamp="{started.astimezone().isoformat()}" hostname="ci">'
        + "".join(cases)
        + "</testsuite></testsuites>"
    )


def write_figures(out: Path, name: str, body: dict[str, object], *, age_hours: float = 0) -> None:
    path = out / f"verify-{name}.json"
    path.write_text(json.dumps(body))
    if age_hours:
        stamp = (dt.datetime.now() - dt.timedelta(hours=age_hours)).timestamp()
        os.utime(path, (stamp, stamp))


def soak_report(
    *,
    records: int = 10_000,
    faults: dict[str, dict[str, int]] | None = None,
    retries: int = 61,
    rejections: dict[str, int] | None = None,
    seconds: tuple[float, float] = (250.0, 412.7),
    lose: bool = False,
) -> dict[str, object]:
    """A soak report as ``sandbox.soak.figures_json`` writes it, from a fault-free and a faulted
    ``SoakResult`` (``lose``: the faulted run lacks a record the fault-free one has)."""
    from sandbox.soak import RetryBounds, SoakResult, compare, figures_json

    def run(faulted: bool) -> SoakResult:
        quotes = {"Q-1": {"name": "one"}, "Q-2": {"name": "two"}}
        if faulted and lose:
            del quotes["Q-2"]
        return SoakResult(
            seed=1,
            scale=records,
            faults=faulted,
            snapshot={"dataverse": {"quotes": quotes}},
            records={"quotesInDataverse": 2, "mainframeInSilver": records},
            faults_injected=(faults or {"dataverse": {"429": 40, "5xx": 12}, "sap": {"timeout": 8}})
            if faulted
            else {},
            requests={},
            slowest_answers={},
            source_records={"mainframe": records - 100, "urgentMessages": 100},
            retries={"total": retries if faulted else 0, "byPeer": {}, "hubClients": {}},
            retry_bounds=RetryBounds(),
            rejections=rejections or {"quote-push": 3},
            dead_letters=0,
            callback_conflicts=[],
            ticks={},
            failed_ticks=[],
            elapsed_seconds={
                "startup": 1.0,
                "seed": 1.0,
                "flows": seconds[faulted] - 2.0,
                "snapshot": 0.0,
                "in:dispatcher": 99.0,
            },
            settings={},
        )

    clean, faulted = run(False), run(True)
    comparison = compare(clean.snapshot, faulted.snapshot)
    report: dict[str, object] = json.loads(figures_json([clean, faulted], comparison))
    return report


def all_figures(out: Path) -> None:
    write_figures(out, "soak", soak_report())
    write_figures(out, "crash", {"killPoints": 14, "lost": 0, "duplicated": 0})
    write_figures(out, "schemathesis", {"requests": 2700, "byStatus": {"200": 2700}, "5xx": 0})
    write_figures(out, "secrets", {"demo": {"found": 0, "secretsKnown": 60, "linesScanned": 40000}})
    write_figures(
        out,
        "secrets-tests",
        {"found": 0, "secretsKnown": 25, "linesScanned": 9000, "checked": True},
    )


def test_a_complete_passing_run_gives_every_headline_figure(tmp_path):
    # Given a run in which every verify module passed and wrote its figures
    out, tests = tmp_path / "out", tmp_path / "verify"
    write_run(out, tests)
    all_figures(out)
    # When the report is built
    report = verify_report.build(out, tests)
    # Then it is complete and passed, with the figures summed across suites and breakdowns
    assert (report["passed"], report["complete"], report["problems"]) == (True, True, [])
    figures = report["figures"]
    assert figures["records"] == 10000
    assert figures["faultsInjected"] == 60
    assert figures["faultsByPeer"] == "dataverse 52 · sap 8"
    assert (figures["retries"], figures["lost"], figures["duplicated"]) == (61, 0, 0)
    assert (figures["5xx"], figures["secretsFound"], figures["killPoints"]) == (0, 0, 14)
    assert figures["secretsKnown"] == 85 and figures["logLinesSearched"] == 49000
    assert report["suites"]["soak"]["status"] == "passed"
    assert verify_report.should_rewrite(report, "auto")


def test_a_figure_file_older_than_the_run_is_not_used_and_makes_the_run_incomplete(tmp_path):
    # Given a run whose soak figures are from a day before it
    out, tests = tmp_path / "out", tmp_path / "verify"
    write_run(out, tests)
    all_figures(out)
    write_figures(out, "soak", {"records": 99, "lost": 0}, age_hours=24)
    # When the report is built
    report = verify_report.build(out, tests)
    # Then the old figures are not shown and the docs keep their last complete figures
    assert report["figures"]["records"] is None
    assert report["complete"] is False and report["passed"] is False
    assert "soak wrote no fresh verify-soak.json" in report["problems"]
    assert not verify_report.should_rewrite(report, "auto")


def test_a_module_that_did_not_run_makes_the_run_incomplete(tmp_path):
    # Given a run in which a verify module present in tests/verify/ did not run (-k)
    out, tests = tmp_path / "out", tmp_path / "verify"
    write_run(out, tests)
    all_figures(out)
    (tests / "test_new_suite.py").write_text("")
    # When the report is built
    report = verify_report.build(out, tests)
    # Then it says which, and is not complete
    assert report["problems"] == ["tests/verify/test_new_suite.py did not run"]
    assert report["complete"] is False


def test_a_complete_failed_run_is_written_to_the_docs_marked_failed(tmp_path):
    # Given a complete run in which one crash-safety test failed, and a page with the markers
    out, tests = tmp_path / "out", tmp_path / "verify"
    write_run(out, tests, failing="test_crash_safety")
    all_figures(out)
    doc = tmp_path / "reliability.md"
    doc.write_text(
        f"# Title\n\nhand-written intro\n\n{verify_report.BEGIN}\nold figures\n"
        f"{verify_report.END}\n\n## 1. Fault soak\nhand-written\n"
    )
    report = verify_report.build(out, tests)
    # When the docs are rewritten
    assert verify_report.should_rewrite(report, "auto")
    assert verify_report.rewrite_doc(report, doc)
    # Then the section shows the run as failed with its figures; the rest of the page is kept
    text = doc.read_text()
    assert "old figures" not in text
    assert "**Latest `make verify`: FAILED**" in text
    assert (
        "| lost | 0 |" in text
        and (
            "| records through the fault soak | 10,000 in 413 s (the fault-free run beside it: 250 s) |"
        )
        in text
    )
    assert "| 2. Crash safety (`tests/verify/test_crash_safety.py`) | 2 | failed |" in text
    assert text.startswith("# Title\n\nhand-written intro\n\n")
    assert text.endswith("\n\n## 1. Fault soak\nhand-written\n")
    assert report["suites"]["crash"]["failed"] == 1


def test_without_junit_no_figure_is_trusted(tmp_path):
    # Given figure files but no JUnit XML (pytest never ran)
    out, tests = tmp_path / "out", tmp_path / "verify"
    tests.mkdir()
    out.mkdir()
    all_figures(out)
    # When the report is built
    report = verify_report.build(out, tests)
    # Then nothing is reported as measured
    assert report["passed"] is False
    assert report["figures"]["secretsFound"] is None and report["figures"]["5xx"] is None
    assert "verify-junit.xml is missing: pytest did not run" in report["problems"]


def test_a_page_without_markers_is_not_touched(tmp_path):
    # Given a page without the figure markers
    doc = tmp_path / "reliability.md"
    doc.write_text("# no markers\n")
    out, tests = tmp_path / "out", tmp_path / "verify"
    write_run(out, tests)
    all_figures(out)
    # When a rewrite is attempted; then it is refused and the page unchanged
    assert not verify_report.rewrite_doc(verify_report.build(out, tests), doc)
    assert doc.read_text() == "# no markers\n"


def test_the_soak_report_gives_the_faulted_runs_figures_and_the_comparisons_losses(tmp_path):
    # Given the soak's own report of a fault-free and a faulted run that lost one record
    out, tests = tmp_path / "out", tmp_path / "verify"
    write_run(out, tests)
    all_figures(out)
    report = soak_report(
        records=10_200,
        faults={"sap": {"429": 7}, "mainframe": {"reset": 5}},
        retries=15,
        rejections={"quote-push": 2, "dataverse-load": 3},
        seconds=(200.0, 300.2),
        lose=True,
    )
    write_figures(out, "soak", report)
    # When the report is built
    figures = verify_report.build(out, tests)["figures"]
    # Then records are the source records, faults, retries and time the faulted run's (not the
    # per-flow counts or the timing breakdown summed), and the loss comes from the comparison
    assert (figures["records"], figures["faultsInjected"], figures["retries"]) == (10200, 12, 15)
    assert figures["faultsByPeer"] == "sap 7 · mainframe 5"
    assert (figures["soakElapsedSeconds"], figures["soakFaultFreeElapsedSeconds"]) == (300.2, 200)
    assert figures["rejections"] == 5
    assert (figures["lost"], figures["duplicated"]) == (1, 0)
