"""Names that become file paths, partition keys and MLflow registered-model names.

A model name is used in file and table names, as one dimension of a multi-partition
key (where `|` separates dimensions), as an MLflow registered-model name and in the names of
the model's inference-log tables, so it is checked where it enters (the model contract, the
settings, partition keys) against one pattern that is safe for all four.
"""

from __future__ import annotations

import re

# Also a table name: `inference."<model>__predictions"` must fit PostgreSQL's 63-byte limit.
MODEL_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,49}$"
MODEL_NAME_RULE = "1-50 characters: letters, digits and '_', starting with a letter"
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)


def validate_model_name(name: str) -> str:
    """`name` unchanged if it is a valid model name; else ValueError saying what is allowed."""
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
        shown = repr(name) if isinstance(name, str) and len(name) <= 80 else "the given value"
        raise ValueError(f"model_name {shown} is not allowed: use {MODEL_NAME_RULE}")
    return name
