SELECT * FROM mlops.ml_feature_drift_detection
WHERE model_name = :m AND partition_date BETWEEN :first AND :last
ORDER BY partition_date, feature
