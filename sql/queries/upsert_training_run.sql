-- A run trained here is inserted once; a registered version (keyed by its MLflow run id) is
-- refreshed each time its baseline is rebuilt.
INSERT INTO mlops.training_runs (
    local_run_id, model_name, model_version, mlflow_experiment_id, mlflow_run_id,
    experiment_name, status, tracking_status, accuracy, precision_score, recall, f1, roc_auc,
    log_loss, roi, n_train, n_test, params_json, started_at, finished_at, task, metrics_json,
    origin
) VALUES (
    :local_run_id, :model_name, :model_version, :mlflow_experiment_id, :mlflow_run_id,
    :experiment_name, :status, :tracking_status, :m_accuracy, :m_precision, :m_recall, :m_f1,
    :m_roc_auc, :m_log_loss, :m_roi, :n_train, :n_test, :params_json, :started_at, :finished_at,
    :task, :metrics_json, :origin
)
ON CONFLICT (local_run_id) DO UPDATE SET
    model_version = excluded.model_version,
    mlflow_experiment_id = excluded.mlflow_experiment_id,
    mlflow_run_id = excluded.mlflow_run_id,
    tracking_status = excluded.tracking_status,
    accuracy = excluded.accuracy, precision_score = excluded.precision_score,
    recall = excluded.recall, f1 = excluded.f1, roc_auc = excluded.roc_auc,
    log_loss = excluded.log_loss, roi = excluded.roi,
    n_test = excluded.n_test, finished_at = excluded.finished_at,
    metrics_json = excluded.metrics_json
