"""The parse-level layer of the read-only query on PostgreSQL."""

import pytest

from mlops_assets.lib.sql_guard import UnsafeQueryError, check_select_only


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "select * from mlops.training_runs;",
        "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
        "(SELECT 1) UNION ALL (SELECT 2)",
        "SELECT 'pg_read_file(' AS s, $$ ; COPY $$ AS t -- ; DELETE\n",
        "SELECT lower(model_name), count(*) FROM mlops.ml_performance_alerts GROUP BY 1",
        "SELECT E'it\\'s; pg_ls_dir(' AS s",
        'SELECT "update" FROM t',  # quoted identifiers are names, not keywords
        "/* nested /* comment; */ still */ SELECT 1",
    ],
)
def test_plain_selects_pass(sql: str):
    check_select_only(sql)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("COPY (SELECT 1) TO PROGRAM 'id'", "got COPY"),
        ("COPY mlops.training_runs TO '/tmp/x.csv'", "got COPY"),
        ("SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
        ("SELECT \"pg_read_file\"('/etc/passwd')", "pg_read_file"),
        ("SELECT pg_catalog.pg_ls_dir('.')", "pg_ls_dir"),
        ("SELECT lo_import('/etc/passwd')", "lo_import"),
        ("SELECT lo_export(1, '/tmp/x')", "lo_export"),
        ("SELECT query_to_xml('COPY x TO PROGRAM ''id''', true, true, '')", "query_to_xml"),
        ("SELECT set_config('role', 'postgres', false)", "set_config"),
        ("SELECT pg_terminate_backend(1)", "pg_terminate_backend"),
        ("SELECT pg_advisory_lock(4242001)", "pg_advisory_lock"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "DELETE"),
        ("SELECT * INTO t2 FROM t", "INTO"),
        ("SELECT * FROM t FOR UPDATE", "UPDATE"),
        ("SELECT 1; SELECT 2", "exactly one"),
        ("SET ROLE postgres", "got SET"),
        ("", "empty"),
        ("SELECT 'unterminated", "unterminated"),
        ("SELECT U&\"pg\\005fread_file\"('/etc/passwd')", "unicode"),
    ],
)
def test_anything_else_is_refused_with_the_reason(sql: str, reason: str):
    with pytest.raises(UnsafeQueryError, match=reason):
        check_select_only(sql)
