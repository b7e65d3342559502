-- A claim on each alert event being sent: the run that raised the alert delivers it at once and
-- the notification sensor is the catch-all, so two processes may reach the same event. Taking
-- the claim is one conditional UPDATE, so only one of them posts it. claim_expires_at is epoch
-- seconds, past the longest a send can take; a sender that died mid-send frees it by expiring.
ALTER TABLE mlops.alert_events ADD COLUMN IF NOT EXISTS claimed_by TEXT;
ALTER TABLE mlops.alert_events ADD COLUMN IF NOT EXISTS claim_expires_at DOUBLE PRECISION;
