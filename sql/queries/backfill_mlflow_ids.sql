-- Once a buffered run is in MLflow, its real ids replace "not yet known" (NULL, or the local id
-- where a column shows "the best id we have") everywhere, keyed by our local run id. Run by the
-- replay (with update_mlflow_ids.sql, one transaction) and by writers that add rows of a run
-- after its replay, in their own transaction.
UPDATE mlops.training_runs
SET mlflow_experiment_id = :e, mlflow_run_id = :r, tracking_status = 'TRACKED',
    model_version = coalesce(:v, model_version)
WHERE local_run_id = :id;

UPDATE mlops.training_baselines
SET baseline_mlflow_run_id = :r, mlflow_experiment_id = :e,
    model_version = coalesce(:v, model_version)
WHERE local_run_id = :id;

UPDATE mlops.production_metrics
SET mlflow_run_id = :r, mlflow_experiment_id = :e, model_version = coalesce(:v, model_version)
WHERE training_local_run_id = :id;

UPDATE mlops.ml_performance_alerts
SET mlflow_run_id = :r, mlflow_experiment_id = :e, model_version = coalesce(:v, model_version)
WHERE training_local_run_id = :id;

UPDATE mlops.ml_feature_drift_detection
SET baseline_mlflow_run_id = :r, mlflow_experiment_id = :e,
    model_version = coalesce(:v, model_version)
WHERE baseline_local_run_id = :id;

-- The health table has no local-id column: it shows the local id itself while a run is
-- pending (as model_version, champion_version, and in the JSON list active_mlflow_run_ids).
UPDATE mlops.ml_model_health_status
SET active_mlflow_run_ids = replace(active_mlflow_run_ids, '"' || :id || '"', '"' || :r || '"'),
    pending_replay = FALSE
WHERE active_mlflow_run_ids LIKE '%"' || :id || '"%';

UPDATE mlops.ml_model_health_status
SET model_version = coalesce(:v, model_version)
WHERE model_version = :id;

UPDATE mlops.ml_model_health_status
SET champion_version = coalesce(:v, champion_version)
WHERE champion_version = :id;
