-- Can the connecting user create the read-only query role, and does it exist yet?
SELECT
    (r.rolsuper OR r.rolcreaterole) AS can_create,
    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mlops_reader') AS reader_exists
FROM pg_roles AS r
WHERE r.rolname = current_user
