INSERT INTO mlops.mlflow_buffer_runs (
    local_run_id, experiment_name, run_name, registered_model_name, artifact_dir,
    start_time_ms, run_status, state, created_at, lease_owner, lease_expires_at
) VALUES (
    :local_run_id, :experiment_name, :run_name, :registered_model_name, :artifact_dir,
    :start_time_ms, 'RUNNING', :state, :created_at, :owner, :expires
)
