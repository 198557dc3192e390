"""Drift the hub already recorded as a rejection is listed as explained, not as drift."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from shared.services.reconcile import Reconciler, ReconcileReport, compare

pytestmark = pytest.mark.unit


class _Rejections:
    """A fake of the hub's own RejectionStore port."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys

    def list(self, flow: str | None = None):
        return [SimpleNamespace(key=k, reason=r) for k, r in self.keys.items()]


def test_orders_dataverse_refused_are_explained_and_others_stay_drift():
    # Given three lake orders, of which Dataverse holds one; one of the two missing was refused
    lake = {"1": {"total": "1.00"}, "2": {"total": "2.00"}, "3": {"total": "3.00"}}
    dataverse = {"1": {"total": "1.00"}}
    report = ReconcileReport(dt.datetime(2026, 11, 22, tzinfo=dt.UTC))
    report.pairs.append(compare("legacy_orders", "lake", lake, "dataverse", dataverse))
    reconciler = Reconciler(
        dataverse=None,  # type: ignore[arg-type]
        quotes=None,  # type: ignore[arg-type]
        storage=None,  # type: ignore[arg-type]
        rejections=_Rejections({"legacy_orders:2": "account C9 does not exist"}),  # type: ignore[arg-type]
    )
    # When the drift is checked against the recorded rejections
    reconciler._explain(report, "legacy_orders", "dataverse-load", "legacy_orders")
    # Then the refused order is explained with its reason and the other is still drift
    assert [(d.key, d.kind) for d in report.drift] == [("3", "missing_right")]
    assert [(d.key, d.kind, d.detail) for d in report.pairs[0].explained] == [
        ("2", "rejected", "account C9 does not exist")
    ]
