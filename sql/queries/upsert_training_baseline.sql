-- Ids the caller read may predate a replay by another process: the buffer's win then.
INSERT INTO mlops.training_baselines (
    local_run_id, model_name, model_version, baseline_mlflow_run_id, mlflow_experiment_id,
    metrics_json, metric_std_json, features_json, n_validation, reference_rows,
    reference_sample, created_at, estimation_json
) VALUES (
    :local_run_id, :model_name,
    coalesce(:model_version, (SELECT b.model_version FROM mlops.mlflow_buffer_runs b
                              WHERE b.local_run_id = :local_run_id AND b.state = 'replayed')),
    coalesce(:baseline_mlflow_run_id, (SELECT b.mlflow_run_id FROM mlops.mlflow_buffer_runs b
                                       WHERE b.local_run_id = :local_run_id AND b.state = 'replayed')),
    coalesce(:mlflow_experiment_id, (SELECT b.mlflow_experiment_id FROM mlops.mlflow_buffer_runs b
                                     WHERE b.local_run_id = :local_run_id AND b.state = 'replayed')),
    :metrics_json, :metric_std_json, :features_json, :n_validation, :reference_rows,
    :reference_sample, :created_at, :estimation_json
)
ON CONFLICT (local_run_id) DO UPDATE SET
    model_version = excluded.model_version,
    baseline_mlflow_run_id = excluded.baseline_mlflow_run_id,
    mlflow_experiment_id = excluded.mlflow_experiment_id,
    metrics_json = excluded.metrics_json, metric_std_json = excluded.metric_std_json,
    features_json = excluded.features_json, n_validation = excluded.n_validation,
    reference_rows = excluded.reference_rows, reference_sample = excluded.reference_sample,
    created_at = excluded.created_at, estimation_json = excluded.estimation_json
