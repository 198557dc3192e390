"""The child process of the crash harness: runs one hub function the way the Functions host does.

    python -m tests.crash.runner timer <function>            run a timer function once
    python -m tests.crash.runner intake <quotes.json> <out>  POST each quote to quote_intake;
                                                             write the Service Bus messages it
                                                             sent and the quotes it refused (4xx)
    python -m tests.crash.runner push <messages.json> <done> deliver each message to quote_push;
                                                             append its id to <done> once completed
    python -m tests.crash.runner serve                       fork server: import the app once,
                                                             then fork one worker per request

Functions are indexed from ``function_app.py`` and invoked with real trigger objects
(``sandbox.functions``), so the child runs exactly the code the host runs, with the settings of
its environment (the harness passes the sandbox world's). A crash hook from ``CRASH_HOOK``
(``tests.crash.hooks``) is installed first; peers may also hold a request while the harness kills
this process from outside. Exit status: 0 done, 1 a function failed (its traceback on stderr).

``serve`` exists for speed: importing the app costs seconds per process, so the harness keeps one
server that has imported it (single-threaded, nothing of the lake loaded: the app imports polars
and delta-rs only inside jobs, so a fork is safe) and forks a fresh worker process per attempt —
as a Functions host keeps a warm worker. Each request line is ``{"args", "env", "stdout",
"stderr"}``; the server answers ``{"pid"}`` at once and ``{"pid", "exit"}`` when the worker ended
(``exit`` is ``-9`` for a SIGKILL). The worker gets exactly the request's environment.

Message completion follows the host's peek-lock contract: a message counts as completed only once
the function returned *and* the completion was recorded (appended and fsynced to ``<done>``); a
process killed before that leaves it uncompleted, so it is delivered again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from tests.crash import hooks


def _functions() -> dict[str, Any]:
    from sandbox import functions

    return {f.name: f for f in functions.load()}


def run_timer(name: str) -> None:
    """Invoke a timer-triggered function once, as the host does on its schedule."""
    from azure.functions.timer import TimerRequest

    from sandbox import functions

    fn = _functions()[name]
    if fn.trigger.type != "timerTrigger":
        raise SystemExit(f"{name} is not timer-triggered")
    functions.invoke(fn, TimerRequest(past_due=False))


def run_intake(quotes_path: Path, out_path: Path) -> None:
    """POST every quote to ``quote_intake``: the messages its output binding set, in order, and
    the quotes it refused with a 4xx (planted invalid quotes)."""
    import azure.functions as func

    from sandbox import functions

    fn = _functions()["quote_intake"]
    messages: list[dict[str, Any]] = []
    refused: dict[str, int] = {}
    for quote in json.loads(quotes_path.read_text(encoding="utf-8")):
        request = func.HttpRequest(
            "POST",
            "http://localhost/api/quotes",
            headers={"content-type": "application/json"},
            body=json.dumps(quote).encode("utf-8"),
        )
        invocation = functions.invoke(fn, request)
        status = invocation.result.status_code
        if status >= 500:
            raise RuntimeError(f"quote {quote.get('quoteId')}: intake answered {status}")
        if status != 202:
            refused[str(quote.get("quoteId"))] = status  # a 4xx the Quoting Tool gets back
        if "push" in invocation.outputs:
            messages.append(
                {
                    "messageId": f"{quote['quoteId']}-r{quote['revision']}",
                    "body": invocation.outputs["push"],
                }
            )
    out_path.write_text(json.dumps({"messages": messages, "refused": refused}), encoding="utf-8")


def _service_bus_message(message: dict[str, Any]) -> Any:
    """A ServiceBusMessage as the host hands it to the trigger (cf. sandbox.dispatcher)."""
    from azure.functions.meta import Datum
    from azure.functions.servicebus import ServiceBusMessage

    now = dt.datetime.now(dt.UTC)
    count = int(message["deliveryCount"])
    sequence = int(message.get("sequenceNumber", 0))
    lock_token = os.urandom(16).hex()
    metadata = {
        "MessageId": Datum(message["messageId"], "string"),
        "SequenceNumber": Datum(sequence, "int"),
        "DeliveryCount": Datum(count, "int"),
        "EnqueuedTimeUtc": Datum(now.isoformat(), "string"),
        "ApplicationProperties": Datum("{}", "json"),
        "UserProperties": Datum("{}", "json"),
        "ContentType": Datum("application/json", "string"),
        "LockToken": Datum(lock_token, "string"),
    }
    return ServiceBusMessage(
        body=str(message["body"]).encode("utf-8"),
        trigger_metadata=metadata,
        application_properties={},
        user_properties={},
        content_type="application/json",
        delivery_count=count,
        enqueued_sequence_number=sequence,
        enqueued_time_utc=now,
        lock_token=lock_token,
        message_id=message["messageId"],
        sequence_number=sequence,
    )


def run_push(messages_path: Path, done_path: Path) -> None:
    """Deliver each message to ``quote_push`` in order, completing each after it returned."""
    from sandbox import functions

    fn = _functions()["quote_push"]
    for message in json.loads(messages_path.read_text(encoding="utf-8")):
        functions.invoke(fn, _service_bus_message(message))
        with open(done_path, "a", encoding="utf-8") as done:
            done.write(message["messageId"] + "\n")
            done.flush()
            os.fsync(done.fileno())


def _worker(request: dict[str, Any]) -> int:
    """In a forked worker: the request's environment and output files, then ``main``."""
    for stream, fd in (("stdout", 1), ("stderr", 2)):
        target = os.open(request[stream], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    os.environ.clear()
    os.environ.update(request["env"])
    return main(list(request["args"]))


def _threads() -> int:
    """Threads of this process, native ones included (pyarrow and polars start their pools
    at import, which is why the server never imports them)."""
    import threading

    tasks = Path("/proc/self/task")
    return len(list(tasks.iterdir())) if tasks.exists() else threading.active_count()


def serve() -> None:
    """Fork server (see the module docstring); ends when its stdin closes."""
    from sandbox import functions

    functions.load()
    for line in sys.stdin:
        request = json.loads(line)
        if _threads() != 1:
            raise RuntimeError("the fork server must stay single-threaded")
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _worker(request)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        sys.stdout.write(json.dumps({"pid": pid}) + "\n")
        sys.stdout.flush()
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(json.dumps({"pid": pid, "exit": os.waitstatus_to_exitcode(status)}) + "\n")
        sys.stdout.flush()


def main(argv: list[str]) -> int:
    """Entry point; see the module docstring."""
    action, *rest = argv
    if action == "serve":
        serve()
        return 0
    logging.basicConfig(level=os.environ.get("DATAHUB_LOG_LEVEL", "WARNING"), stream=sys.stderr)
    hooks.install_from_env()
    try:
        if action == "timer":
            run_timer(rest[0])
        elif action == "intake":
            run_intake(Path(rest[0]), Path(rest[1]))
        elif action == "push":
            run_push(Path(rest[0]), Path(rest[1]))
        else:
            raise SystemExit(f"unknown action {action!r}")
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
