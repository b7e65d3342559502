"""Names that become file paths, partition keys and MLflow registered-model names.

A model name is used as a directory (`reports/<model>/`), as one dimension of a multi-partition
key (where `|` separates dimensions) and as an MLflow registered-model name, so it is checked
once, where it enters, against one pattern that is safe for all three.
"""

from __future__ import annotations

import re

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
MODEL_NAME_RULE = "1-64 characters: letters, digits, '_', '-', '.', starting with a letter or digit"
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)


def validate_model_name(name: str) -> str:
    """`name` unchanged if it is a valid model name; else ValueError saying what is allowed."""
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
        shown = repr(name) if isinstance(name, str) and len(name) <= 80 else "the given value"
        raise ValueError(f"model_name {shown} is not allowed: use {MODEL_NAME_RULE}")
    return name
