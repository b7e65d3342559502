"""`mlops-assets`: the demo, read-only queries, the MLflow buffer and alerts from a terminal.

Every failure ends as one `error: <cause>` line on stderr and a non-zero exit (2 for bad
settings or arguments, 1 otherwise); secrets in the cause are masked.
"""

from __future__ import annotations

import argparse
import csv
import sys

from mlops_assets.lib.redact import redact
from mlops_assets.settings import SettingsError
from mlops_assets.storage.warehouse import QUERY_TIMEOUT_SECONDS, WarehouseError


def _query(args: argparse.Namespace) -> int:
    from mlops_assets.runtime import build_readonly_warehouse

    warehouse = build_readonly_warehouse(home=args.home)
    rows = warehouse.query_readonly(args.sql, timeout=args.timeout)
    writer = csv.writer(sys.stdout)
    if rows:
        writer.writerow(rows[0].keys())
        writer.writerows(r.values() for r in rows)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mlops_assets.demo import run_demo

    run_demo(home=args.home, postgres_dsn=args.postgres)
    return 0


def _status(args: argparse.Namespace) -> int:
    from mlops_assets.demo import format_health
    from mlops_assets.runtime import build_readonly_warehouse

    print(format_health(build_readonly_warehouse(home=args.home)))
    return 0


def _ack(args: argparse.Namespace) -> int:
    import getpass

    from mlops_assets.runtime import build_runtime
    from mlops_assets.storage.monitoring import acknowledge_alert

    warehouse = build_runtime(home=args.home).warehouse  # SettingsError (a ValueError) -> exit 2
    try:
        row = acknowledge_alert(warehouse, args.alert_id, by=args.by or getpass.getuser())
    except (LookupError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"alert {row['alert_id']} ({row['model_name']}/{row['metric']}) acknowledged")
    return 0


def _flush(args: argparse.Namespace) -> int:
    from mlops_assets.runtime import build_runtime

    report = build_runtime(home=args.home).tracker.flush()
    if report.skipped_reason:
        print(f"nothing replayed: {redact(report.skipped_reason)}")
    for r in report.replayed:
        print(
            f"replayed {r.local_run_id} -> MLflow run {r.mlflow_run_id} ({r.metrics_sent} metrics)"
        )
    for r in report.parked:
        print(f"parked {r.local_run_id}: {redact(r.error)}")
    for r in report.busy:
        print(f"skipped {r.local_run_id}: {redact(r.error)}")
    for local_run_id in report.abandoned:
        print(f"abandoned {local_run_id}: its recording process died before it finished")
    for r in report.failed:
        print(f"still pending {r.local_run_id}: {redact(r.error)}")
    return 1 if report.failed else 0


def _buffer(args: argparse.Namespace) -> int:
    from mlops_assets.runtime import build_runtime

    runtime = build_runtime(home=args.home)
    summary = runtime.tracker.buffer.summary()
    state = runtime.breaker.current_state()
    print(
        f"circuit breaker: {state.state} (failures {state.failure_count})"
        + (f", last error: {redact(state.last_error)}" if state.last_error else "")
    )
    age = summary.oldest_pending_age_s
    print(
        f"pending runs: {summary.pending_runs}, parked: {summary.parked_runs}, "
        f"recording: {summary.recording_runs}, abandoned: {summary.abandoned_runs}, "
        f"unsent metrics: {summary.pending_metrics}"
        + (f", oldest pending {age:.0f}s ago" if age is not None else "")
    )
    for run in summary.runs:
        leased = run.state == "pending" and run.lease_owner
        print(
            f"  {run.local_run_id}  {run.state:<9} {run.run_name}  attempts {run.attempts}"
            + (f"  last error: {redact(run.last_error)}" if run.last_error else "")
            + (f"  leased by {run.lease_owner}" if leased else "")
            + (f"  reason: {redact(run.abandoned_reason)}" if run.abandoned_reason else "")
        )
    return 0


def _models(args: argparse.Namespace) -> int:
    """List the declared models; `validate` checks every declaration (exit 2 on a problem)."""
    from mlops_assets.lib.contract import ContractError
    from mlops_assets.platform import catalog_of, default_models

    try:
        catalog = catalog_of(default_models())
    except ContractError as error:
        for line in str(error).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    for contract in catalog:
        for line in contract.warnings():
            print(f"warning: model {contract.name}: {line}", file=sys.stderr)
    if args.action == "validate":
        print(f"{len(catalog)} model declaration(s) valid: {', '.join(catalog.names)}")
        return 0
    print(f"{'model':<24}{'task':<12}{'model from':<36}predictions")
    for c in catalog:
        origin = c.model.registered.uri if c.model.registered else "trained here"
        print(f"{c.name:<24}{c.task:<12}{origin:<36}{c.production.predictions.describe()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlops-assets", description=__doc__)
    parser.add_argument("--home", help="data directory (default: MLOPS_HOME or .mlops)")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the main job (embedded warehouse by default)")
    demo.add_argument(
        "--postgres",
        metavar="DSN",
        help="use this PostgreSQL database as the warehouse, e.g. "
        "postgresql://postgres@127.0.0.1:5432/mlops",
    )
    demo.set_defaults(fn=_demo)
    query = sub.add_parser("query", help="run one read-only SQL statement, print CSV")
    query.add_argument("sql")
    query.add_argument(
        "--timeout",
        type=float,
        default=QUERY_TIMEOUT_SECONDS,
        help=f"seconds before the query is stopped (default {QUERY_TIMEOUT_SECONDS:g}, max 50)",
    )
    query.set_defaults(fn=_query)
    sub.add_parser("status", help="print the model health table").set_defaults(fn=_status)
    ack = sub.add_parser("ack", help="acknowledge an alert")
    ack.add_argument("alert_id", type=int)
    ack.add_argument("--by", help="who acknowledges (default: current user)")
    ack.set_defaults(fn=_ack)
    sub.add_parser("flush", help="replay the MLflow buffer once").set_defaults(fn=_flush)
    sub.add_parser("buffer", help="show pending MLflow runs and the breaker").set_defaults(
        fn=_buffer
    )
    models = sub.add_parser(
        "models", help="list the declared models (MLOPS_MODELS_PATH, else the demo's)"
    )
    models.add_argument("action", nargs="?", choices=["list", "validate"], default="list")
    models.set_defaults(fn=_models)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except SettingsError as error:
        # One problem per line under the `error:` line, each naming its variable.
        print(f"error: {redact(error)}", file=sys.stderr)
        return 2
    except (WarehouseError, LookupError, ValueError) as error:
        return _fail(error, 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as error:  # noqa: BLE001 - the CLI boundary: one line, never a traceback
        return _fail(f"{type(error).__name__}: {error}", 1)


def _fail(error: object, code: int) -> int:
    """One `error:` line: multi-line causes joined, secrets masked."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    print(f"error: {redact('; '.join(lines) or 'failed')}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
