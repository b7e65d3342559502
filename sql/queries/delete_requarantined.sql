-- The earlier record of a row quarantined again from the same batch (a rerun of its day).
DELETE FROM mlops.quarantine
WHERE model_name = :model_name AND kind = :kind AND batch_id = :batch_id AND row_id = :row_id
