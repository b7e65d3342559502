-- Every alert with its training context; degradation_from_training_best is in percentage
-- points against the best training run of the model (same metric).
CREATE OR REPLACE VIEW curated.unified_monitoring_alerts AS
WITH best AS (
    SELECT model_name,
           max(accuracy) AS accuracy, max(f1) AS f1, max(roc_auc) AS roc_auc,
           min(log_loss) AS log_loss, max(roi) AS roi
    FROM mlops.training_runs WHERE status = 'FINISHED' GROUP BY model_name
)
SELECT a.alert_id,
       a.kind,
       a.model_name,
       a.model_version,
       a.metric,
       a.severity,
       a.status,
       a.observed,
       a.baseline,
       a.threshold,
       a.degradation,
       a.first_seen,
       a.last_seen,
       CASE a.metric
           WHEN 'accuracy' THEN (b.accuracy - a.observed) * 100.0
           WHEN 'f1' THEN (b.f1 - a.observed) * 100.0
           WHEN 'roc_auc' THEN (b.roc_auc - a.observed) * 100.0
           WHEN 'log_loss' THEN (a.observed - b.log_loss) * 100.0
           WHEN 'roi' THEN (b.roi - a.observed) * 100.0
       END AS degradation_from_training_best,
       a.mlflow_experiment_id,
       coalesce(a.mlflow_run_id, a.training_local_run_id) AS mlflow_run_id,
       a.training_local_run_id,
       a.message
FROM mlops.ml_performance_alerts a
LEFT JOIN best b ON b.model_name = a.model_name;
