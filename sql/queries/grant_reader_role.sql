-- Read access to the platform's schemas only (the inference log included, as on the embedded
-- engine); re-run after migrations and ingestion add tables.
GRANT USAGE ON SCHEMA mlops, curated, inference TO mlops_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA mlops, curated, inference TO mlops_reader;
