-- The inference log moved to typed per-model tables (schema inference, created from each
-- model's contract); the JSON-per-row table nothing writes any more goes.
DROP TABLE IF EXISTS mlops.production_predictions;
