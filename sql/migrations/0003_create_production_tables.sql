-- Production inference log. Features are JSON so any model's inputs fit; the outcome arrives
-- later (settled_at) because labels are late.
CREATE TABLE IF NOT EXISTS mlops.production_predictions (
    prediction_id          TEXT PRIMARY KEY,
    prediction_date        DATE NOT NULL,
    model_name             TEXT NOT NULL,
    model_version          TEXT,
    training_local_run_id  TEXT NOT NULL,
    mlflow_run_id          TEXT,
    features_json          TEXT NOT NULL,
    prediction             INTEGER NOT NULL,
    probability            DOUBLE PRECISION NOT NULL,
    odds                   DOUBLE PRECISION,
    outcome                INTEGER,
    predicted_at           TIMESTAMP NOT NULL,
    settled_at             TIMESTAMP
);
CREATE INDEX IF NOT EXISTS production_predictions_day_idx ON mlops.production_predictions (model_name, prediction_date);

-- One row per model, day and metric, with the training-baseline value beside it.
CREATE TABLE IF NOT EXISTS mlops.production_metrics (
    model_name             TEXT NOT NULL,
    model_version          TEXT,
    metric_date            DATE NOT NULL,
    metric                 TEXT NOT NULL,
    value                  DOUBLE PRECISION,
    baseline_value         DOUBLE PRECISION,
    degradation_abs        DOUBLE PRECISION,
    degradation_rel        DOUBLE PRECISION,
    warning_threshold      DOUBLE PRECISION,
    critical_threshold     DOUBLE PRECISION,
    level                  TEXT NOT NULL,  -- ok | warning | critical | insufficient_data | undefined
    note                   TEXT,
    n_predictions          INTEGER NOT NULL,
    n_settled              INTEGER NOT NULL,
    training_local_run_id  TEXT NOT NULL,
    mlflow_experiment_id   TEXT,
    mlflow_run_id          TEXT,
    computed_at            TIMESTAMP NOT NULL,
    PRIMARY KEY (model_name, metric_date, metric)
);
