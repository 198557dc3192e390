"""``python -m sandbox.datagen --seed 7 --scale 1000 --out DIR``: write a world as NDJSON files
(one folder per system) and print the planted-problem report and the generation rate."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from sandbox.datagen._world import DEFAULT_AS_OF, generate


def _as_of(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


def main(argv: list[str] | None = None) -> int:
    """Entry point of the CLI."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.datagen", description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--scale", type=int, required=True, help="number of legacy orders")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--as-of",
        type=_as_of,
        default=DEFAULT_AS_OF,
        help="the world's 'now' (RFC 3339; default %(default)s)",
    )
    parser.add_argument(
        "--problem-rate", type=float, default=0.01, help="fraction per problem kind"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        data = generate(args.seed, args.scale, as_of=args.as_of, problem_rate=args.problem_rate)
    except ValueError as exc:
        parser.error(str(exc))
    manifest = data.write(args.out)
    seconds = time.perf_counter() - started
    out = sys.stdout
    out.write(f"seed {data.seed}, scale {data.scale}, as of {manifest['asOf']} -> {args.out}\n")
    for name, n in manifest["files"].items():
        out.write(f"  {name:<42} {n:>10}\n")
    out.write(data.planted.report() + "\n")
    rate = data.scale / seconds if seconds else float("inf")
    out.write(f"written in {seconds:.1f} s ({rate:,.0f} legacy orders/s including all systems)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
