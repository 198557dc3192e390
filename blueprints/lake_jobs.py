"""The lake's timers: mainframe poll (flows 5a–5c, then gold when it changed silver), the gold
rebuild, the silver → Dataverse load (flow 6) and the Dataverse → lake export (flow 7).

Thin on purpose: each timer asks ``shared.wiring`` for the jobs, runs one and logs its one-line
summary. A failure is not caught: it reaches the host, which records the invocation as failed,
and the job has saved only what is safe (no watermark or delta token moved past unfinished work).
The lake code (polars, deltalake) is imported by the jobs when they run, never when this module
loads.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared import wiring

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)


def _late(name: str, timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("%s: running late (past due)", name)


@bp.function_name("mainframe_poll")
@bp.timer_trigger(arg_name="timer", schedule="%MAINFRAME_POLL_SCHEDULE%", run_on_startup=False)
def mainframe_poll(timer: func.TimerRequest) -> None:
    """Flows 5a–5c: changed mainframe records into bronze and silver, then gold if they changed."""
    _late("mainframe_poll", timer)
    log.info("%s", wiring.lake_jobs().poll_mainframe().summary())


@bp.function_name("gold_rebuild")
@bp.timer_trigger(arg_name="timer", schedule="%GOLD_REBUILD_SCHEDULE%", run_on_startup=False)
def gold_rebuild(timer: func.TimerRequest) -> None:
    """Rebuild every gold table from silver (writes nothing when silver did not change)."""
    _late("gold_rebuild", timer)
    log.info("%s", wiring.lake_jobs().rebuild_gold().summary())


@bp.function_name("dataverse_load")
@bp.timer_trigger(arg_name="timer", schedule="%DATAVERSE_LOAD_SCHEDULE%", run_on_startup=False)
def dataverse_load(timer: func.TimerRequest) -> None:
    """Flow 6: silver rows changed since the last load into Dataverse, by bulk upserts."""
    _late("dataverse_load", timer)
    log.info("%s", wiring.lake_jobs().load_dataverse().summary())


@bp.function_name("dataverse_to_lake")
@bp.timer_trigger(arg_name="timer", schedule="%DATAVERSE_EXPORT_SCHEDULE%", run_on_startup=False)
def dataverse_to_lake(timer: func.TimerRequest) -> None:
    """Flow 7: Dataverse change tracking into bronze and silver (soft deletes, delta tokens)."""
    _late("dataverse_to_lake", timer)
    log.info("%s", wiring.lake_jobs().export_dataverse().summary())
