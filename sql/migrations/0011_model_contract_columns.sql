-- The model contract: three task types, models trained here or registered elsewhere. Metrics
-- of every task are kept as JSON; the fixed metric columns stay for binary models (NULL for
-- the others, never 0).
ALTER TABLE mlops.training_runs ADD COLUMN IF NOT EXISTS task TEXT;
ALTER TABLE mlops.training_runs ADD COLUMN IF NOT EXISTS metrics_json TEXT;
ALTER TABLE mlops.training_runs ADD COLUMN IF NOT EXISTS origin TEXT;
