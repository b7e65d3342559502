"""The one redaction helper: what it masks in free text, and what it leaves alone."""

import pytest

from mlops_assets.lib.redact import redact, strip_credentials


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        # MLflow/requests errors quote the URI they failed on.
        (
            "HTTPConnectionPool: API request to http://user:S3CRETpw@127.0.0.1:9/api/2.0/x failed",
            "S3CRETpw",
            "http://user:***@127.0.0.1:9/api/2.0/x",
        ),
        ("postgresql://mlops:pa55word@db:5432/mlops", "pa55word", "postgresql://mlops:***@db"),
        # A raw '@' inside the password: everything up to the host is masked.
        ("https://u:p@ss@host/x", "p@ss", "https://u:***@host/x"),
        ("see https://host/x?token=abc123def&page=2", "abc123def", "page=2"),
        (
            "s3://b/k?X-Amz-Credential=AKIAXYZ&X-Amz-Signature=f00ba4",
            "f00ba4",
            "X-Amz-Signature=***",
        ),
        ("host=db user=u password=hunter22 dbname=x", "hunter22", "password=***"),
        ("dsn: host=db password='two words'", "two words", "password=***"),
        ("https://api.example/v1?api_key=K3Y99&x=1", "K3Y99", "x=1"),
    ],
    ids=["uri", "dsn-uri", "at-in-password", "token", "presigned", "libpq", "quoted", "api_key"],
)
def test_secrets_are_masked_and_context_kept(text: str, secret: str, kept: str):
    out = redact(text)
    assert secret not in out
    assert kept in out


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://postgres@127.0.0.1:5432/mlops",  # a user without password is no secret
        "http://mlflow.internal:5000/#/experiments/7/runs/0a1b",
        "accuracy dropped 0.05 below baseline; password reset unrelated",
    ],
)
def test_text_without_secrets_is_unchanged(text: str):
    assert redact(text) == text


def test_literal_and_environment_secrets(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-XYZ-123")
    out = redact("Bearer tok-XYZ-123 rejected by hooks/T0SECRET1", secrets=["T0SECRET1", None])
    assert "tok-XYZ-123" not in out and "T0SECRET1" not in out
    assert redact(None) == "None"


def test_strip_credentials_makes_a_showable_link():
    assert strip_credentials("http://user:S3CRETpw@mlflow:5000") == "http://mlflow:5000"
    assert strip_credentials("https://mlflow/?token=abc") == "https://mlflow/?token=***"
