-- A run trained here is inserted once; a registered version (keyed by its MLflow run id) is
-- refreshed each time its baseline is rebuilt. The ids are the ones the training run's own
-- replay returned; when another process replayed the run first (it held the lease), the buffer
-- already has them and they are taken from there, so the row is never written with NULL ids
-- for a run MLflow has.
INSERT INTO mlops.training_runs (
    local_run_id, model_name, model_version, mlflow_experiment_id, mlflow_run_id,
    experiment_name, status, tracking_status, accuracy, precision_score, recall, f1, roc_auc,
    log_loss, roi, n_train, n_test, params_json, started_at, finished_at, task, metrics_json,
    origin
) VALUES (
    :local_run_id, :model_name,
    coalesce(:model_version, (SELECT b.model_version FROM mlops.mlflow_buffer_runs b
                              WHERE b.local_run_id = :local_run_id AND b.state = 'replayed')),
    coalesce(:mlflow_experiment_id, (SELECT b.mlflow_experiment_id FROM mlops.mlflow_buffer_runs b
                                     WHERE b.local_run_id = :local_run_id AND b.state = 'replayed')),
    coalesce(:mlflow_run_id, (SELECT b.mlflow_run_id FROM mlops.mlflow_buffer_runs b
                              WHERE b.local_run_id = :local_run_id AND b.state = 'replayed')),
    :experiment_name, :status,
    CASE WHEN EXISTS (SELECT 1 FROM mlops.mlflow_buffer_runs b
                      WHERE b.local_run_id = :local_run_id AND b.state = 'replayed')
         THEN 'TRACKED' ELSE :tracking_status END,
    :m_accuracy, :m_precision, :m_recall, :m_f1,
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
