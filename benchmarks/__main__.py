"""`python -m benchmarks NAME [--json]`: run one benchmark and print its figures."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys

BENCHMARKS = {
    "kernels": "benchmarks.kernels",
    "flows": "benchmarks.flows",
    "store": "benchmarks.store",
    "studio": "benchmarks.studio",
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("name", choices=sorted(BENCHMARKS))
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    args = parser.parse_args()
    module = importlib.import_module(BENCHMARKS[args.name])
    figures = asyncio.run(module.run(quick=args.quick))
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:32} {value}")
    sys.exit(0)


if __name__ == "__main__":
    main()
