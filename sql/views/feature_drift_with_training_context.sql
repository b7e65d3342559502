-- Drift rows joined to the baseline run's training metrics and MLflow ids.
CREATE OR REPLACE VIEW curated.feature_drift_with_training_context AS
SELECT f.model_name,
       f.model_version,
       f.partition_date,
       f.feature,
       f.feature_kind,
       f.test,
       f.p_value_adjusted,
       f.effect_size_name,
       f.effect_size,
       f.verdict,
       f.dataset_verdict,
       f.dataset_share_drifted,
       coalesce(f.baseline_mlflow_run_id, f.baseline_local_run_id) AS baseline_mlflow_run_id,
       r.mlflow_experiment_id,
       r.accuracy AS training_accuracy,
       r.roi AS training_roi,
       r.finished_at AS trained_at,
       r.tracking_status
FROM mlops.ml_feature_drift_detection f
JOIN mlops.training_runs r ON r.local_run_id = f.baseline_local_run_id;
