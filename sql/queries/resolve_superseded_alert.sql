UPDATE mlops.ml_performance_alerts
SET status = 'resolved', resolved_at = :t, updated_at = :t, message = :msg
WHERE alert_id = :a
