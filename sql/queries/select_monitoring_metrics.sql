SELECT * FROM mlops.production_metrics
WHERE model_name = :m AND metric_date BETWEEN :first AND :last
ORDER BY metric_date, metric
