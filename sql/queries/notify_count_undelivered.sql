SELECT count(*) AS n FROM mlops.alert_events WHERE delivered_at IS NULL AND failed_at IS NULL
