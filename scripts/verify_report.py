"""The figures of the latest ``make verify`` run: ``out/verify.json`` and docs/reliability.md.

Reads pytest's ``out/verify-junit.xml`` (which tests ran, passed and failed, per suite module) and
every ``out/verify-<suite>.json`` the suites wrote; a figure file older than the run is ignored
(that suite did not write figures this time, so its old ones would be wrong). Writes
``out/verify.json`` every time. Rewrites the figures section of ``docs/reliability.md`` (between
``<!-- verify:begin -->`` and ``<!-- verify:end -->``) only for a complete run: every verify
module under ``tests/verify/`` ran and every suite that promises figures wrote fresh ones. A
complete run that failed is written too, marked failed; an incomplete one (``-k``, a crash before
the end) leaves the page as it was.

Usage: ``python scripts/verify_report.py [--docs auto|always|never]`` (``make verify`` runs it);
exits 1 unless the run passed and was complete.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out"
DOC = ROOT / "docs" / "reliability.md"
VERIFY_TESTS = ROOT / "tests" / "verify"
BEGIN = "<!-- verify:begin -->"
END = "<!-- verify:end -->"


@dataclass(frozen=True)
class Suite:
    """A verify suite: its test module and the figure files it writes (empty: none)."""

    name: str
    title: str
    module: str
    figure_files: tuple[str, ...] = ()


SUITES = (
    Suite("soak", "1. Fault soak", "test_fault_soak", ("verify-soak.json",)),
    Suite("crash", "2. Crash safety", "test_crash_safety", ("verify-crash.json",)),
    Suite(
        "schemathesis",
        "3. Hostile input: schemathesis",
        "test_schemathesis",
        ("verify-schemathesis.json",),
    ),
    Suite(
        "secrets",
        "4. Secrets in logs",
        "test_secrets_in_logs",
        ("verify-secrets.json", "verify-secrets-tests.json"),
    ),
    Suite("browser", "Dashboard in Chromium", "test_dashboard_browser"),
)


@dataclass
class SuiteResult:
    """What one suite did in this run."""

    suite: Suite
    tests: int = 0
    failed: int = 0
    skipped: int = 0
    figures: dict[str, Any] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.tests in (0, self.skipped):
            return "not run"
        return "failed" if self.failed else "passed"

    def as_json(self) -> dict[str, Any]:
        return {
            "module": f"tests/verify/{self.suite.module}.py",
            "status": self.status,
            "tests": self.tests,
            "failed": self.failed,
            "skipped": self.skipped,
            "figures": self.figures or None,
            "staleOrMissingFigures": self.stale,
        }


def read_junit(path: Path) -> tuple[dt.datetime | None, dict[str, list[str]], dict[str, int]]:
    """(run start, outcomes by test module, totals) from pytest's JUnit XML."""
    # Our own pytest run wrote it, in out/: not untrusted input.
    root = ET.parse(path).getroot()  # noqa: S314
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return None, {}, {}
    stamp = suite.get("timestamp")
    started = dt.datetime.fromisoformat(stamp) if stamp else None
    if started is not None and started.tzinfo is None:
        started = started.astimezone()
    totals = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    totals["seconds"] = round(float(suite.get("time", 0) or 0))
    outcomes: dict[str, list[str]] = {}
    for case in suite.iter("testcase"):
        module = (case.get("classname") or "").split(".")
        name = next((part for part in module if part.startswith("test_")), "")
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        outcomes.setdefault(name, []).append(outcome)
    return started, outcomes, totals


def read_figures(path: Path, started: dt.datetime | None) -> dict[str, Any] | None:
    """A figure file's content when it exists, parses and was written during this run."""
    try:
        modified = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        body = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if started is not None and modified < started:
        return None
    return body if isinstance(body, dict) else None


def total(value: Any) -> int | None:
    """A count, or the sum of every count nested in a breakdown (by peer, by kind...)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, dict):
        parts = [total(v) for v in value.values()]
        counted = [p for p in parts if p is not None]
        return sum(counted) if counted else None
    if isinstance(value, list):
        return len(value)
    return None


def breakdown(value: Any) -> str:
    """``dataverse 412 · sap 300`` for a breakdown by its first level; empty for a plain count."""
    if not isinstance(value, dict):
        return ""
    parts = [(k, total(v)) for k, v in value.items()]
    return " · ".join(f"{k} {n:,}" for k, n in parts if n is not None)


def summed(*values: Any) -> int | None:
    counted = [n for n in (total(v) for v in values) if n is not None]
    return sum(counted) if counted else None


def build(out: Path = OUT, verify_tests: Path = VERIFY_TESTS) -> dict[str, Any]:
    """The whole report for ``out/verify.json`` from what the run left in ``out``."""
    junit = out / "verify-junit.xml"
    started: dt.datetime | None = None
    outcomes: dict[str, list[str]] = {}
    totals: dict[str, int] = {}
    problems: list[str] = []
    if junit.exists():
        started, outcomes, totals = read_junit(junit)
    else:
        # Without the run's start no figure file can be told fresh: none is used.
        started = dt.datetime.now(dt.UTC)
        problems.append(f"{junit.name} is missing: pytest did not run")
    results: dict[str, SuiteResult] = {}
    for suite in SUITES:
        result = SuiteResult(suite)
        ran = outcomes.get(suite.module, [])
        result.tests = len(ran)
        result.failed = ran.count("failed")
        result.skipped = ran.count("skipped")
        for name in suite.figure_files:
            body = read_figures(out / name, started)
            if body is None:
                result.stale.append(name)
            else:
                result.figures[name.removesuffix(".json").removeprefix("verify-")] = body
        results[suite.name] = result
    modules = sorted(p.stem for p in verify_tests.glob("test_*.py"))
    for module in modules:
        if not outcomes.get(module):
            problems.append(f"tests/verify/{module}.py did not run")
    for result in results.values():
        if result.status != "not run" and result.stale:
            problems.append(f"{result.suite.name} wrote no fresh {', '.join(result.stale)}")
    sessions = results["secrets"].figures.get("secrets-tests")
    if sessions is not None and not sessions.get("checked"):
        problems.append("the verify session's own log search had nothing to search for or in")
    claimed = {name for suite in SUITES for name in suite.figure_files}
    others = {
        path.stem.removeprefix("verify-"): body
        for path in sorted(out.glob("verify-*.json"))
        if path.name not in claimed and (body := read_figures(path, started)) is not None
    }
    failed = totals.get("failures", 0) + totals.get("errors", 0)
    passed = bool(totals.get("tests")) and failed == 0 and not problems
    return {
        "passed": passed,
        "complete": not problems,
        "problems": problems,
        "date": (started or dt.datetime.now(dt.UTC))
        .astimezone(dt.UTC)
        .isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
        },
        "tests": totals,
        "figures": headline(results),
        "suites": {name: r.as_json() for name, r in results.items()},
        "otherFigures": others,
    }


def soak_figures(body: dict[str, Any]) -> dict[str, Any]:
    """The soak's headline figures from the report ``sandbox.soak.figures_json`` writes: source
    records, faults, retries, rejections and elapsed seconds of the faulted run; lost and
    duplicated from the comparison with the fault-free run. A file without ``runs`` is taken as
    flat figures."""
    if "runs" not in body:
        return body
    retries = body.get("retries")
    rejections = body.get("rejections")
    elapsed = body.get("elapsedSeconds")
    return {
        "records": body.get("records"),
        "faultsInjected": body.get("faultsInjected"),
        "retries": retries.get("total") if isinstance(retries, dict) else retries,
        "rejections": rejections.get("faulted") if isinstance(rejections, dict) else rejections,
        "elapsed": elapsed.get("faulted") if isinstance(elapsed, dict) else elapsed,
        "elapsedFaultFree": elapsed.get("faultFree") if isinstance(elapsed, dict) else None,
        "lost": body.get("lost"),
        "duplicated": body.get("duplicated"),
    }


def headline(results: dict[str, SuiteResult]) -> dict[str, Any]:
    """The figures the issue asks for, ``None`` where the suite that measures one did not run."""
    soak = soak_figures(results["soak"].figures.get("soak", {}))
    crash = results["crash"].figures.get("crash", {})
    schema = results["schemathesis"].figures.get("schemathesis", {})
    demo = results["secrets"].figures.get("secrets", {}).get("demo", {})
    sessions = results["secrets"].figures.get("secrets-tests", {})
    return {
        "records": total(soak.get("records")),
        "faultsInjected": total(soak.get("faultsInjected")),
        "faultsByPeer": breakdown(soak.get("faultsInjected")),
        "retries": total(soak.get("retries")),
        "rejections": total(soak.get("rejections")),
        "soakElapsedSeconds": soak.get("elapsed", soak.get("elapsedSeconds")),
        "soakFaultFreeElapsedSeconds": soak.get("elapsedFaultFree"),
        "lost": summed(soak.get("lost"), crash.get("lost")),
        "duplicated": summed(soak.get("duplicated"), crash.get("duplicated")),
        "5xx": summed(schema.get("5xx"), soak.get("5xx")),
        "secretsFound": summed(demo.get("found"), sessions.get("found")),
        "secretsKnown": summed(demo.get("secretsKnown"), sessions.get("secretsKnown")),
        "logLinesSearched": summed(demo.get("linesScanned"), sessions.get("linesScanned")),
        "schemathesisRequests": total(schema.get("requests")),
        "killPoints": total(crash.get("killPoints")),
    }


def _n(value: Any) -> str:
    if value is None:
        return "not run"
    if isinstance(value, int | float):
        return f"{value:,}"
    return str(value)


def render(report: dict[str, Any]) -> str:
    """The Markdown between the markers."""
    f = report["figures"]
    machine = report["machine"]
    tests = report["tests"]
    when = dt.datetime.fromisoformat(report["date"]).strftime("%Y-%m-%d %H:%M UTC")
    verdict = "passed" if report["passed"] else "FAILED" if report["complete"] else "INCOMPLETE"
    faults = _n(f["faultsInjected"]) + (f" ({f['faultsByPeer']})" if f["faultsByPeer"] else "")
    elapsed = f["soakElapsedSeconds"]
    records = _n(f["records"]) + (
        f" in {elapsed:,.0f} s" if isinstance(elapsed, int | float) else ""
    )
    fault_free = f.get("soakFaultFreeElapsedSeconds")
    if isinstance(fault_free, int | float):
        records += f" (the fault-free run beside it: {fault_free:,.0f} s)"
    lines = [
        BEGIN,
        "<!-- written by scripts/verify_report.py from the latest complete `make verify`; "
        "edits here are overwritten -->",
        "",
        f"**Latest `make verify`: {verdict}**, {when}, on {machine['cores']} cores, Python "
        f"{machine['python']} ({machine['platform']}): {tests.get('tests', 0)} tests, "
        f"{tests.get('failures', 0) + tests.get('errors', 0)} failed, "
        f"{tests.get('seconds', 0) // 60} min.",
        "",
        "| Figure | Latest run |",
        "|---|---|",
        f"| records through the fault soak | {records} |",
        f"| faults injected | {faults} |",
        f"| retries | {_n(f['retries'])} |",
        f"| rejections recorded | {_n(f['rejections'])} |",
        f"| lost | {_n(f['lost'])} |",
        f"| duplicated | {_n(f['duplicated'])} |",
        f"| 5xx answers | {_n(f['5xx'])} |",
        f"| secrets found | {_n(f['secretsFound'])} (searched for {_n(f['secretsKnown'])} issued "
        f"secrets and tokens in {_n(f['logLinesSearched'])} lines) |",
        f"| schemathesis requests | {_n(f['schemathesisRequests'])} |",
        f"| crash kill points | {_n(f['killPoints'])} |",
        "",
        "| Suite | Tests | Result |",
        "|---|---|---|",
    ]
    for suite in SUITES:
        entry = report["suites"][suite.name]
        lines.append(
            f"| {suite.title} (`{entry['module']}`) | {entry['tests']} | {entry['status']} |"
        )
    lines.append(END)
    return "\n".join(lines)


def rewrite_doc(report: dict[str, Any], doc: Path = DOC) -> bool:
    """Replace the marked section of ``doc``; False when the markers are missing."""
    text = doc.read_text("utf-8")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return False
    doc.write_text(text[:start] + render(report) + text[end + len(END) :], "utf-8")
    return True


def should_rewrite(report: dict[str, Any], mode: str) -> bool:
    """Whether docs/reliability.md gets this run's figures: a complete run, passed or failed."""
    return mode == "always" or (mode == "auto" and bool(report["complete"]))


def main(argv: list[str] | None = None) -> int:
    """Write out/verify.json and, as ``--docs`` says, the figures of docs/reliability.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--docs",
        choices=("auto", "always", "never"),
        default="auto",
        help="rewrite docs/reliability.md: for a complete run (auto), always, or never",
    )
    args = parser.parse_args(argv)
    report = build()
    OUT.mkdir(exist_ok=True)
    (OUT / "verify.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    f = report["figures"]
    sys.stdout.write(
        f"verify {'passed' if report['passed'] else 'FAILED'}: records {_n(f['records'])}, "
        f"faults {_n(f['faultsInjected'])}, retries {_n(f['retries'])}, lost {_n(f['lost'])}, "
        f"duplicated {_n(f['duplicated'])}, 5xx {_n(f['5xx'])}, "
        f"secrets found {_n(f['secretsFound'])} -> out/verify.json\n"
    )
    for problem in report["problems"]:
        sys.stdout.write(f"  incomplete: {problem}\n")
    if should_rewrite(report, args.docs):
        if not rewrite_doc(report):
            sys.stderr.write(f"{DOC.relative_to(ROOT)} has no {BEGIN} ... {END} section\n")
            return 1
        sys.stdout.write(f"{DOC.relative_to(ROOT)}: figures rewritten\n")
    elif args.docs == "auto":
        sys.stdout.write(f"{DOC.relative_to(ROOT)}: left as it was (incomplete run)\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
