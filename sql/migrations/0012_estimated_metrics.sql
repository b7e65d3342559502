-- Performance before the labels arrive: a calibrator fitted on the baseline's validation data,
-- and per metric row whether the value is realised (from labels) or estimated (from the
-- model's calibrated probabilities), with the estimate kept beside a realised value so users
-- can see how good the estimates were.
ALTER TABLE mlops.training_baselines ADD COLUMN IF NOT EXISTS estimation_json TEXT;
ALTER TABLE mlops.production_metrics ADD COLUMN IF NOT EXISTS basis TEXT;
ALTER TABLE mlops.production_metrics ADD COLUMN IF NOT EXISTS estimated_value DOUBLE PRECISION;
ALTER TABLE mlops.production_metrics ADD COLUMN IF NOT EXISTS estimated_lower DOUBLE PRECISION;
ALTER TABLE mlops.production_metrics ADD COLUMN IF NOT EXISTS estimated_upper DOUBLE PRECISION;
ALTER TABLE mlops.production_metrics ADD COLUMN IF NOT EXISTS estimation_error DOUBLE PRECISION;
ALTER TABLE mlops.ml_feature_drift_detection ADD COLUMN IF NOT EXISTS impact DOUBLE PRECISION;
