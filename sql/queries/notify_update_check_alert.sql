-- A repeated failure of an asset check that already has an open alert.
UPDATE mlops.ml_performance_alerts
SET severity = :severity,
    last_seen = GREATEST(last_seen, :day),
    breach_days = breach_days + 1,
    observed = :observed,
    baseline = :baseline,
    threshold = :threshold,
    degradation = :degradation,
    message = :message,
    updated_at = :at
WHERE alert_id = :alert_id
