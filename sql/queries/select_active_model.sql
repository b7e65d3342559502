-- The run production is judged against: the champion if one was promoted, else the latest
-- baselined run of the model.
SELECT b.local_run_id, b.model_name, coalesce(r.model_version, b.model_version) AS model_version,
       r.mlflow_experiment_id, r.mlflow_run_id, b.metrics_json, b.metric_std_json,
       b.features_json, b.n_validation, b.reference_sample, b.estimation_json
FROM mlops.training_baselines b
JOIN mlops.training_runs r ON r.local_run_id = b.local_run_id
WHERE b.model_name = :model
ORDER BY r.is_champion DESC, b.created_at DESC
LIMIT 1
