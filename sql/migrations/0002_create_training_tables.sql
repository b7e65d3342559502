-- One row per training run. The run is known by our local id from the start; the MLflow ids
-- are NULL until MLflow has the run (immediately when it is up, after replay when it was down).
CREATE TABLE IF NOT EXISTS mlops.training_runs (
    local_run_id          TEXT PRIMARY KEY,
    model_name            TEXT NOT NULL,
    model_version         TEXT,
    mlflow_experiment_id  TEXT,
    mlflow_run_id         TEXT,
    experiment_name       TEXT NOT NULL,
    status                TEXT NOT NULL,  -- FINISHED | FAILED
    tracking_status       TEXT NOT NULL,  -- TRACKED | PENDING | PARKED
    accuracy              DOUBLE PRECISION,
    precision_score       DOUBLE PRECISION,
    recall                DOUBLE PRECISION,
    f1                    DOUBLE PRECISION,
    roc_auc               DOUBLE PRECISION,
    log_loss              DOUBLE PRECISION,
    roi                   DOUBLE PRECISION,
    n_train               INTEGER NOT NULL,
    n_test                INTEGER NOT NULL,
    params_json           TEXT NOT NULL,
    started_at            TIMESTAMP NOT NULL,
    finished_at           TIMESTAMP NOT NULL,
    is_champion           BOOLEAN NOT NULL DEFAULT FALSE,
    promotion_note        TEXT
);
CREATE INDEX IF NOT EXISTS training_runs_model_idx ON mlops.training_runs (model_name, finished_at);
CREATE INDEX IF NOT EXISTS training_runs_mlflow_idx ON mlops.training_runs (mlflow_run_id);

-- What production is judged by: the held-out metrics of a run, their sampling variability
-- (bootstrap standard deviations, JSON) and a reference sample of the features for drift.
CREATE TABLE IF NOT EXISTS mlops.training_baselines (
    local_run_id            TEXT PRIMARY KEY,
    model_name              TEXT NOT NULL,
    model_version           TEXT,
    baseline_mlflow_run_id  TEXT,
    mlflow_experiment_id    TEXT,
    metrics_json            TEXT NOT NULL,
    metric_std_json         TEXT NOT NULL,
    features_json           TEXT NOT NULL,
    n_validation            INTEGER NOT NULL,
    reference_rows          INTEGER NOT NULL,
    reference_sample        BYTEA NOT NULL,  -- parquet bytes
    created_at              TIMESTAMP NOT NULL
);
CREATE INDEX IF NOT EXISTS training_baselines_model_idx ON mlops.training_baselines (model_name, created_at);
