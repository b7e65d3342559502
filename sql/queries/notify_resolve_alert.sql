UPDATE mlops.ml_performance_alerts
SET status = 'resolved', resolved_at = :at, updated_at = :at, message = :message
WHERE alert_id = :alert_id
