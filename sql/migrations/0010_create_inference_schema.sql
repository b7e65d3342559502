-- `inference` holds one typed predictions table and one labels table per model. Their columns
-- come from each model's contract, so storage/inference_log.py creates them (the names are
-- validated and quoted there); this file makes the schema and the tables every model shares.
CREATE SCHEMA IF NOT EXISTS inference;

-- Rows of the serving system's data that could not be stored, with the reason and the batch
-- (file or table) they came from. A batch missing a column altogether is one row with row_id
-- NULL: the whole batch is rejected rather than each row.
CREATE TABLE IF NOT EXISTS mlops.quarantine (
    model_name      TEXT NOT NULL,
    batch_id        TEXT,
    source          TEXT NOT NULL,
    kind            TEXT NOT NULL,  -- prediction | label
    row_id          TEXT,
    reason          TEXT NOT NULL,
    row_json        TEXT,
    quarantined_at  TIMESTAMP NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_model_idx ON mlops.quarantine (model_name, quarantined_at);

-- One row per ingestion: how many rows came, landed and were quarantined, and the days touched.
CREATE TABLE IF NOT EXISTS mlops.ingest_batches (
    model_name      TEXT NOT NULL,
    kind            TEXT NOT NULL,  -- prediction | label
    batch_id        TEXT NOT NULL,
    n_rows          INTEGER NOT NULL,
    n_good          INTEGER NOT NULL,
    n_quarantined   INTEGER NOT NULL,
    days            TEXT NOT NULL,  -- JSON list of ISO dates
    ingested_at     TIMESTAMP NOT NULL
);
CREATE INDEX IF NOT EXISTS ingest_batches_model_idx ON mlops.ingest_batches (model_name, ingested_at);
