-- Per model, version and day: production metrics beside the training metrics of the run they
-- are judged against and of the model's best run, with MLflow ids.
CREATE OR REPLACE VIEW curated.unified_model_lifecycle AS
WITH daily AS (
    SELECT model_name, model_version, metric_date, training_local_run_id,
           max(CASE WHEN metric = 'accuracy' THEN value END) AS production_accuracy,
           max(CASE WHEN metric = 'roi' THEN value END) AS production_roi,
           max(CASE WHEN metric = 'f1' THEN value END) AS production_f1,
           max(n_settled) AS n_settled,
           max(CASE level WHEN 'critical' THEN 2 WHEN 'warning' THEN 1 WHEN 'ok' THEN 0 END)
               AS worst_level
    FROM mlops.production_metrics
    GROUP BY model_name, model_version, metric_date, training_local_run_id
),
best AS (
    SELECT model_name, max(accuracy) AS best_training_accuracy, max(roi) AS best_training_roi
    FROM mlops.training_runs WHERE status = 'FINISHED' GROUP BY model_name
)
SELECT d.model_name,
       d.model_version,
       d.metric_date,
       r.accuracy AS training_accuracy,
       r.roi AS training_roi,
       b.best_training_accuracy,
       b.best_training_roi,
       d.production_accuracy,
       d.production_roi,
       d.production_f1,
       d.n_settled,
       (r.accuracy - d.production_accuracy) * 100.0 AS accuracy_degradation,
       (r.roi - d.production_roi) * 100.0 AS roi_degradation,
       CASE WHEN d.worst_level IS NULL THEN 'UNKNOWN'
            WHEN d.worst_level = 2 THEN 'CRITICAL'
            WHEN d.worst_level = 1 THEN 'WARNING'
            ELSE 'HEALTHY' END AS overall_status,
       r.mlflow_experiment_id,
       coalesce(r.mlflow_run_id, r.local_run_id) AS mlflow_run_id,
       r.local_run_id AS training_local_run_id,
       r.tracking_status
FROM daily d
JOIN mlops.training_runs r ON r.local_run_id = d.training_local_run_id
LEFT JOIN best b ON b.model_name = d.model_name;
