-- A model's open alerts of one kind raised against another training run than the one judged.
SELECT alert_id, metric, severity, message
FROM mlops.ml_performance_alerts
WHERE model_name = :m AND kind = :k AND status IN ('open', 'acknowledged')
  AND training_local_run_id <> :run
ORDER BY alert_id
