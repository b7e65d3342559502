UPDATE mlops.alert_events
SET delivered_at = :at
WHERE event_id = :event_id AND delivered_at IS NULL
