"""Checks over worker-indexed binding metadata: schedules and referenced settings."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from shared.ncrontab import validate_ncrontab

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
_SETTING = re.compile(r"%([^%]+)%")


def index(app_dir: Path) -> dict[str, Any]:
    """Run the real worker's indexer over ``app_dir`` in a fresh interpreter."""
    completed = subprocess.run(
        [sys.executable, str(HERE / "worker_index.py"), str(app_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=app_dir,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def sample_settings(path: Path = ROOT / "local.settings.sample.json") -> dict[str, str]:
    return dict(json.loads(path.read_text())["Values"])


def resolve(value: str, settings: dict[str, str]) -> str:
    return _SETTING.sub(lambda m: settings.get(m.group(1), m.group(0)), value)


def setting_problems(functions: list[dict[str, Any]], settings: dict[str, str]) -> list[str]:
    """Every setting a binding references (connection names, %Name%) must exist, and every
    timer schedule must be a valid six-field NCRONTAB once resolved."""
    problems = []
    for function in functions:
        for binding in function["bindings"]:
            where = f"{function['name']}.{binding['name']}"
            connection = binding.get("connection")
            if connection and not any(
                key == connection or key.startswith(connection + "__") for key in settings
            ):
                problems.append(f"{where}: connection setting {connection} is not defined")
            for key, value in binding.items():
                if isinstance(value, str):
                    for name in _SETTING.findall(value):
                        if name not in settings:
                            problems.append(f"{where}.{key}: setting {name} is not defined")
            if binding.get("type") == "timerTrigger":
                schedule = resolve(str(binding.get("schedule", "")), settings)
                try:
                    validate_ncrontab(schedule)
                except ValueError as exc:
                    problems.append(f"{where}: bad schedule {schedule!r}: {exc}")
    return problems
