-- One row per model and version in service: latest metrics, open alerts, latest drift.
WITH runs AS (
    SELECT model_name, coalesce(model_version, local_run_id) AS model_version, local_run_id,
           coalesce(mlflow_run_id, local_run_id) AS run_ref, tracking_status, finished_at,
           is_champion
    FROM mlops.training_runs
),
latest_day AS (
    SELECT training_local_run_id, max(metric_date) AS metric_date
    FROM mlops.production_metrics GROUP BY training_local_run_id
),
latest AS (
    SELECT m.training_local_run_id, m.metric_date,
           max(CASE WHEN m.metric = 'accuracy' THEN m.value END) AS accuracy,
           max(CASE WHEN m.metric = 'accuracy' THEN m.baseline_value END) AS baseline_accuracy,
           max(CASE WHEN m.metric = 'roi' THEN m.value END) AS roi,
           max(CASE WHEN m.metric = 'roi' THEN m.baseline_value END) AS baseline_roi,
           max(CASE m.level WHEN 'critical' THEN 2 WHEN 'warning' THEN 1 WHEN 'ok' THEN 0 END)
               AS worst_level
    FROM mlops.production_metrics m
    JOIN latest_day l ON l.training_local_run_id = m.training_local_run_id
                     AND l.metric_date = m.metric_date
    GROUP BY m.training_local_run_id, m.metric_date
),
alerts AS (
    SELECT training_local_run_id,
           sum(CASE WHEN severity = 'info' THEN 1 ELSE 0 END) AS n_info,
           sum(CASE WHEN severity = 'warning' THEN 1 ELSE 0 END) AS n_warning,
           sum(CASE WHEN severity = 'critical' THEN 1 ELSE 0 END) AS n_critical
    FROM mlops.ml_performance_alerts
    WHERE status IN ('open', 'acknowledged')
    GROUP BY training_local_run_id
),
drift_day AS (
    SELECT baseline_local_run_id, max(partition_date) AS partition_date
    FROM mlops.ml_feature_drift_detection GROUP BY baseline_local_run_id
),
drift AS (
    SELECT f.baseline_local_run_id, max(f.dataset_share_drifted) AS share,
           max(f.dataset_verdict) AS verdict
    FROM mlops.ml_feature_drift_detection f
    JOIN drift_day d ON d.baseline_local_run_id = f.baseline_local_run_id
                    AND d.partition_date = f.partition_date
    GROUP BY f.baseline_local_run_id
)
SELECT r.model_name, r.model_version, r.local_run_id, r.run_ref, r.tracking_status,
       r.finished_at, r.is_champion, l.metric_date, l.accuracy, l.baseline_accuracy, l.roi,
       l.baseline_roi, l.worst_level, coalesce(a.n_info, 0) AS n_info, coalesce(a.n_warning, 0) AS n_warning,
       coalesce(a.n_critical, 0) AS n_critical, d.share AS drift_share, d.verdict AS drift_verdict
FROM runs r
LEFT JOIN latest l ON l.training_local_run_id = r.local_run_id
LEFT JOIN alerts a ON a.training_local_run_id = r.local_run_id
LEFT JOIN drift d ON d.baseline_local_run_id = r.local_run_id
ORDER BY r.model_name, r.finished_at
