"""Feature encoding shared by training and serving, so both see the same columns and codes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd


class FeatureError(ValueError):
    """The input frame does not match the model's feature spec; the message names columns."""


@dataclass(frozen=True)
class FeatureSpec:
    numeric: tuple[str, ...]
    categorical: dict[str, tuple[str, ...]]  # column -> levels seen in training, in code order

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def kinds(self) -> dict[str, str]:
        return {
            **{c: "numeric" for c in self.numeric},
            **{c: "categorical" for c in self.categorical},
        }

    @classmethod
    def fit(cls, frame: pd.DataFrame, kinds: Mapping[str, str]) -> FeatureSpec:
        _require(frame, list(kinds))
        numeric = tuple(c for c, k in kinds.items() if k == "numeric")
        categorical = {
            c: tuple(sorted(frame[c].dropna().astype(str).unique()))
            for c, k in kinds.items()
            if k == "categorical"
        }
        return cls(numeric, categorical)

    def encode(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Numeric columns as float, categoricals as integer codes (unseen levels -> NaN)."""
        _require(frame, self.columns)
        out = pd.DataFrame(index=frame.index)
        for column in self.numeric:
            out[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
        for column, levels in self.categorical.items():
            codes = pd.Categorical(frame[column].astype("string"), categories=list(levels)).codes
            out[column] = np.where(codes < 0, np.nan, codes).astype(float)
        return out

    def to_json(self) -> str:
        return json.dumps({"numeric": list(self.numeric), "categorical": self.categorical})

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        data = json.loads(text)
        return cls(tuple(data["numeric"]), {k: tuple(v) for k, v in data["categorical"].items()})


def _require(frame: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FeatureError(f"missing feature columns: {', '.join(missing)}")
