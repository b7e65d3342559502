INSERT INTO mlops.ingest_batches (
    model_name, kind, batch_id, n_rows, n_good, n_quarantined, days, ingested_at
) VALUES (
    :model_name, :kind, :batch_id, :n_rows, :n_good, :n_quarantined, :days, :ingested_at
)
