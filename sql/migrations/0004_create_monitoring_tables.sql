CREATE SEQUENCE IF NOT EXISTS mlops.alert_id_seq;
CREATE SEQUENCE IF NOT EXISTS mlops.alert_event_id_seq;

-- One row per alert; at most one open (or acknowledged) alert per model, kind and metric.
CREATE TABLE IF NOT EXISTS mlops.ml_performance_alerts (
    alert_id               BIGINT PRIMARY KEY DEFAULT nextval('mlops.alert_id_seq'),
    kind                   TEXT NOT NULL,  -- performance | drift | mlflow_service | asset_check
    model_name             TEXT NOT NULL,
    model_version          TEXT,
    metric                 TEXT NOT NULL,
    severity               TEXT NOT NULL,  -- info | warning | critical
    status                 TEXT NOT NULL,  -- open | acknowledged | resolved
    observed               DOUBLE PRECISION,
    baseline               DOUBLE PRECISION,
    threshold              DOUBLE PRECISION,
    degradation            DOUBLE PRECISION,
    breach_days            INTEGER NOT NULL DEFAULT 0,
    ok_days                INTEGER NOT NULL DEFAULT 0,
    first_seen             DATE NOT NULL,
    last_seen              DATE NOT NULL,
    last_evaluated         DATE,
    message                TEXT,
    training_local_run_id  TEXT,
    mlflow_experiment_id   TEXT,
    mlflow_run_id          TEXT,
    created_at             TIMESTAMP NOT NULL,
    updated_at             TIMESTAMP NOT NULL,
    acknowledged_at        TIMESTAMP,
    acknowledged_by        TEXT,
    resolved_at            TIMESTAMP
);
CREATE INDEX IF NOT EXISTS alerts_open_idx ON mlops.ml_performance_alerts (model_name, kind, metric, status);

-- Every alert state change to deliver; the notification sensor sends each once.
CREATE TABLE IF NOT EXISTS mlops.alert_events (
    event_id      BIGINT PRIMARY KEY DEFAULT nextval('mlops.alert_event_id_seq'),
    alert_id      BIGINT NOT NULL,
    event_type    TEXT NOT NULL,  -- opened | escalated | resolved
    severity      TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    delivered_at  TIMESTAMP,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
);

CREATE TABLE IF NOT EXISTS mlops.ml_feature_drift_detection (
    model_name                     TEXT NOT NULL,
    model_version                  TEXT,
    partition_date                 DATE NOT NULL,
    feature                        TEXT NOT NULL,
    feature_kind                   TEXT NOT NULL,
    test                           TEXT NOT NULL,
    statistic                      DOUBLE PRECISION,
    p_value                        DOUBLE PRECISION,
    p_value_adjusted               DOUBLE PRECISION,
    effect_size_name               TEXT,
    effect_size                    DOUBLE PRECISION,
    psi                            DOUBLE PRECISION,
    wasserstein_norm               DOUBLE PRECISION,
    js_distance                    DOUBLE PRECISION,
    verdict                        TEXT NOT NULL,
    reason                         TEXT,
    n_reference                    INTEGER NOT NULL,
    n_current                      INTEGER NOT NULL,
    missing_rate_reference         DOUBLE PRECISION,
    missing_rate_current           DOUBLE PRECISION,
    unseen_categories              TEXT,
    share_outside_reference_range  DOUBLE PRECISION,
    non_finite_current             INTEGER,
    dataset_verdict                TEXT NOT NULL,
    dataset_share_drifted          DOUBLE PRECISION,
    baseline_local_run_id          TEXT NOT NULL,
    baseline_mlflow_run_id         TEXT,
    mlflow_experiment_id           TEXT,
    report_path                    TEXT,
    computed_at                    TIMESTAMP NOT NULL,
    PRIMARY KEY (model_name, partition_date, feature)
);

CREATE TABLE IF NOT EXISTS mlops.ml_model_health_status (
    model_name                TEXT NOT NULL,
    model_version             TEXT NOT NULL,
    overall_status            TEXT NOT NULL,  -- HEALTHY | WARNING | CRITICAL | UNKNOWN
    status_reason             TEXT,
    latest_metric_date        DATE,
    latest_accuracy           DOUBLE PRECISION,
    baseline_accuracy         DOUBLE PRECISION,
    latest_roi                DOUBLE PRECISION,
    baseline_roi              DOUBLE PRECISION,
    open_alerts_info          INTEGER NOT NULL,
    open_alerts_warning       INTEGER NOT NULL,
    open_alerts_critical      INTEGER NOT NULL,
    latest_drift_share        DOUBLE PRECISION,
    latest_drift_verdict      TEXT,
    last_trained_at           TIMESTAMP,
    champion_version          TEXT,
    active_mlflow_run_ids     TEXT NOT NULL,  -- JSON array of MLflow run ids (local ids while pending)
    pending_replay            BOOLEAN NOT NULL,
    updated_at                TIMESTAMP NOT NULL,
    PRIMARY KEY (model_name, model_version)
);
