-- The role `mlops-assets query` runs as: no login, no superuser, no file or program rights.
CREATE ROLE mlops_reader NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOBYPASSRLS
