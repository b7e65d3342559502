UPDATE mlops.alert_events
SET attempts = attempts + 1, last_error = :error, claimed_by = NULL, claim_expires_at = NULL
WHERE event_id = :event_id AND delivered_at IS NULL
