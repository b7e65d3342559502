-- Open (or acknowledged) alerts per run in service, for the health table's reasons.
SELECT training_local_run_id, kind, metric, severity, first_seen
FROM mlops.ml_performance_alerts
WHERE status IN ('open', 'acknowledged') AND training_local_run_id IS NOT NULL
ORDER BY training_local_run_id, severity, kind, metric
