"""``python -m benchmarks [--median SECONDS] [--service | --rate-limits | --cost | --batch-cost |
--temporal]``: the executor's figures, then the whole stack's.

``--rate-limits`` runs only adaptive against fixed concurrency under a rate-limiting fake (``rate_limits.py``);
``--cost`` only the bill against a tutorial-style pipeline (``cost.py``); ``--batch-cost`` only batch mode's bill
against the same work run live (``batch_cost.py``); ``--temporal`` only runs on Temporal against runs in the
server (``temporal.py``).
"""

from __future__ import annotations

import argparse

import anyio

from . import batch_cost, cost, rate_limits, service, stack_makespan
from .scheduler import run_all


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--median", type=float, default=0.1, help="median task latency in seconds (default 0.1)")
    parser.add_argument(
        "--service",
        action="store_true",
        help="only the figures through the whole stack (Service, AnthropicBackend, the fake Messages API, SQLite)",
    )
    parser.add_argument(
        "--rate-limits",
        action="store_true",
        help="only adaptive against fixed concurrency, against a fake API that answers 429 beyond 4 in flight",
    )
    parser.add_argument(
        "--cost", action="store_true", help="only the cost table against a tutorial-style pipeline (a few seconds)"
    )
    parser.add_argument(
        "--batch-cost", action="store_true", help="only batch mode's bill against the same work run live (seconds)"
    )
    parser.add_argument(
        "--temporal",
        action="store_true",
        help="only runs on Temporal against runs in the server (starts a Temporal dev server; ~3 min)",
    )
    args = parser.parse_args()
    if args.batch_cost:
        batch_cost.main()
        return
    if args.rate_limits:
        rate_limits.main()
        return
    if args.cost:
        cost.main()
        return
    if args.temporal:
        from . import temporal

        temporal.main()
        return
    median = float(args.median)
    if not args.service:
        anyio.run(run_all, median)
        print()
    service.main(median, [stack_makespan.run_all])
    print()
    rate_limits.main()


if __name__ == "__main__":
    main()
