SELECT a.*, e.event_type, e.severity AS event_severity
FROM mlops.ml_performance_alerts a
LEFT JOIN mlops.alert_events e ON e.alert_id = a.alert_id
WHERE a.model_name = :m AND a.first_seen BETWEEN :first AND :last
ORDER BY a.kind, a.metric, a.first_seen, a.alert_id, e.event_id
