"""``python -m benchmarks [--median SECONDS]``: print the executor's scheduling figures."""

from __future__ import annotations

import argparse

import anyio

from .scheduler import run_all


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--median", type=float, default=0.1, help="median task latency in seconds (default 0.1)")
    args = parser.parse_args()
    anyio.run(run_all, float(args.median))


if __name__ == "__main__":
    main()
