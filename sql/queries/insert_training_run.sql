-- The ids the training run's own replay returned; when another process replayed the run first
-- (it held the lease), the buffer already has them and they are taken from there, so the row
-- is never written with NULL ids for a run MLflow has.
INSERT INTO mlops.training_runs (
    local_run_id, model_name, model_version, mlflow_experiment_id, mlflow_run_id,
    experiment_name, status, tracking_status, accuracy, precision_score, recall, f1, roc_auc,
    log_loss, roi, n_train, n_test, params_json, started_at, finished_at
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
    :m_roc_auc, :m_log_loss, :m_roi, :n_train, :n_test, :params_json, :started_at, :finished_at
)
