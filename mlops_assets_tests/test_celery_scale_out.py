"""Scale-out acceptance: a backfill on Dagster's Celery executor, two workers without a shared
disk, gives the rows one process gives.

Everything is real: the Dagster instance and the warehouse on PostgreSQL, a `mlflow server` with
its own artifact store, the Redis broker, `dagster-daemon` running an asset backfill (ranged
runs under the assets' backfill policy, one per model, then the alerts' runs) on the Celery
executor, and two `celery worker` processes whose data directories are new and empty (they never
saw the training run).
Locally a missing PostgreSQL or Redis skips; under CI=true fails.
"""

from __future__ import annotations

import os
import random

import pytest
from dagster import AssetKey

from mlops_assets_tests.celery_cluster import ScaleOutDeployment, redis_answers, result_rows
from mlops_assets_tests.conftest import require

pytestmark = [pytest.mark.postgres, pytest.mark.mlflow_server, pytest.mark.slow]


def test_celery_backfill_on_two_workers_matches_one_process(pg_admin_dsn, tmp_path):
    # A database of its own on the shared Redis, so no other run's worker takes these steps.
    base = os.environ.get("MLOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    broker = f"{base.rstrip('/')}/{random.randint(1, 15)}"
    problem = redis_answers(broker)
    require(problem is None, problem or "")

    with ScaleOutDeployment(
        days=3, models=2, rows=300, admin_dsn=pg_admin_dsn, broker=broker, root=tmp_path
    ) as deployment:
        reference_dsn = deployment.clone_warehouse("ref")
        celery_dsn = deployment.clone_warehouse("cel")
        deployment.run_in_process(reference_dsn)
        _, runs, hosts = deployment.run_on_celery(celery_dsn, workers=2)

        failed = [r.run_id for r in runs if r.status.value != "SUCCESS"]
        assert not failed, f"runs failed: {failed}; see {tmp_path}/workers-*/worker*/worker.log"
        # The backfill policy: one run per model with all its days (Dagster cuts a multi-
        # partition range along the dimension with fewer keys: 2 models < 3 days), then the
        # alerts in runs of their own (performance_alerts' single_run policy), each holding
        # all the days of its models once their heavy run is done.
        first, last = deployment.days[0].isoformat(), deployment.days[-1].isoformat()
        alert_runs = [r for r in runs if r.asset_selection == {AssetKey("performance_alerts")}]
        heavy = [r for r in runs if r not in alert_runs]
        ranges = {
            (
                r.tags["dagster/asset_partition_range_start"],
                r.tags["dagster/asset_partition_range_end"],
            )
            for r in heavy
        }
        assert ranges == {(f"{first}|{m}", f"{last}|{m}") for m in deployment.model_names}
        assert 1 <= len(alert_runs) <= len(deployment.model_names), [r.tags for r in runs]
        # Both workers took steps: the work really was spread over the two "hosts". Each heavy
        # run has four steps: three assets and the metrics freshness check (an asset backfill
        # runs every check of the assets it selects); each alerts run one.
        assert len(hosts) == 2, hosts
        assert sum(hosts.values()) == 2 * 4 + len(alert_runs)

        expected, got = result_rows(reference_dsn), result_rows(celery_dsn)
        assert len(expected["production_metrics"]) > 0 and len(expected["drift"]) > 0
        assert len(expected["alerts"]) > 0  # drift from day 2 opens alerts
        for table in expected:
            assert len(got[table]) == len(expected[table]), table
            diffs = [
                (i, k, e[k], g.get(k))
                for i, (e, g) in enumerate(zip(expected[table], got[table], strict=True))
                for k in e
                if e[k] != g.get(k)
            ]
            assert not diffs, f"{table}: (row, column, in-process, celery) {diffs[:10]}"
        # The drift reports are in MLflow, not on the disk of the worker that wrote them.
        assert {r["report_path"].split(":/")[0] for r in got["drift"]} == {"runs"}
        # The workers' data directories hold caches only: the models they downloaded from the
        # registry (by MLflow run id), and no report once MLflow has it.
        worker_homes = sorted(tmp_path.glob("workers-*/worker*/home"))
        assert len(worker_homes) == 2
        for home in worker_homes:
            assert {p.name for p in home.iterdir()} <= {"models", "artifacts"}, home
            assert not list(home.glob("artifacts/*")), home
        cached = {p.name for home in worker_homes for p in home.glob("models/*/MLmodel")}
        assert cached, "no worker downloaded a model: the impact ranking did not run there"
