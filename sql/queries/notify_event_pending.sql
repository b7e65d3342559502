-- The event, when it is still waiting to be sent (neither delivered nor given up).
SELECT event_id FROM mlops.alert_events
WHERE event_id = :event_id AND delivered_at IS NULL AND failed_at IS NULL
