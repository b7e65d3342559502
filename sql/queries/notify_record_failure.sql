UPDATE mlops.alert_events
SET attempts = attempts + 1, last_error = :error
WHERE event_id = :event_id AND delivered_at IS NULL
