-- An alert event that can never be delivered (it cannot be formatted, the webhook refuses it,
-- or it failed too many times) is marked failed, so it stops holding back the events behind it.
ALTER TABLE mlops.alert_events ADD COLUMN IF NOT EXISTS failed_at TIMESTAMP;
