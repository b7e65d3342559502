"""`mlops-assets`: the demo, read-only queries, the MLflow buffer and alerts from a terminal."""

from __future__ import annotations

import argparse
import csv
import sys

from mlops_assets.settings import SettingsError


def _query(args: argparse.Namespace) -> int:
    from mlops_assets.runtime import build_runtime

    runtime = build_runtime(home=args.home)
    rows = runtime.warehouse.query_readonly(args.sql)
    writer = csv.writer(sys.stdout)
    if rows:
        writer.writerow(rows[0].keys())
        writer.writerows(r.values() for r in rows)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mlops_assets.demo import run_demo

    run_demo(home=args.home)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlops-assets", description=__doc__)
    parser.add_argument("--home", help="data directory (default: MLOPS_HOME or .mlops)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the main job on the embedded default").set_defaults(
        fn=_demo
    )
    query = sub.add_parser("query", help="run one read-only SQL statement, print CSV")
    query.add_argument("sql")
    query.set_defaults(fn=_query)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
