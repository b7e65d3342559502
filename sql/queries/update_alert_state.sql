UPDATE mlops.ml_performance_alerts
SET severity = :severity,
    status = CASE WHEN :resolved THEN 'resolved' WHEN status = 'acknowledged' THEN status
                  ELSE :status END,
    observed = :observed, threshold = :threshold, degradation = :degradation,
    baseline = :baseline, breach_days = :breach_days, ok_days = :ok_days,
    last_seen = :last_seen, last_evaluated = :last_evaluated, updated_at = :t,
    resolved_at = CASE WHEN :resolved THEN :t ELSE resolved_at END,
    -- Always the alert's own run (another run's alerts are superseded first): its MLflow
    -- ids and version arrive here once a buffered run is replayed.
    model_version = :model_version, training_local_run_id = :training_local_run_id,
    mlflow_experiment_id = :mlflow_experiment_id, mlflow_run_id = :mlflow_run_id
WHERE alert_id = :a
