-- Claim one pending alert event for sending; returns it when this caller got the claim.
UPDATE mlops.alert_events
SET claimed_by = :owner, claim_expires_at = :expires
WHERE event_id = :event_id
  AND delivered_at IS NULL
  AND failed_at IS NULL
  AND (claimed_by IS NULL OR claimed_by = :owner OR claim_expires_at < :now)
RETURNING event_id
