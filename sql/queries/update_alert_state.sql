UPDATE mlops.ml_performance_alerts
SET severity = :severity,
    status = CASE WHEN :resolved THEN 'resolved' WHEN status = 'acknowledged' THEN status
                  ELSE :status END,
    observed = :observed, threshold = :threshold, degradation = :degradation,
    baseline = :baseline, breach_days = :breach_days, ok_days = :ok_days,
    last_seen = :last_seen, last_evaluated = :last_evaluated, updated_at = :t,
    resolved_at = CASE WHEN :resolved THEN :t ELSE resolved_at END
WHERE alert_id = :a
