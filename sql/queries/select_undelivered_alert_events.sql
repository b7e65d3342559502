-- Alert events not yet delivered nor given up, with the alert they belong to, oldest first.
SELECT
    e.event_id,
    e.alert_id,
    e.event_type,
    e.severity AS event_severity,
    e.created_at AS event_created_at,
    e.attempts,
    e.last_error,
    a.kind,
    a.model_name,
    a.model_version,
    a.metric,
    a.severity AS alert_severity,
    a.status,
    a.observed,
    a.baseline,
    a.threshold,
    a.degradation,
    a.breach_days,
    a.first_seen,
    a.last_seen,
    a.message,
    a.training_local_run_id,
    a.mlflow_experiment_id,
    a.mlflow_run_id
FROM mlops.alert_events AS e
JOIN mlops.ml_performance_alerts AS a ON a.alert_id = e.alert_id
WHERE e.delivered_at IS NULL AND e.failed_at IS NULL
ORDER BY e.event_id
LIMIT :limit
