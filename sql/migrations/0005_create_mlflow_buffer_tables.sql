-- The durable MLflow write-ahead buffer: everything a training run logs is stored here first,
-- then replayed into MLflow (at once when it is up, by the flush sensor after an outage).
CREATE TABLE IF NOT EXISTS mlops.mlflow_buffer_runs (
    local_run_id          TEXT PRIMARY KEY,
    experiment_name       TEXT NOT NULL,
    run_name              TEXT NOT NULL,
    registered_model_name TEXT,
    model_artifact_path   TEXT,
    artifact_dir          TEXT,
    start_time_ms         BIGINT NOT NULL,
    end_time_ms           BIGINT,
    run_status            TEXT NOT NULL,    -- FINISHED | FAILED (the MLflow end status)
    state                 TEXT NOT NULL,    -- pending | replayed | parked
    mlflow_experiment_id  TEXT,
    mlflow_run_id         TEXT,
    model_version         TEXT,
    params_done           BOOLEAN NOT NULL DEFAULT FALSE,
    tags_done             BOOLEAN NOT NULL DEFAULT FALSE,
    artifacts_done        BOOLEAN NOT NULL DEFAULT FALSE,
    model_registered      BOOLEAN NOT NULL DEFAULT FALSE,
    run_terminated        BOOLEAN NOT NULL DEFAULT FALSE,
    attempts              INTEGER NOT NULL DEFAULT 0,
    last_error            TEXT,
    created_at            TIMESTAMP NOT NULL,
    replayed_at           TIMESTAMP
);
CREATE INDEX IF NOT EXISTS mlflow_buffer_runs_state_idx ON mlops.mlflow_buffer_runs (state, created_at);

CREATE TABLE IF NOT EXISTS mlops.mlflow_buffer_params (
    local_run_id  TEXT NOT NULL,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    PRIMARY KEY (local_run_id, key)
);

CREATE TABLE IF NOT EXISTS mlops.mlflow_buffer_tags (
    local_run_id  TEXT NOT NULL,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    PRIMARY KEY (local_run_id, key)
);

-- claimed_at is set when a metric is about to be sent and sent_at once MLflow acknowledged it;
-- a metric claimed but not sent after a crash is checked against MLflow before it is resent.
CREATE TABLE IF NOT EXISTS mlops.mlflow_buffer_metrics (
    local_run_id  TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    key           TEXT NOT NULL,
    value         DOUBLE PRECISION NOT NULL,
    timestamp_ms  BIGINT NOT NULL,
    step          BIGINT NOT NULL,
    claimed_at    TIMESTAMP,
    sent_at       TIMESTAMP,
    PRIMARY KEY (local_run_id, seq)
);

CREATE TABLE IF NOT EXISTS mlops.circuit_breakers (
    name                  TEXT PRIMARY KEY,
    state                 TEXT NOT NULL,
    failure_count         INTEGER NOT NULL,
    opened_at             DOUBLE PRECISION,
    half_open_in_flight   INTEGER NOT NULL,
    half_open_successes   INTEGER NOT NULL,
    last_error            TEXT,
    updated_at            DOUBLE PRECISION
);

CREATE SEQUENCE IF NOT EXISTS mlops.breaker_event_id_seq;
CREATE TABLE IF NOT EXISTS mlops.circuit_breaker_events (
    event_id    BIGINT PRIMARY KEY DEFAULT nextval('mlops.breaker_event_id_seq'),
    name        TEXT NOT NULL,
    occurred_at DOUBLE PRECISION NOT NULL,
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    error       TEXT
);
