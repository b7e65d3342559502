-- A lease on each buffered run: whoever holds it (a training run recording or replaying its
-- own run, the flush sensor, `mlops-assets flush`) is the only process that writes the run to
-- MLflow. Taking it is one conditional UPDATE, so two replays can never both create the run.
-- lease_expires_at is epoch seconds; a recording process renews it while it is alive, so an
-- expired lease on a run still `recording` means the process died.
ALTER TABLE mlops.mlflow_buffer_runs ADD COLUMN IF NOT EXISTS lease_owner TEXT;
ALTER TABLE mlops.mlflow_buffer_runs ADD COLUMN IF NOT EXISTS lease_expires_at DOUBLE PRECISION;
-- Why a run is `abandoned` (its recording process died before it finished).
ALTER TABLE mlops.mlflow_buffer_runs ADD COLUMN IF NOT EXISTS abandoned_reason TEXT;
