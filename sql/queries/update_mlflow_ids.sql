-- The buffered run is in MLflow: mark it replayed and free its lease. The same transaction
-- then runs backfill_mlflow_ids.sql, which puts the real ids into every table.
UPDATE mlops.mlflow_buffer_runs
SET state = 'replayed', mlflow_experiment_id = :e, mlflow_run_id = :r,
    model_version = coalesce(:v, model_version), replayed_at = :t, last_error = NULL,
    lease_owner = NULL, lease_expires_at = NULL
WHERE local_run_id = :id;
