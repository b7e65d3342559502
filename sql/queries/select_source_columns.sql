-- Columns of a user's table or view, matched without case: PostgreSQL folds unquoted names to
-- lower case, so `serving.Predictions` declared in a contract is `serving.predictions` there.
SELECT table_schema, table_name, column_name, data_type
FROM information_schema.columns
WHERE lower(table_schema) = lower(:schema_name) AND lower(table_name) = lower(:table_name)
ORDER BY ordinal_position
