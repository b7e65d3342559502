-- Open or acknowledged asset-check alerts for one model and check; the caller matches the
-- asset named in `message`.
SELECT alert_id, severity, status, message
FROM mlops.ml_performance_alerts
WHERE kind = 'asset_check'
  AND model_name = :model_name
  AND metric = :metric
  AND status IN ('open', 'acknowledged')
ORDER BY alert_id
