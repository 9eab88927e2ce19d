"""``python -m benchmarks [--median SECONDS] [--service]``: print the executor's figures, then the whole stack's."""

from __future__ import annotations

import argparse

import anyio

from . import service, stack_makespan
from .scheduler import run_all


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--median", type=float, default=0.1, help="median task latency in seconds (default 0.1)")
    parser.add_argument(
        "--service",
        action="store_true",
        help="only the figures through the whole stack (Service, AnthropicBackend, the fake Messages API, SQLite)",
    )
    args = parser.parse_args()
    median = float(args.median)
    if not args.service:
        anyio.run(run_all, median)
        print()
    service.main(median, [stack_makespan.run_all])


if __name__ == "__main__":
    main()
