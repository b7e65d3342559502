-- Read access to the platform's schemas only; re-run after migrations add tables.
GRANT USAGE ON SCHEMA mlops, curated TO mlops_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA mlops, curated TO mlops_reader;
