INSERT INTO mlops.training_runs (
    local_run_id, model_name, model_version, mlflow_experiment_id, mlflow_run_id,
    experiment_name, status, tracking_status, accuracy, precision_score, recall, f1, roc_auc,
    log_loss, roi, n_train, n_test, params_json, started_at, finished_at
) VALUES (
    :local_run_id, :model_name, :model_version, :mlflow_experiment_id, :mlflow_run_id,
    :experiment_name, :status, :tracking_status, :m_accuracy, :m_precision, :m_recall, :m_f1,
    :m_roc_auc, :m_log_loss, :m_roi, :n_train, :n_test, :params_json, :started_at, :finished_at
)
