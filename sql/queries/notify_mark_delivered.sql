UPDATE mlops.alert_events
SET delivered_at = :at, claimed_by = NULL, claim_expires_at = NULL
WHERE event_id = :event_id AND delivered_at IS NULL
