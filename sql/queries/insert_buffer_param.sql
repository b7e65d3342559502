-- MLflow params are immutable once set, so a second value for a key is an error, not an update.
INSERT INTO mlops.mlflow_buffer_params (local_run_id, key, value) VALUES (:id, :k, :v)
