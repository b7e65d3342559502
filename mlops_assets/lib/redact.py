"""Masks credentials inside free text before it is stored or shown.

Every error text that reaches a table (`last_error`, alert messages), a log line, Dagster
metadata, a CLI line or a webhook body goes through `redact` first. Exception texts from
MLflow, requests, psycopg and DuckDB routinely quote the URI or DSN they failed on, and those
can carry a password (`http://user:pw@host`), a token in the query string (`?token=...`,
presigned `X-Amz-Signature=...`) or a libpq `password=...` pair.

What is masked, and why this is not a URL parser: the text is an arbitrary message, so the
patterns find URIs wherever they appear. The user name stays (it helps to debug and is not a
secret); the password and token values become `***`. Literal secrets known to the caller (the
webhook URL, `MLFLOW_TRACKING_TOKEN`) can be passed in `secrets` and are replaced whole.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

MASK = "***"

# scheme://user:password@  -> scheme://user:***@ . The password part is greedy up to the last
# '@' before the host, so a password holding a raw '@' is masked whole.
_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s/?#@:]*):(?P<pw>[^\s/?#]*)@"
)
# Query or fragment parameters whose name says they hold a secret.
_SECRET_WORDS = (
    r"token|secret|password|passwd|pwd|apikey|api[_-]?key|access[_-]?key|key|sig|signature"
    r"|credential|auth|authorization|session|code"
)
_QUERY_PARAM = re.compile(
    rf"(?P<lead>[?&;#](?:[\w.\-]*(?:{_SECRET_WORDS})[\w.\-]*)=)(?P<value>[^&#\s\"'<>]+)",
    re.IGNORECASE,
)
# libpq keyword/value DSNs and similar `password=...` / `password: ...` pairs in messages.
_KEY_VALUE = re.compile(
    r"(?P<lead>\b(?:password|passwd|pwd|secret|token|api_key|apikey)\s*[=:]\s*)"
    r"(?P<value>'[^']*'|\"[^\"]*\"|[^\s,;&)]+)",
    re.IGNORECASE,
)
# Environment variables whose values are secrets wherever they show up.
SECRET_ENV_VARS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD", "MLOPS_ALERT_WEBHOOK_URL")
_MIN_LITERAL = 4  # shorter literals would mask ordinary words


def _mask_userinfo(match: re.Match[str]) -> str:
    return f"{match['scheme']}{match['user']}:{MASK}@"


def redact(text: object, secrets: Iterable[str | None] = ()) -> str:
    """`text` as a string with URI passwords, token parameters, `password=` pairs and the given
    literal `secrets` (plus the values of `SECRET_ENV_VARS`) replaced by `***`."""
    out = str(text)
    literals = {s for s in secrets if s and len(s) >= _MIN_LITERAL}
    literals |= {v for v in (os.environ.get(n) for n in SECRET_ENV_VARS) if v and len(v) >= 4}
    for literal in sorted(literals, key=len, reverse=True):
        out = out.replace(literal, MASK)
    out = _USERINFO.sub(_mask_userinfo, out)
    out = _QUERY_PARAM.sub(lambda m: f"{m['lead']}{MASK}", out)
    return _KEY_VALUE.sub(lambda m: f"{m['lead']}{MASK}", out)


def redact_optional(text: object | None) -> str | None:
    """`redact` that keeps None as None (for nullable error columns)."""
    return None if text is None else redact(text)


def strip_credentials(url: str) -> str:
    """`url` without its userinfo and with secret-looking query values masked: a link that
    can be shown (UI links built from a tracking URI that carries `user:password@`)."""
    stripped = _USERINFO.sub(lambda m: m["scheme"], url, count=1)
    return _QUERY_PARAM.sub(lambda m: f"{m['lead']}{MASK}", stripped)
