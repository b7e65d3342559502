SELECT count(*) AS n FROM mlops.alert_events WHERE delivered_at IS NULL
