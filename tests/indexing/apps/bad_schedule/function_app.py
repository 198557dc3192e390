"""Fixture app: a five-field (Unix cron) schedule, which the Functions host rejects."""

import azure.functions as func

app = func.FunctionApp()


@app.timer_trigger(schedule="%BAD_SCHEDULE%", arg_name="timer")
def tick(timer: func.TimerRequest) -> None:
    return None
