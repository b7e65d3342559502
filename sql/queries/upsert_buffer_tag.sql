INSERT INTO mlops.mlflow_buffer_tags (local_run_id, key, value) VALUES (:id, :k, :v)
ON CONFLICT (local_run_id, key) DO UPDATE SET value = excluded.value
