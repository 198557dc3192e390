"""``python -m sandbox serve | devhost | demo`` — the local world from the command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from sandbox.world import ROOT_STATE, Ports, World

PEERS = (
    "entra",
    "keyVault",
    "dataverse",
    "sap",
    "mainframe",
    "quotingTool",
    "blob",
    "queue",
    "table",
    "hub",
)


class _Stop(Exception):
    """Raised in the main thread by SIGINT/SIGTERM, so cleanup runs wherever we are."""


def _on_signal(signum: int, frame: object) -> None:
    raise _Stop


def _install_signal_handlers() -> None:
    # Installed before anything starts: a signal during start-up must still stop what already
    # runs (Azurite is a separate process and would outlive us otherwise).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)


def _wait_for_signal() -> None:
    try:
        threading.Event().wait()
    except _Stop:
        return


def serve(args: argparse.Namespace) -> int:
    _install_signal_handlers()
    ports = Ports(**{name: getattr(args, f"port_{name}") for name in PEERS})
    state = ROOT_STATE / "serve" if args.persist else Path(tempfile.mkdtemp(prefix="sandbox-"))
    world = World(state, persist=args.persist, ports=ports)
    try:
        world.start()
        if args.app:
            world.start_app()
            world.hub.dispatcher.start()
        descriptor = world.descriptor()
        if args.write_local_settings:
            path = Path("local.settings.json")
            path.write_text(
                json.dumps(
                    {
                        "IsEncrypted": False,
                        "Values": descriptor["settings"],
                        "Host": {"LocalHttpPort": 7071},
                    },
                    indent=2,
                )
            )
        sys.stdout.write(json.dumps(descriptor) + "\n")
        sys.stdout.flush()
        _wait_for_signal()
    finally:
        world.stop()
        if not args.persist:
            shutil.rmtree(state, ignore_errors=True)
    return 0


def devhost(args: argparse.Namespace) -> int:
    from sandbox.app import LocalApp

    _install_signal_handlers()
    settings_file = Path("local.settings.json")
    if settings_file.exists():
        for key, value in json.loads(settings_file.read_text()).get("Values", {}).items():
            os.environ.setdefault(key, str(value))
    app = LocalApp(function_key=args.key).start(port=args.port)
    app.dispatcher.start()
    sys.stdout.write(app.base_url + "\n")
    sys.stdout.write(json.dumps({"functionKey": app.function_key}) + "\n")
    sys.stdout.flush()
    try:
        _wait_for_signal()
    finally:
        app.stop()
    return 0


def demo(args: argparse.Namespace) -> int:
    from sandbox.demo import run

    return run(scale=args.scale, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("SANDBOX_LOG_LEVEL", "WARNING"), stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m sandbox")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="start Azurite and every peer; print one JSON line")
    p.add_argument(
        "--app", action="store_true", help="also serve the Functions app (dev HTTP adapter)"
    )
    p.add_argument(
        "--write-local-settings",
        action="store_true",
        help="write local.settings.json for func start",
    )
    p.add_argument("--persist", action="store_true", help="keep Azurite data under .sandbox/serve")
    for name in PEERS:
        p.add_argument(f"--port-{name}", dest=f"port_{name}", type=int, default=0, metavar="N")
    p.set_defaults(run=serve)
    d = sub.add_parser(
        "devhost", help="serve the app's HTTP functions (settings from env / local.settings.json)"
    )
    d.add_argument("--port", type=int, default=7071)
    d.add_argument("--key", default=None, help="function key to accept (generated when absent)")
    d.set_defaults(run=devhost)
    m = sub.add_parser("demo", help="the whole flow end to end; writes out/demo-summary.json")
    m.add_argument("--scale", type=int, default=1000)
    m.add_argument("--seed", type=int, default=7)
    m.set_defaults(run=demo)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except _Stop:
        return 0


if __name__ == "__main__":
    sys.exit(main())
