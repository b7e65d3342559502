-- Once a buffered run is in MLflow, its real ids replace "not yet known" everywhere, in one
-- transaction, keyed by our local run id.
UPDATE mlops.mlflow_buffer_runs
SET state = 'replayed', mlflow_experiment_id = :e, mlflow_run_id = :r,
    model_version = coalesce(:v, model_version), replayed_at = :t, last_error = NULL
WHERE local_run_id = :id;

UPDATE mlops.training_runs
SET mlflow_experiment_id = :e, mlflow_run_id = :r, tracking_status = 'TRACKED',
    model_version = coalesce(:v, model_version)
WHERE local_run_id = :id;

UPDATE mlops.training_baselines
SET baseline_mlflow_run_id = :r, mlflow_experiment_id = :e,
    model_version = coalesce(:v, model_version)
WHERE local_run_id = :id;

UPDATE mlops.production_predictions
SET mlflow_run_id = :r, model_version = coalesce(:v, model_version)
WHERE training_local_run_id = :id;

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
