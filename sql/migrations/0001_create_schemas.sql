-- Schemas: `mlops` holds the tables the platform writes, `curated` the views analysts read.
CREATE SCHEMA IF NOT EXISTS mlops;
CREATE SCHEMA IF NOT EXISTS curated;
