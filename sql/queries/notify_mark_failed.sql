-- Give up on one alert event: it stays in the table with its reason, and is never sent again.
UPDATE mlops.alert_events
SET attempts = attempts + 1, last_error = :error, failed_at = :at,
    claimed_by = NULL, claim_expires_at = NULL
WHERE event_id = :event_id AND delivered_at IS NULL
