"""Parse-level checks for the read-only `query` command on PostgreSQL.

PostgreSQL's READ ONLY transaction still lets `COPY ... TO PROGRAM` run a shell command and
lets `pg_read_file` read server files, so read-only needs more than the transaction mode. The
query runs as a role without those rights where the connection can arrange it (see
`PostgresWarehouse.query_readonly`); this module is the layer under it that works everywhere:
a small lexer that knows PostgreSQL's comments, string literals (standard, `E'...'`, dollar
quoted) and quoted identifiers, so that a function name inside a string is not a call and a
call written as a quoted identifier is still one.

The rules: exactly one statement, starting with SELECT or WITH (parentheses allowed); no
data-changing or session-changing keyword anywhere outside strings; no call to a function that
reads or writes server files, runs SQL text, changes settings or signals other sessions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*")
_UNICODE_ESCAPE = re.compile(r"(?i)\bu&[\"']")
_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
# Keywords that make a SELECT change something or leave the read-only session.
FORBIDDEN_KEYWORDS = frozenset(
    {
        "insert", "update", "delete", "merge", "copy", "into", "call", "do", "execute",
        "prepare", "grant", "revoke", "lock", "set", "reset", "listen", "notify", "create",
        "alter", "drop", "truncate", "vacuum", "refresh", "import", "load", "security",
        "commit", "rollback", "begin", "savepoint", "declare",
    }
)  # fmt: skip
# Functions that touch server files or programs, run SQL text, change settings or roles,
# take locks or signal other backends. Matched against the unqualified, lower-cased name.
FORBIDDEN_FUNCTIONS = re.compile(
    r"^(?:pg_read_file|pg_read_binary_file|pg_ls_\w*|pg_stat_file|pg_file_\w*|pg_logdir_ls"
    r"|lo_\w+|lo(?:open|close|read|write|creat|import|export|unlink|tell|seek)\w*"
    r"|dblink\w*|\w*_to_xml\w*|query_to_xmlschema|\w*xmlschema\w*|set_config"
    r"|pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_rotate_logfile\w*|pg_promote"
    r"|pg_switch_wal|pg_create_\w+|pg_drop_\w+|pg_replication_\w+|pg_logical_\w+"
    r"|pg_(?:try_)?advisory_\w+|pg_sleep\w*|pg_stat_reset\w*|pg_backup_\w+|pg_notify"
    r"|pg_import_system_collations|pg_log_backend_memory_contexts|pg_export_snapshot"
    r"|nextval|setval|txid_current|pg_current_xact_id|current_setting)$"
)


class UnsafeQueryError(ValueError):
    """The text is not one plain SELECT; the message says what was found."""


@dataclass(frozen=True)
class Token:
    kind: str  # "word" | "quoted" | "punct"
    value: str


def tokens(sql: str) -> list[Token]:
    """Words, quoted identifiers and punctuation of `sql`; comments and string literals are
    dropped (they cannot call anything). Raises UnsafeQueryError on an unterminated one."""
    out: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace():
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            depth, i = 1, i + 2  # PostgreSQL block comments nest
            while depth and i < n:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            if depth:
                raise UnsafeQueryError("unterminated block comment")
        elif ch == "'" or (ch in "eE" and sql.startswith("'", i + 1)):
            backslash = ch != "'"
            i = i + 2 if backslash else i + 1
            while True:
                if i >= n:
                    raise UnsafeQueryError("unterminated string literal")
                if backslash and sql[i] == "\\":
                    i += 2
                elif sql[i] == "'":
                    if sql.startswith("''", i):
                        i += 2
                    else:
                        i += 1
                        break
                else:
                    i += 1
        elif ch == '"':
            end = i + 1
            value = []
            while True:
                if end >= n:
                    raise UnsafeQueryError("unterminated quoted identifier")
                if sql.startswith('""', end):
                    value.append('"')
                    end += 2
                elif sql[end] == '"':
                    break
                else:
                    value.append(sql[end])
                    end += 1
            out.append(Token("quoted", "".join(value)))
            i = end + 1
        elif ch == "$" and (match := _DOLLAR.match(sql, i)):
            close = sql.find(match.group(0), match.end())
            if close < 0:
                raise UnsafeQueryError("unterminated dollar-quoted string")
            i = close + len(match.group(0))
        elif match := _WORD.match(sql, i):
            out.append(Token("word", match.group(0)))
            i = match.end()
        else:
            out.append(Token("punct", ch))
            i += 1
    return out


def check_select_only(sql: str) -> None:
    """Raise UnsafeQueryError unless `sql` is one plain SELECT (or WITH ... SELECT)."""
    if _UNICODE_ESCAPE.search(sql):
        # U&"..." spells an identifier with escapes, which would hide a function name.
        raise UnsafeQueryError("unicode-escaped identifiers or strings (U&) are not allowed")
    found = tokens(sql)
    while found and found[-1] == Token("punct", ";"):
        found.pop()
    if any(t == Token("punct", ";") for t in found):
        raise UnsafeQueryError("expected exactly one SQL statement, got several")
    first = next((t for t in found if t != Token("punct", "(")), None)
    if first is None:
        raise UnsafeQueryError("the query is empty")
    if first.kind != "word" or first.value.lower() not in ("select", "with"):
        raise UnsafeQueryError(f"only a SELECT can run read-only, got {first.value.upper()}")
    for index, token in enumerate(found):
        if token.kind == "word" and token.value.lower() in FORBIDDEN_KEYWORDS:
            raise UnsafeQueryError(
                f"only a plain SELECT can run read-only; {token.value.upper()} is not allowed"
            )
        called = index + 1 < len(found) and found[index + 1] == Token("punct", "(")
        if called and token.kind != "punct" and FORBIDDEN_FUNCTIONS.match(token.value.lower()):
            raise UnsafeQueryError(
                f"function {token.value}() is not allowed in a read-only query "
                "(server files, programs, settings, locks or dynamic SQL)"
            )
