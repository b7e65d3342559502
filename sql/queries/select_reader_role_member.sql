-- May this session SET ROLE mlops_reader (superusers always may)?
SELECT pg_has_role(current_user, 'mlops_reader', 'MEMBER') AS member
FROM pg_roles
WHERE rolname = 'mlops_reader'
