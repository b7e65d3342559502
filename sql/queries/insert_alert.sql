INSERT INTO mlops.ml_performance_alerts (
    kind, model_name, model_version, metric, severity, status, observed, baseline, threshold,
    degradation, breach_days, ok_days, first_seen, last_seen, message, training_local_run_id,
    mlflow_experiment_id, mlflow_run_id, created_at, updated_at
) VALUES (
    :kind, :model_name, :model_version, :metric, :severity, :status, :observed, :baseline,
    :threshold, :degradation, :breach_days, :ok_days, :first_seen, :last_seen, :message,
    :training_local_run_id, :mlflow_experiment_id, :mlflow_run_id, :created_at, :updated_at
)
RETURNING alert_id
