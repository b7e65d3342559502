"""The inference log: per-model typed tables of predictions and labels, built from the contract.

`inference."<model>__predictions"` has one column per feature (numeric -> DOUBLE PRECISION,
categorical -> TEXT), the prediction (`y_pred`: TEXT for classification, DOUBLE PRECISION for
regression), the probability (`proba`, binary) or one `proba__<i>` per class index
(multiclass), `odds` for the betting ROI, and where each row came from. Labels live beside it in
`inference."<model>__labels"`, keyed by the same prediction id, because they arrive later.

The DDL of these tables cannot live in `sql/`: their columns are the contract's features, known
only at run time. It is generated here from names that are validated (letters, digits, _) and
double-quoted; values are always bound. The tables every model shares (quarantine, ingest
batches) are in `sql/migrations/0010_create_inference_schema.sql`.

Types are fixed by the contract at the door (`validate_rows`), so the reference sample and
production compare like with like: a categorical is always text in one canonical spelling
(`canonical_categories`), whatever the serving system wrote (1, 1.0, "1 ", True).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlops_assets.lib.contract import ModelContract
from mlops_assets.lib.drift import CategoryCounts
from mlops_assets.storage import packed
from mlops_assets.storage.sources import (
    BATCH_COLUMN,
    ArrowSlices,
    SourceSchemaError,
    quote_identifier,
)
from mlops_assets.storage.warehouse import (
    Transaction,
    Warehouse,
    arrow_to_pandas,
    query_arrow_over,
    sql_file,
)

Kind = Literal["prediction", "label"]
SCHEMA = "inference"
PROBA_TOLERANCE = 1e-3
# Text columns are Arrow-backed pandas strings: vectorised string functions, and DuckDB and
# PostgreSQL's COPY read them without a Python object per value. Their dtype prints "string".
TEXT = pd.StringDtype("pyarrow")
# PostgreSQL cuts identifiers at 63 bytes; two cut names could then be the same table.
_MAX_IDENTIFIER = 63
# Columns of the predictions table that are not features; a feature may not take these names.
_FIXED = (
    "prediction_id",
    "prediction_date",
    "predicted_at",
    "model_version",
    "y_pred",
    "proba",
    "odds",
    "batch_id",
    "ingested_at",
)
# The model's outputs among them, which the metrics read.
_OUTPUTS = ("y_pred", "proba", "odds")


class InferenceLogError(ValueError):
    """The contract cannot be laid out as tables (a reserved or too long name, a type change)."""


@dataclass(frozen=True)
class IngestResult:
    n_rows: int
    n_good: int
    n_quarantined: int
    days: frozenset[dt.date]


# --------------------------------------------------------------------------- canonical values


def _canonical(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return pd.NA
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return pd.NA
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value.strip()
    text = str(value)
    try:  # Decimal and friends: an integral 1.00 is the category "1"
        number = float(text)
    except ValueError:
        return text.strip()
    return str(int(number)) if number.is_integer() else text.strip()


def _from_codes(codes: np.ndarray, labels: list[Any], values: pd.Series) -> pd.Series:
    """Arrow strings from factorize codes and one label per code (decoded in C)."""
    import pyarrow as pa

    indices = pa.array(codes, type=pa.int64(), mask=codes < 0)
    dictionary = pa.array([None if v is pd.NA else v for v in labels], type=pa.string())
    decoded = pa.DictionaryArray.from_arrays(indices, dictionary).dictionary_decode()
    return pd.Series(
        pd.arrays.ArrowStringArray(decoded), index=values.index, name=values.name, dtype=TEXT
    )


def canonical_categories(values: pd.Series) -> pd.Series:
    """The one spelling of a categorical value, used for the reference sample and production:
    integral numbers 1 / 1.0 -> "1", other numbers by their shortest repr, booleans ->
    "true" / "false", strings stripped, missing -> <NA>. Returns a pandas string Series
    (Arrow-backed).

    Works on the distinct values only (pandas.factorize), so a million rows of a few categories
    cost a few Python calls; strings and integers take vectorised paths."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    if isinstance(values.dtype, pd.StringDtype):
        return values.astype(TEXT).str.strip()
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in (
        "string",
        "empty",
    ):
        return values.astype(TEXT).str.strip()
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if pd.api.types.is_integer_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values):
        labels = list(np.asarray(uniques, dtype=np.int64).astype(str))
    else:
        labels = [_canonical(u) for u in uniques]
    return _from_codes(np.asarray(codes), labels, values)


def _timestamps(values: pd.Series) -> pd.Series:
    """Naive UTC timestamps; aware values are converted, unparseable ones become NaT."""
    if values.dtype.kind == "M":  # naive datetime64: UTC already, only the unit to fix
        return values.astype("datetime64[ns]")
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
    else:
        parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    return parsed.dt.tz_localize(None).astype("datetime64[ns]")


def _numbers(values: pd.Series) -> tuple[pd.Series, pd.Series | None]:
    """(float64 values, mask of values that were present but are not numbers; None when the
    column's type rules that out)."""
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "fiu":
        # numpy numbers: nothing to parse, nothing can be wrong
        return values.astype("float64", copy=False), None
    if pd.api.types.is_bool_dtype(values):
        values = values.astype("float64")
    number = pd.to_numeric(values, errors="coerce")
    number = pd.Series(number, index=values.index).astype("float64")
    return number, values.notna() & number.isna()


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Layout:
    """How one contract maps onto the two tables."""

    model: str
    task: str
    features: dict[str, str]
    classes: list[str]
    id_column: str
    timestamp_column: str
    target_column: str
    prediction_column: str | None
    probability_column: str | None
    class_probability_columns: dict[str, str]  # proba__<i> -> source column
    odds_column: str | None
    labels_in_log: bool  # no label source: the target is a column of the inference log
    threshold: float  # binary: P(positive) at or above which the prediction is positive

    @property
    def predictions_table(self) -> str:
        return f'{SCHEMA}."{self.model}__predictions"'

    @property
    def labels_table(self) -> str:
        return f'{SCHEMA}."{self.model}__labels"'

    @property
    def classification(self) -> bool:
        return self.task != "regression"

    def source_columns(self, kind: Kind) -> list[str]:
        """The users' columns to read for predictions or labels."""
        if kind == "label":
            return [self.id_column, self.target_column]
        names = [self.id_column, self.timestamp_column, *self.features]
        names += [c for c in (self.prediction_column, self.probability_column) if c]
        names += list(self.class_probability_columns.values())
        if self.odds_column:
            names.append(self.odds_column)
        if self.labels_in_log:
            names.append(self.target_column)
        return list(dict.fromkeys(names))

    def prediction_types(self) -> dict[str, str]:
        """Column -> SQL type of the predictions table, in order."""
        types = {
            "prediction_id": "TEXT PRIMARY KEY",
            "prediction_date": "DATE NOT NULL",
            "predicted_at": "TIMESTAMP NOT NULL",
            "model_version": "TEXT",
        }
        for name, kind in self.features.items():
            types[name] = "DOUBLE PRECISION" if kind == "numeric" else "TEXT"
        types["y_pred"] = "TEXT" if self.classification else "DOUBLE PRECISION"
        if self.task == "binary":
            types["proba"] = "DOUBLE PRECISION"
        for column in self.class_probability_columns:
            types[column] = "DOUBLE PRECISION"
        if self.odds_column:
            types["odds"] = "DOUBLE PRECISION"
        types["batch_id"] = "TEXT"
        types["ingested_at"] = "TIMESTAMP NOT NULL"
        return types

    def label_types(self) -> dict[str, str]:
        return {
            "prediction_id": "TEXT PRIMARY KEY",
            "y_true": "TEXT NOT NULL" if self.classification else "DOUBLE PRECISION NOT NULL",
            "labelled_at": "TIMESTAMP NOT NULL",
            "batch_id": "TEXT",
        }


def layout(contract: ModelContract, features: Mapping[str, str] | None = None) -> Layout:
    """The tables' layout; `features` overrides the contract's (a registered model whose
    features come from its MLflow signature: pass `contract.feature_kinds(signature)`)."""
    kinds = dict(features) if features is not None else contract.feature_kinds()
    c = contract.columns
    problems = []
    if len(contract.name) + len("__predictions") > _MAX_IDENTIFIER:
        problems.append(
            f"name: {contract.name!r} is too long for its table names "
            f"(at most {_MAX_IDENTIFIER - len('__predictions')} characters)"
        )
    for name in kinds:
        if name in _FIXED or name.startswith("proba__"):
            problems.append(f"columns.features: {name!r} is a reserved column of the log")
        if len(name.encode()) > _MAX_IDENTIFIER:
            problems.append(f"columns.features: {name!r} is longer than {_MAX_IDENTIFIER}")
        if kinds[name] not in ("numeric", "categorical"):
            problems.append(f"columns.features: {name!r} has unknown kind {kinds[name]!r}")
    class_columns: dict[str, str] = {}
    if contract.task == "multiclass" and c.probabilities:
        by_label = {str(k): v for k, v in c.probabilities.items()}
        missing = [label for label in contract.class_labels if label not in by_label]
        extra = [label for label in by_label if label not in contract.class_labels]
        if missing or extra:
            problems.append(
                "columns.probabilities: must name one column per class of classes "
                f"(missing {missing}, unknown {extra})"
            )
        class_columns = {
            f"proba__{i}": by_label[label]
            for i, label in enumerate(contract.class_labels)
            if label in by_label
        }
    if problems:
        raise InferenceLogError(f"model {contract.name}: " + "; ".join(problems))
    return Layout(
        model=contract.name,
        task=contract.task,
        features=kinds,
        classes=contract.class_labels,
        id_column=c.id,
        timestamp_column=c.timestamp,
        target_column=c.target,
        prediction_column=c.prediction,
        probability_column=c.probability if contract.task == "binary" else None,
        class_probability_columns=class_columns,
        odds_column=(
            contract.business_value.odds_column if contract.business_value.kind == "roi" else None
        ),
        labels_in_log=contract.production.labels is None,
        threshold=contract.threshold,
    )


# --------------------------------------------------------------------------- tables


def _existing_columns(tx: Transaction, table: str) -> dict[str, str]:
    rows = tx.query(
        sql_file("queries/select_table_columns"),
        {"schema_name": SCHEMA, "table_name": table},
    )
    return {r["column_name"]: str(r["data_type"]).lower() for r in rows}


def _kind_of(sql_type: str) -> str:
    head = sql_type.split()[0].lower()
    return {"double": "number", "text": "text", "varchar": "text"}.get(head, head)


def _ensure(tx: Transaction, table: str, types: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Creates `table` or adds the columns it lacks: (columns added, the table's columns and
    their SQL kinds, in order, as they are now)."""
    name = table.split(".", 1)[1].strip('"')
    existing = _existing_columns(tx, name)
    columns = ", ".join(f"{quote_identifier(c)} {t}" for c, t in types.items())
    if not existing:
        tx.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
        return list(types), {c: t.split()[0].lower() for c, t in types.items()}
    added = []
    for column, sql_type in types.items():
        if column not in existing:
            # A new feature: older rows have NULL there. Never drop: the data is the history.
            plain = sql_type.replace(" PRIMARY KEY", "").replace(" NOT NULL", "")
            tx.execute(f"ALTER TABLE {table} ADD COLUMN {quote_identifier(column)} {plain}")
            added.append(column)
            existing[column] = plain.split()[0].lower()
        elif _kind_of(sql_type) != _kind_of(existing[column]):
            raise InferenceLogError(
                f"{table}: column {column!r} is {existing[column]} but the contract now makes "
                f"it {sql_type.split()[0]}; the stored history is kept, so give the changed "
                "feature a new name (or move the old table aside)"
            )
    return added, existing


def ensure_tables(
    wh: Warehouse, contract: ModelContract, *, features: Mapping[str, str] | None = None
) -> list[str]:
    """Create the model's predictions and labels tables, or add the columns the contract
    gained since (never drops or retypes one). Returns the columns created or added. On a
    row store (PostgreSQL) the features are also kept packed for the monitoring reads
    (`storage.packed`)."""
    return _ensure_tables(wh, contract, features)[0]


def _ensure_tables(
    wh: Warehouse, contract: ModelContract, features: Mapping[str, str] | None
) -> tuple[list[str], packed.Packing | None]:
    """`ensure_tables`, and the packed features' layout (None on a column store)."""
    plan = layout(contract, features)
    packing = None
    with wh.transaction() as tx:
        tx.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        added, columns = _ensure(tx, plan.predictions_table, plan.prediction_types())
        added += _ensure(tx, plan.labels_table, plan.label_types())[0]
        if wh.engine == "postgres":
            # PostgreSQL needs it to read one day; DuckDB skips blocks by their min/max
            # (zonemaps) and an ART index there would only slow every insert.
            index = quote_identifier(f"{contract.name}__predictions_day_idx")
            tx.execute(
                f"CREATE INDEX IF NOT EXISTS {index} ON {plan.predictions_table} (prediction_date)"
            )
        if not wh.columnar:
            # Every feature the table has (a model version may read fewer), in its order,
            # and the outputs the metrics read.
            stored = {
                c: "numeric" if _kind_of(t) == "number" else "categorical"
                for c, t in columns.items()
                if c not in _FIXED and not c.startswith("proba__")
            }
            if stored:  # a table without features has nothing to pack
                stored.update(
                    (c, "numeric" if _kind_of(t) == "number" else "categorical")
                    for c, t in columns.items()
                    if c in _OUTPUTS or c.startswith("proba__")
                )
                packing = packed.Packing(
                    numeric=tuple(c for c, k in stored.items() if k == "numeric"),
                    categorical=tuple(c for c, k in stored.items() if k == "categorical"),
                    label="categorical" if plan.classification else "numeric",
                )
                packed.ensure(tx, plan.model, plan.predictions_table, plan.labels_table, packing)
    return added, packing


# --------------------------------------------------------------------------- validation


class _Reasons:
    """Per-row problems, kept as masks until the end so clean rows cost nothing."""

    def __init__(self, index: pd.Index):
        self.index = index
        self.checks: list[tuple[pd.Series, str]] = []

    def add(self, mask: pd.Series | None, message: str) -> None:
        if mask is None:
            return
        mask = mask.fillna(False).astype(bool)
        if mask.any():
            self.checks.append((mask, message))

    def any(self) -> pd.Series:
        bad = pd.Series(False, index=self.index)
        for mask, _ in self.checks:
            bad |= mask
        return bad

    def text(self, rows: pd.Series) -> pd.Series:
        reasons = pd.Series("", index=self.index[rows], dtype=object)
        for mask, message in self.checks:
            hit = mask[rows]
            reasons[hit] = reasons[hit] + ("; " + message)
        return reasons.str.removeprefix("; ")


def _labels(values: pd.Series, plan: Layout) -> pd.Series:
    labels = canonical_categories(values)
    if plan.task == "binary" and plan.classes == ["0", "1"]:
        # A binary log often writes booleans; the default classes are 0 and 1.
        labels = labels.replace({"true": "1", "false": "0"})
    return labels


def _check_columns(frame: Any, plan: Layout, kind: Kind, source: str) -> None:
    """`frame`: a pandas frame or an Arrow record batch."""
    present = set(frame.schema.names if hasattr(frame, "schema") else frame.columns)
    missing = [c for c in plan.source_columns(kind) if c not in present]
    if missing:
        raise SourceSchemaError(columns=missing, source=source, model=plan.model)


def _source_name(contract: ModelContract, kind: Kind) -> str:
    production = contract.production
    source = production.labels if kind == "label" and production.labels else production.predictions
    return source.describe()


def validate_rows(
    frame: pd.DataFrame,
    contract: ModelContract,
    kind: Kind,
    *,
    features: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a batch (the users' columns, as a source reader returns them) into rows to store
    and rows to quarantine.

    good: the table's typed columns (prediction_id, prediction_date, predicted_at, features,
    y_pred, proba / proba__<i>, odds, batch_id; for labels prediction_id, y_true, batch_id).
    bad: the original rows with `reason` (every problem of the row, "; "-separated).
    A missing column raises SourceSchemaError (the whole batch is wrong, not its rows).
    Missing feature values are kept: they are a data-quality signal for drift."""
    columns, drop, rejected = _validate(frame, contract, kind, features=features)
    good = pd.DataFrame(columns)
    return (good[~drop].reset_index(drop=True) if drop is not None else good), rejected


def _validate(
    frame: pd.DataFrame,
    contract: ModelContract,
    kind: Kind,
    *,
    features: Mapping[str, str] | None = None,
) -> tuple[dict[str, pd.Series], np.ndarray | None, pd.DataFrame]:
    """`validate_rows` without building the good frame: (typed columns of every row, rows to
    leave out of them or None when none, rejected rows). The ingestion turns the columns into
    Arrow directly; a pandas frame would copy every column once more."""
    plan = layout(contract, features)
    _check_columns(frame, plan, kind, _source_name(contract, kind))
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        frame = frame.reset_index(drop=True)
    reasons = _Reasons(frame.index)
    out: dict[str, pd.Series] = {}

    ids = canonical_categories(frame[plan.id_column])
    reasons.add(ids.isna() | (ids == ""), f"id {plan.id_column} missing")
    out["prediction_id"] = ids

    if kind == "prediction":
        when = _timestamps(frame[plan.timestamp_column])
        reasons.add(when.isna(), f"timestamp {plan.timestamp_column} missing or not a timestamp")
        out["prediction_date"] = when.dt.normalize()
        out["predicted_at"] = when
        for name, feature_kind in plan.features.items():
            if feature_kind == "numeric":
                number, wrong = _numbers(frame[name])
                reasons.add(wrong, f"feature {name} is not a number")
                out[name] = number
            else:
                out[name] = canonical_categories(frame[name])
        out.update(_predictions(frame, plan, reasons))
        if plan.odds_column:
            odds, wrong = _numbers(frame[plan.odds_column])
            reasons.add(wrong, f"odds {plan.odds_column} is not a number")
            out["odds"] = odds
    else:
        out["y_true"] = _target(frame[plan.target_column], plan, reasons)

    if BATCH_COLUMN in frame.columns:
        out["batch_id"] = frame[BATCH_COLUMN].astype(TEXT)
    bad = reasons.any()
    # Duplicates among otherwise good rows: the last delivery of an id wins.
    kept = ids.where(~bad)
    duplicated = kept.notna() & kept.duplicated(keep="last")
    identical = pd.Series(False, index=frame.index)
    if duplicated.any():
        # A re-delivered copy identical to a later row is not bad data: dropped, not
        # quarantined (re-reading a day that holds a re-delivered file would quarantine it on
        # every run). Only rows whose id repeats can be such copies.
        repeats = kept.notna() & kept.duplicated(keep=False)
        content = pd.DataFrame({c: v for c, v in out.items() if c != "batch_id"})[repeats]
        repeated = content.duplicated(keep="last").reindex(frame.index, fill_value=False)
        identical = duplicated & repeated
        reasons.add(
            duplicated & ~identical, "duplicate id within the batch (its last row was kept)"
        )
        bad = reasons.any()
    rejected = frame[bad].copy()
    rejected["reason"] = reasons.text(bad)
    drop = (bad | identical).to_numpy()
    return out, (drop if drop.any() else None), rejected.reset_index(drop=True)


def _predictions(frame: pd.DataFrame, plan: Layout, reasons: _Reasons) -> dict[str, pd.Series]:
    out: dict[str, pd.Series] = {}
    if plan.task == "regression":
        value, _ = _numbers(frame[plan.prediction_column])
        reasons.add(value.isna(), f"prediction {plan.prediction_column} missing or not a number")
        out["y_pred"] = value
        return out
    if plan.probability_column:
        p, _ = _numbers(frame[plan.probability_column])
        reasons.add(p.isna(), f"probability {plan.probability_column} missing or not a number")
        reasons.add((p < 0) | (p > 1), f"probability {plan.probability_column} outside [0, 1]")
        out["proba"] = p
    elif plan.task == "binary":
        out["proba"] = pd.Series(np.nan, index=frame.index)
    probas = {}
    for column, source in plan.class_probability_columns.items():
        p, _ = _numbers(frame[source])
        reasons.add(p.isna(), f"probability {source} missing or not a number")
        reasons.add((p < 0) | (p > 1), f"probability {source} outside [0, 1]")
        probas[column] = p
    if probas:
        total = pd.concat(probas.values(), axis=1).sum(axis=1, min_count=len(probas))
        reasons.add(
            (total - 1).abs() > PROBA_TOLERANCE,
            f"class probabilities do not sum to 1 (within {PROBA_TOLERANCE})",
        )
        out.update(probas)
    if plan.prediction_column:
        predicted = _labels(frame[plan.prediction_column], plan)
        reasons.add(predicted.isna(), f"prediction {plan.prediction_column} missing")
        reasons.add(
            predicted.notna() & ~predicted.isin(plan.classes),
            f"prediction {plan.prediction_column} is not one of the classes "
            f"{', '.join(plan.classes)}",
        )
    elif probas:
        # No label column: the class with the highest probability (what serving would say).
        best = pd.concat(probas.values(), axis=1).to_numpy().argmax(axis=1)
        predicted = pd.Series(np.asarray(plan.classes, dtype=object)[best], index=frame.index)
        predicted = predicted.astype(TEXT)
    else:
        # Binary with a probability only: the contract's decision threshold.
        positive = out["proba"] >= plan.threshold
        predicted = pd.Series(
            np.where(positive, plan.classes[1], plan.classes[0]), index=frame.index
        ).astype(TEXT)
    out["y_pred"] = predicted
    return out


def _target(values: pd.Series, plan: Layout, reasons: _Reasons) -> pd.Series:
    if plan.classification:
        labels = _labels(values, plan)
        reasons.add(labels.isna(), f"target {plan.target_column} missing")
        reasons.add(
            labels.notna() & ~labels.isin(plan.classes),
            f"target {plan.target_column} is not one of the classes {', '.join(plan.classes)}",
        )
        return labels
    value, _ = _numbers(values)
    reasons.add(value.isna(), f"target {plan.target_column} missing or not a number")
    return value


# --------------------------------------------------------------------------- ingestion


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _quarantine(tx: Transaction, rows: pd.DataFrame) -> None:
    """Insert quarantine rows; a row quarantined again (a rerun re-reads the same bad row from
    the same batch) replaces its earlier record instead of piling up (set-wise)."""
    if rows.empty:
        return
    keys = rows[["model_name", "kind", "batch_id", "row_id"]].dropna().drop_duplicates()
    tx.delete_matching("mlops.quarantine", keys.reset_index(drop=True))
    tx.insert_frame("mlops.quarantine", rows)


def _quarantine_rows(
    contract: ModelContract, kind: Kind, bad: pd.DataFrame, batch_id: str, now: dt.datetime
) -> pd.DataFrame:
    plan_id = contract.columns.id
    batches = (
        bad[BATCH_COLUMN].astype(TEXT).fillna(batch_id)
        if BATCH_COLUMN in bad.columns
        else pd.Series(batch_id, index=bad.index, dtype=TEXT)
    )
    original = bad.drop(columns=["reason"])
    lines = original.to_json(orient="records", lines=True, date_format="iso", default_handler=str)
    return pd.DataFrame(
        {
            "model_name": contract.name,
            "batch_id": batches,
            "source": _source_name(contract, kind),
            "kind": kind,
            "row_id": (
                canonical_categories(bad[plan_id])
                if plan_id in bad.columns
                else pd.Series(pd.NA, index=bad.index, dtype=TEXT)
            ),
            "reason": bad["reason"].astype(TEXT),
            "row_json": pd.Series(lines.splitlines() if len(bad) else [], index=bad.index),
            "quarantined_at": now,
        }
    )


def _record(
    tx: Transaction,
    contract: ModelContract,
    kind: Kind,
    batch_id: str,
    result: IngestResult,
    now: dt.datetime,
) -> None:
    tx.execute(
        sql_file("queries/insert_ingest_batch"),
        {
            "model_name": contract.name,
            "kind": kind,
            "batch_id": batch_id,
            "n_rows": result.n_rows,
            "n_good": result.n_good,
            "n_quarantined": result.n_quarantined,
            "days": json.dumps(sorted(d.isoformat() for d in result.days)),
            "ingested_at": now,
        },
    )


def _reject_batch(
    wh: Warehouse,
    contract: ModelContract,
    kind: Kind,
    n_rows: int,
    batch_id: str,
    error: SourceSchemaError,
) -> None:
    """A batch without a required column: one quarantine row says so, for the whole batch."""
    now = _now()
    record = pd.DataFrame(
        {
            "model_name": [contract.name],
            "batch_id": [batch_id],
            "source": [_source_name(contract, kind)],
            "kind": [kind],
            "row_id": pd.Series([pd.NA], dtype=TEXT),
            "reason": [f"{error} ({n_rows} rows rejected)"],
            "row_json": pd.Series([pd.NA], dtype=TEXT),
            "quarantined_at": [now],
        }
    )
    with wh.transaction() as tx:
        tx.insert_frame("mlops.quarantine", record)
        rejected = IngestResult(n_rows, 0, n_rows, frozenset())
        _record(tx, contract, kind, batch_id, rejected, now)


# Columns an identical re-delivery may differ in: where and when it came, not what it says.
_PROVENANCE = ("prediction_id", "batch_id", "ingested_at", "labelled_at")


class _Store:
    """Writes one table of the log slice by slice inside one transaction: upserts by
    prediction id that skip identical rows (in SQL), and finds ids an earlier slice of the
    same batch wrote (in memory: 8 bytes per id plus the ids' Arrow text)."""

    def __init__(
        self,
        tx: Transaction,
        table: str,
        types: dict[str, str],
        written: Callable[[Any, bool], None] | None = None,
    ):
        self.tx = tx
        self.table = table
        # Told of each slice written (its Arrow rows, and whether they went in as they are).
        self.written = written
        self.columns = list(types)
        self.kinds = {
            c: "text"
            if t.startswith("TEXT")
            else "timestamp"
            if t.startswith("TIMESTAMP")
            else "date"
            if t.startswith("DATE")
            else "double"
            for c, t in types.items()
        }
        self.compare = [c for c in self.columns if c not in _PROVENANCE]
        self.upserter = tx.upserter(table, key="prediction_id", compare=self.compare)
        self._hashes = np.empty(0, dtype=np.uint64)  # sorted
        self._ids: list[Any] = []  # Arrow arrays, to confirm a hash hit exactly
        self._hasher: Any = None

    def earlier(self, ids: Any, hashes: np.ndarray | None = None) -> np.ndarray:
        """Which of these ids (Arrow text) an earlier slice of this batch wrote. `hashes`:
        their DuckDB `hash()`, when the caller's query computed them already."""
        import pyarrow as pa
        import pyarrow.compute as pc

        text = _arrow_text(ids)
        hashes = self._hash(text) if hashes is None else np.asarray(hashes, dtype=np.uint64)
        # Sorted, the hashes are looked up in order (binary searches that stay in cache) and
        # merged as two sorted runs (a stable sort, timsort, merges them in linear time).
        order = np.argsort(hashes)
        ordered = hashes[order]
        hit = np.zeros(len(text), dtype=bool)
        if len(self._hashes):
            where = np.searchsorted(self._hashes, ordered).clip(max=len(self._hashes) - 1)
            hit[order] = self._hashes[where] == ordered
        if hit.any():  # a 64-bit hash can collide: confirm on the text itself
            seen = pa.chunked_array(self._ids, type=pa.string())
            confirmed = pc.is_in(text.filter(pa.array(hit)), value_set=seen.combine_chunks())
            hit[hit] = confirmed.to_numpy(zero_copy_only=False)
        merged = np.concatenate([self._hashes, ordered])
        merged.sort(kind="stable")
        self._hashes = merged
        self._ids.append(text)
        return hit

    def _hash(self, text: Any) -> np.ndarray:
        """64-bit hashes of Arrow strings, computed by DuckDB over the Arrow buffers (pandas
        would first make a Python object per value)."""
        import duckdb
        import pyarrow as pa

        if self._hasher is None:
            self._hasher = duckdb.connect()
            # One thread: the hashes must come back in the rows' order.
            self._hasher.execute("SET threads = 1")
        self._hasher.register("ids", pa.table({"i": text}))
        try:
            result = self._hasher.execute("SELECT hash(i) AS h FROM ids").fetchnumpy()["h"]
        finally:
            self._hasher.unregister("ids")
        return np.asarray(result, dtype=np.uint64)

    def stored(self, ids: pd.Series) -> pd.DataFrame:
        """The rows of these ids as earlier slices of this batch wrote them."""
        return self.upserter.earlier(list(ids.astype(str)), self.columns, self.kinds)

    def write(self, rows: Any, *, replacing: bool = False) -> None:
        as_is = self.upserter.write(rows, replacing=replacing)
        if self.written is not None:
            self.written(rows, as_is)

    def write_select(
        self, select: str, params: Mapping[str, Any], *, replacing: bool = False
    ) -> None:
        """`write` of the rows a query over the slice computes (embedded engine)."""
        self.upserter.write_select(  # type: ignore[attr-defined]
            select, self.columns, params, replacing=replacing
        )

    def finish(self) -> None:
        self.upserter.finish()
        if self._hasher is not None:
            self._hasher.close()
            self._hasher = None


def _arrow_text(values: Any) -> Any:
    """Arrow text from an Arrow array or a pandas string Series (no copy when it is
    Arrow-backed)."""
    import pyarrow as pa

    array = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values.array)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.cast(pa.string())


def _same(left: pd.DataFrame, right: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Row-wise equality of two aligned frames on `columns`, missing equal to missing."""
    same = pd.Series(True, index=left.index)
    for column in columns:
        a, b = left[column], right[column]
        if pd.api.types.is_datetime64_any_dtype(a):
            a, b = a.astype("datetime64[us]"), pd.to_datetime(b).astype("datetime64[us]")
        equal = (a == b).fillna(False).astype(bool) | (a.isna() & b.isna())
        same &= equal.to_numpy()
    return same


def _user_json(stored: pd.DataFrame, plan: Layout) -> pd.Series:
    """A stored row in the users' column names, for the quarantine record of a row that a
    later slice of its batch replaced (the original is no longer in memory; these are its
    validated values)."""
    names = {
        "prediction_id": plan.id_column,
        "predicted_at": plan.timestamp_column,
        "y_true": plan.target_column,
    }
    if plan.prediction_column:
        names["y_pred"] = plan.prediction_column
    if plan.probability_column:
        names["proba"] = plan.probability_column
    names.update(plan.class_probability_columns)
    if plan.odds_column:
        names["odds"] = plan.odds_column
    keep = [c for c in stored.columns if c in names or c in plan.features]
    frame = stored[keep].rename(columns=names)
    lines = frame.to_json(orient="records", lines=True, date_format="iso", default_handler=str)
    return pd.Series(lines.splitlines() if len(frame) else [], index=stored.index)


def _write_slice(
    store: _Store,
    rows: Any,
    contract: ModelContract,
    plan: Layout,
    kind: Kind,
    batch_id: str,
    now: dt.datetime,
    again: np.ndarray | None = None,
) -> tuple[int, pd.DataFrame]:
    """Writes a slice (an Arrow table). Rows whose id an earlier slice of the batch wrote
    replace those: the later row wins, as within a slice. Returns (earlier rows that were
    identical re-deliveries, quarantine records of the earlier rows that differed).
    `again`: `store.earlier` of the rows' ids, when the caller asked it already."""
    import pyarrow as pa

    if again is None:
        again = store.earlier(rows.column("prediction_id"))
    if not again.any():
        store.write(rows)
        return 0, pd.DataFrame()
    later = arrow_to_pandas(rows.filter(pa.array(again)))
    later = later.set_index("prediction_id", drop=False)
    earlier = store.stored(later["prediction_id"]).set_index("prediction_id", drop=False)
    earlier = earlier.reindex(later.index)
    later = later[earlier["prediction_id"].notna().to_numpy()]
    earlier = earlier.loc[later.index]
    same = _same(later, earlier, store.compare)
    differ = earlier[~same.to_numpy()]
    store.write(rows, replacing=True)
    if differ.empty:
        return int(same.sum()), pd.DataFrame()
    quarantined = pd.DataFrame(
        {
            "model_name": contract.name,
            "batch_id": differ["batch_id"].astype(TEXT).fillna(batch_id).to_numpy(),
            "source": _source_name(contract, kind),
            "kind": kind,
            "row_id": differ["prediction_id"].astype(TEXT).to_numpy(),
            "reason": "duplicate id within the batch (its last row was kept)",
            "row_json": _user_json(differ, plan).to_numpy(),
            "quarantined_at": now,
        }
    )
    return int(same.sum()), quarantined


def _arrow_rows(
    columns: dict[str, pd.Series],
    drop: np.ndarray | None,
    names: list[str],
    constants: Mapping[str, Any],
) -> Any:
    """The rows to store as an Arrow table in the table's column order: validated columns
    converted one by one (NaN and NaT become NULL, as pandas' own conversion does), the
    constants of the batch (`constants[c]` for a column the rows lack or leave NULL)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(columns["prediction_id"])
    arrays = []
    for name in names:
        value = constants.get(name)
        if name in columns:
            array = pa.array(columns[name], from_pandas=True)
            if value is not None:
                array = pc.fill_null(array, value)
        elif isinstance(value, dt.datetime):
            array = pa.array(np.full(n, np.datetime64(value, "us")))
        else:
            array = pa.array([value] * n, type=pa.string())
        arrays.append(array)
    table = pa.Table.from_arrays(arrays, names=names)
    return table.filter(pa.array(~drop)) if drop is not None else table


def _concat(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    return first if second.empty else pd.concat([first, second], ignore_index=True)


def _days(column: pd.Series) -> frozenset[dt.date]:
    values = pd.Series(column.dropna().unique())
    return frozenset(pd.Timestamp(v).date() for v in values)


# --------------------------------------------------------------------------- the SQL path

# A column of the slice that numbers its rows (the users' names are plain identifiers).
_ROW = "__ingest_row"
_SLICE_VIEW = "_ingest_raw_slice"


def _sql_text(name: str, kind: Any, integral: frozenset[str] = frozenset()) -> str | None:
    """SQL for `canonical_categories` of a column of this Arrow type (strings are trimmed
    beforehand, by the same Arrow function pandas' `str.strip` calls); None: a type left to
    the Python path (decimals, mixed objects, floats with a fraction: Python's repr spells
    those). `integral`: float columns whose values are all whole (an int code read back as
    float, a label column with NaN for "not yet"), spelled as the integer."""
    import pyarrow as pa

    q = quote_identifier(name)
    if name in integral:
        return f"CASE WHEN isnan({q}) THEN NULL ELSE CAST(CAST({q} AS BIGINT) AS VARCHAR) END"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return q
    if pa.types.is_signed_integer(kind) or kind in (pa.uint8(), pa.uint16(), pa.uint32()):
        return f"CAST({q} AS VARCHAR)"
    if pa.types.is_boolean(kind):
        return f"CASE WHEN {q} THEN 'true' WHEN NOT {q} THEN 'false' END"
    return None


def _sql_number(name: str, kind: Any) -> str | None:
    """SQL for `_numbers` of a numeric Arrow column (NaN stored as NULL, as the Python path's
    Arrow conversion does); None for other types (text that may not parse: Python path)."""
    import pyarrow as pa

    q = quote_identifier(name)
    if pa.types.is_integer(kind):
        return f"CAST({q} AS DOUBLE)"
    if kind in (pa.float32(), pa.float64()):
        return f"CASE WHEN isnan({q}) THEN NULL ELSE CAST({q} AS DOUBLE) END"
    return None


def _any_of(conditions: list[str]) -> str:
    return " OR ".join(f"coalesce({c}, false)" for c in conditions) or "false"


@dataclass
class _SqlSlice:
    """A slice the embedded engine types and validates in SQL, in the statement that writes
    it: the same typed columns and the same row checks as `_validate`, as DuckDB expressions
    over the users' columns (an Arrow table registered on the warehouse's connection). Bad
    rows are few: only they go through `_validate`, for the reasons and the quarantined
    original, which then are the Python path's to the letter. A slice whose column types or
    task the expressions do not cover, or with an id twice, takes the Python path whole."""

    raw: Any  # Arrow: the users' columns (strings trimmed), `_batch`, and the row number
    predictions: dict[str, str]  # column of the predictions table -> SQL expression
    bad: str  # the row is quarantined
    label_columns: dict[str, str] | None  # labels in the log: column -> SQL expression
    labelled: str  # the row carries a label
    label_bad: str
    # What the checks and the bookkeeping need of every row (`scan`), computed while the
    # slice before is written.
    scanned: Any = None

    @classmethod
    def of(cls, chunk: pd.DataFrame | Any, plan: Layout) -> _SqlSlice | None:
        """`chunk`: a pandas frame, or an Arrow record batch as a source read it."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if plan.class_probability_columns:
            return None  # multiclass probabilities (argmax, sum to 1): the Python path
        names = plan.source_columns("prediction")
        if isinstance(chunk, pa.RecordBatch):
            if BATCH_COLUMN in chunk.schema.names:
                names.append(BATCH_COLUMN)
            raw = pa.Table.from_batches([chunk]).select(names)
        else:
            if BATCH_COLUMN in chunk.columns:
                names.append(BATCH_COLUMN)
            try:
                raw = pa.Table.from_pandas(chunk[names], preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                return None  # mixed objects: the Python path types them value by value
        raw = raw.replace_schema_metadata(None)
        kinds = {f.name: f.type for f in raw.schema}
        numeric = {n for n, k in plan.features.items() if k == "numeric"}
        integral = set()
        for i, name in enumerate(raw.column_names):
            kind, column = kinds[name], raw.column(i)
            if name == BATCH_COLUMN:
                continue
            if pa.types.is_string(kind) or pa.types.is_large_string(kind):
                raw = raw.set_column(i, name, pc.utf8_trim_whitespace(column))
            elif kind in (pa.float32(), pa.float64()) and name not in numeric:
                whole = pc.and_(
                    pc.equal(column, pc.floor(column)), pc.less_equal(pc.abs(column), 2.0**53)
                )
                if pc.all(pc.or_(pc.is_nan(column), whole)).as_py() is not False:
                    integral.add(name)
        raw = raw.append_column(_ROW, pa.array(np.arange(raw.num_rows, dtype=np.int64)))
        return cls._typing(raw, kinds, plan, frozenset(integral))

    @classmethod
    def _typing(
        cls, raw: Any, kinds: dict[str, Any], plan: Layout, integral: frozenset[str]
    ) -> _SqlSlice | None:
        import pyarrow as pa

        def label(name: str) -> str | None:
            text = _sql_text(name, kinds[name], integral)
            if text is not None and plan.task == "binary" and plan.classes == ["0", "1"]:
                text = f"CASE {text} WHEN 'true' THEN '1' WHEN 'false' THEN '0' ELSE {text} END"
            return text

        ts_kind = kinds[plan.timestamp_column]
        ident = _sql_text(plan.id_column, kinds[plan.id_column], integral)
        if ident is None or not (pa.types.is_timestamp(ts_kind) and ts_kind.tz is None):
            return None  # text or zoned timestamps: pandas parses and converts them
        ts = f"CAST({quote_identifier(plan.timestamp_column)} AS TIMESTAMP)"
        batch = (
            f"coalesce(CAST({quote_identifier(BATCH_COLUMN)} AS VARCHAR), :batch_id)"
            if BATCH_COLUMN in kinds
            else ":batch_id"
        )
        columns = {
            "prediction_id": ident,
            "prediction_date": f"CAST({ts} AS DATE)",
            "predicted_at": ts,
            "model_version": "CAST(:model_version AS VARCHAR)",
        }
        bad = [f"{ident} IS NULL", f"{ident} = ''", f"{ts} IS NULL"]
        for name, kind in plan.features.items():
            if kind == "numeric":
                expr = _sql_number(name, kinds[name])
            else:
                expr = _sql_text(name, kinds[name], integral)
            if expr is None:
                return None
            columns[name] = expr
        p = None
        if plan.task == "regression":
            value = _sql_number(plan.prediction_column or "", kinds[plan.prediction_column or ""])
            if value is None:
                return None
            bad.append(f"{value} IS NULL")
            columns["y_pred"] = value
        else:
            if plan.probability_column:
                p = _sql_number(plan.probability_column, kinds[plan.probability_column])
                if p is None:
                    return None
                bad += [f"{p} IS NULL", f"{p} < 0 OR {p} > 1"]
                columns["proba"] = p
            elif plan.task == "binary":
                columns["proba"] = "CAST(NULL AS DOUBLE)"
            if plan.prediction_column:
                predicted = label(plan.prediction_column)
                if predicted is None:
                    return None
                bad += [f"{predicted} IS NULL", f"NOT list_contains(:classes, {predicted})"]
            elif p is not None:
                threshold = f"CAST('{float(plan.threshold)!r}' AS DOUBLE)"
                predicted = (
                    f"CASE WHEN {p} >= {threshold} THEN (:classes)[2] ELSE (:classes)[1] END"
                )
            else:
                predicted = "(:classes)[1]"
            columns["y_pred"] = predicted
        if plan.odds_column:
            odds = _sql_number(plan.odds_column, kinds[plan.odds_column])
            if odds is None:
                return None
            columns["odds"] = odds
        columns["batch_id"] = batch
        columns["ingested_at"] = "CAST(:ingested_at AS TIMESTAMP)"
        missing = set(plan.prediction_types()) - set(columns)
        assert not missing, missing  # every column of the table has its expression
        label_columns, labelled, label_bad = None, "false", "false"
        if plan.labels_in_log:
            target, kind = quote_identifier(plan.target_column), kinds[plan.target_column]
            value = (
                label(plan.target_column)
                if plan.classification
                else _sql_number(plan.target_column, kind)
            )
            if value is None:
                return None
            labelled = f"{target} IS NOT NULL"
            if kind in (pa.float32(), pa.float64()):
                labelled += f" AND NOT isnan({target})"  # pandas' notna: NaN is missing
            checks = [f"{ident} IS NULL", f"{ident} = ''"]
            if plan.classification:
                checks.append(f"NOT list_contains(:classes, {value})")
            label_bad = _any_of(checks)
            label_columns = {
                "prediction_id": ident,
                "y_true": value,
                "labelled_at": "CAST(:ingested_at AS TIMESTAMP)",
                "batch_id": batch,
            }
        return cls(raw, columns, _any_of(bad), label_columns, labelled, label_bad)

    def scan(self, params: Mapping[str, Any]) -> None:
        ident = self.predictions["prediction_id"]
        self.scanned = query_arrow_over(
            {_SLICE_VIEW: self.raw},
            f"SELECT {_ROW} AS row, {ident} AS id, hash({ident}) AS h, "  # noqa: S608
            f"{self.bad} AS bad, {self.predictions['prediction_date']} AS day, "
            f"({self.labelled}) AS labelled, ({self.labelled}) AND ({self.label_bad}) "
            f"AS label_bad FROM {_SLICE_VIEW}",
            params,
        )

    def select(self, columns: Mapping[str, str], where: str, *, ordered: bool = False) -> str:
        listed = ", ".join(f"{e} AS {quote_identifier(c)}" for c, e in columns.items())
        order = f" ORDER BY {_ROW}" if ordered else ""
        return f"SELECT {listed} FROM {_SLICE_VIEW} WHERE {where}{order}"  # noqa: S608


def _sql_bad_rows(
    chunk: pd.DataFrame,
    rows: np.ndarray,
    contract: ModelContract,
    kind: Kind,
    features: Mapping[str, str] | None,
    columns: list[str] | None = None,
) -> pd.DataFrame | None:
    """The rows SQL found bad (their numbers in the slice), with `_validate`'s reasons; None
    when `_validate` disagrees about one of them (the slice then takes the Python path).
    `chunk` is the slice as pandas: its dtypes are the whole slice's (an Arrow integer column
    with a NULL is float there), so the quarantined originals read as the Python path's."""
    subset = chunk.iloc[np.sort(rows)]
    if columns is not None:
        subset = subset[[c for c in columns if c in subset.columns]]
    _, _, rejected = _validate(subset, contract, kind, features=features)
    return rejected if len(rejected) == len(rows) else None


def _twice(hashes: np.ndarray) -> bool:
    """Whether an id may come twice (equal hashes; a collision only sends the slice to the
    Python path, which decides exactly)."""
    ordered = np.sort(hashes)
    return bool((ordered[1:] == ordered[:-1]).any())


def _in_sql(wh: Warehouse) -> bool:
    """Whether slices are typed and validated in SQL by the warehouse (the embedded engine:
    DuckDB's vectorised engine does it on the connection that writes them). PostgreSQL takes
    the Python path: its COPY, not the client, bounds that ingestion."""
    return wh.engine == "embedded"


def _write_sql_slice(
    tx: Transaction,
    item: _Slice,
    predictions: _Store,
    labels: _Store,
    contract: ModelContract,
    plan: Layout,
    features: Mapping[str, str] | None,
    constants: Mapping[str, Any],
) -> tuple[int, int, frozenset[dt.date]] | None:
    """Writes a `_SqlSlice`: (good rows, quarantined rows, days), or None, having written
    nothing, when the slice must take the Python path (an id twice, or `_validate` reads a
    row SQL found bad otherwise)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    typed, chunk = item.sql, item.chunk
    assert typed is not None and chunk is not None
    batch_id, now = constants["batch_id"], constants["ingested_at"]
    params = {**constants, "classes": plan.classes}
    with tx.registered(_SLICE_VIEW, typed.raw):  # type: ignore[attr-defined]
        # The rows themselves go from the slice to the table in the INSERTs below.
        scan = typed.scanned
        assert scan is not None
        column = {n: scan.column(n) for n in scan.column_names}
        bad = column["bad"].to_numpy(zero_copy_only=False).astype(bool)
        labelled = column["labelled"].to_numpy(zero_copy_only=False).astype(bool)
        label_bad = column["label_bad"].to_numpy(zero_copy_only=False).astype(bool)
        number = column["row"].to_numpy()
        hashes = column["h"].to_numpy()
        kept, label_kept = ~bad, labelled & ~label_bad
        # The scan evaluated the checks over the same registered rows: where it found every
        # row good (labelled), the INSERTs need not evaluate them a second time.
        good = f"NOT ({typed.bad})" if bad.any() else "true"
        label_good = (
            "true" if label_kept.all() else f"({typed.labelled}) AND NOT ({typed.label_bad})"
        )
        # Usually the labels' ids are the predictions': then one check covers both.
        twice_labelled = not np.array_equal(label_kept, kept) and _twice(hashes[label_kept])
        if twice_labelled or _twice(hashes[kept]):
            return None  # which copy wins, and whether it is identical: the Python path
        quarantined = labels_quarantined = pd.DataFrame()
        if bad.any() or label_bad.any():
            chunk = _pandas(chunk)
        if bad.any():
            rejected = _sql_bad_rows(chunk, number[bad], contract, "prediction", features)
            if rejected is None:
                return None
            quarantined = _quarantine_rows(contract, "prediction", rejected, batch_id, now)
        if label_bad.any():
            names = [plan.id_column, plan.target_column, BATCH_COLUMN]
            rejected = _sql_bad_rows(chunk, number[label_bad], contract, "label", features, names)
            if rejected is None:
                return None
            labels_quarantined = _quarantine_rows(contract, "label", rejected, batch_id, now)

        # In the rows' order (the scan's may differ): `_write_slice` aligns them with rows.
        order = np.argsort(number[kept], kind="stable")
        ids = column["id"].filter(pa.array(kept)).take(pa.array(order))
        again = predictions.earlier(ids, hashes[kept][order])
        expressions = {c: typed.predictions[c] for c in predictions.columns}
        if again.any():
            # Ids an earlier slice wrote: the Python path's comparison with the stored rows.
            rows = tx.query_arrow(typed.select(expressions, good, ordered=True), params)  # type: ignore[attr-defined]
            identical, replaced = _write_slice(
                predictions, rows, contract, plan, "prediction", batch_id, now, again=again
            )
        else:
            predictions.write_select(typed.select(expressions, good), params)
            identical, replaced = 0, pd.DataFrame()
        _quarantine(tx, _concat(quarantined, replaced))
        days = frozenset(pc.unique(column["day"].filter(pa.array(kept))).to_pylist())
        if typed.label_columns is not None:
            relabelled = labels.earlier(
                column["id"].filter(pa.array(label_kept)), hashes[label_kept]
            )
            expressions = {c: typed.label_columns[c] for c in labels.columns}
            labels.write_select(
                typed.select(expressions, label_good), params, replacing=bool(relabelled.any())
            )
            _quarantine(tx, labels_quarantined)
    n_good = int(kept.sum()) - identical - len(replaced)
    return n_good, int(bad.sum()) + len(replaced), days


@dataclass
class _Slice:
    """One slice, validated and ready to write (built ahead of the writes, see `_ahead`)."""

    n_rows: int
    rows: Any = None  # Arrow table in the table's column order
    quarantined: pd.DataFrame | None = None
    n_bad: int = 0
    days: frozenset[dt.date] = frozenset()
    labels: Any = None  # labels in the log: Arrow table of the labels table
    labels_quarantined: pd.DataFrame | None = None
    chunks: list[dict[str, Any]] | None = None  # `packed.chunks_of` the rows, made ahead
    # The embedded engine's SQL path (`_SqlSlice`): the users' columns as Arrow, typed and
    # validated by DuckDB while it writes them; `chunk` (pandas or Arrow) is kept for a
    # fallback.
    sql: _SqlSlice | None = None
    chunk: Any = None


class _SliceError(Exception):  # noqa: N818 - carries a preparation error across the thread
    def __init__(self, error: BaseException, n_rows: int):
        super().__init__(str(error))
        self.error, self.n_rows = error, n_rows


def _ahead(
    frame: pd.DataFrame | Iterable[Any], prepare: Callable[[Any], _Slice]
) -> Iterator[_Slice]:
    """The prepared slices (of pandas frames, or of Arrow record batches for the embedded
    engine's SQL path). A single frame is prepared here; slices from a source are read and
    validated one slice ahead in a thread while this one writes the previous slice (the
    engines release the GIL while they work, so reading, validating and writing overlap).
    An error while preparing a slice comes out as _SliceError (with the slice's rows)."""
    if isinstance(frame, pd.DataFrame):
        try:
            yield prepare(frame)
        except SourceSchemaError as error:
            raise _SliceError(error, len(frame)) from error
        return
    done = object()
    ready: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        slices = iter(frame)
        try:
            for chunk in slices:
                try:
                    item: Any = prepare(chunk)
                except BaseException as error:  # noqa: BLE001 - re-raised by the writer
                    put(_SliceError(error, len(chunk)))
                    return
                if not put(item):
                    return
            put(done)
        except BaseException as error:  # noqa: BLE001 - the source failed: re-raised there
            put(_SliceError(error, 0))
        finally:
            close = getattr(slices, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="ingest-slices", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, _SliceError):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def _pandas(chunk: pd.DataFrame | Any) -> pd.DataFrame:
    """A slice as pandas, as the source's own iteration would have given it."""
    return chunk if isinstance(chunk, pd.DataFrame) else arrow_to_pandas(chunk, split_blocks=True)


def _prediction_slice(
    chunk: pd.DataFrame | Any,
    contract: ModelContract,
    plan: Layout,
    features: Mapping[str, str] | None,
    constants: Mapping[str, Any],
    in_sql: bool = False,
    writing: packed.Writing | None = None,
) -> _Slice:
    """`chunk`: a pandas frame, or (`in_sql`) an Arrow record batch of `ArrowSlices`.
    `writing`: the rows' chunks are made here too (on the preparing thread)."""
    if len(chunk) == 0:
        return _Slice(0)
    if in_sql:
        _check_columns(chunk, plan, "prediction", _source_name(contract, "prediction"))
        typed = _SqlSlice.of(chunk, plan)
        if typed is not None:
            typed.scan({**constants, "classes": plan.classes})
            return _Slice(len(chunk), sql=typed, chunk=chunk)
    chunk = _pandas(chunk)
    batch_id, now = constants["batch_id"], constants["ingested_at"]
    columns, drop, bad = _validate(chunk, contract, "prediction", features=features)
    rows = _arrow_rows(columns, drop, list(plan.prediction_types()), constants)
    day = columns["prediction_date"]
    item = _Slice(
        len(chunk),
        rows=rows,
        quarantined=_quarantine_rows(contract, "prediction", bad, batch_id, now),
        n_bad=len(bad),
        days=_days(day[~drop] if drop is not None else day),
    )
    if plan.labels_in_log:
        names = [plan.id_column, plan.target_column]
        labelled = chunk[[*names, BATCH_COLUMN] if BATCH_COLUMN in chunk.columns else names]
        present = labelled[plan.target_column].notna()
        if not present.all():
            labelled = labelled[present]
        columns, drop, bad = _validate(labelled, contract, "label", features=features)
        label_constants = {"batch_id": batch_id, "labelled_at": now}
        item.labels = _arrow_rows(columns, drop, list(plan.label_types()), label_constants)
        item.labels_quarantined = _quarantine_rows(contract, "label", bad, batch_id, now)
    if writing is not None:
        item.chunks = packed.chunks_of(writing, rows, item.labels)
    return item


# A batch of this many good rows refreshes the planner's statistics of the tables it wrote
# (`Transaction.analyze`): smaller ones barely change a table's size.
ANALYZE_MIN_ROWS = 50_000


def ingest_predictions(
    wh: Warehouse,
    contract: ModelContract,
    frame: pd.DataFrame | Iterable[pd.DataFrame],
    *,
    batch_id: str,
    model_version: str | None,
    features: Mapping[str, str] | None = None,
) -> IngestResult:
    """Validate a batch of predictions and store it: good rows upserted by prediction id
    (a re-delivered row replaces the old one; an identical one writes nothing), bad rows
    quarantined with their reasons, the batch recorded in mlops.ingest_batches, all in one
    transaction. The batch is a frame or its slices (a source's `iter_day` / `iter_new`):
    each slice is validated and written in turn, so memory holds a slice or two; an id that
    comes again in a later slice is a duplicate within the batch like one within a slice
    (the last row wins). Days are those of the rows' timestamps. Each row's batch_id is its
    `_batch` (file) when the frame has one, else `batch_id`. When the contract has no label
    source, targets in the log are stored as labels too (rows without one are simply not
    labelled yet).

    A missing column records the rejected batch and raises SourceSchemaError."""
    plan = layout(contract, features)
    now = _now()
    constants = {"model_version": model_version, "batch_id": batch_id, "ingested_at": now}
    n_rows = n_good = n_bad = 0
    days: set[dt.date] = set()
    try:
        with wh.transaction() as tx:
            # A row store keeps the features by column too: this writer appends the chunks
            # of the rows it inserts (`storage.packed`).
            writing = None if wh.columnar else packed.writer(tx, plan.model)
            chunked = None
            # The slice being written: its labels (labels in the log) and its chunks.
            writes: list[_Slice] = []
            if writing is not None:

                def chunked(rows: Any, as_is: bool) -> None:
                    item = writes[-1]
                    packed.written(
                        tx,
                        plan.model,
                        writing,
                        rows,
                        as_is=as_is,
                        labels=item.labels,
                        chunks=item.chunks or (),
                    )

            predictions = _Store(
                tx, plan.predictions_table, plan.prediction_types(), written=chunked
            )
            labels = _Store(tx, plan.labels_table, plan.label_types())
            prepare = functools.partial(
                _prediction_slice,
                contract=contract,
                plan=plan,
                features=features,
                constants=constants,
                writing=writing,
            )
            in_sql = _in_sql(wh)
            if in_sql and isinstance(frame, ArrowSlices):
                # DuckDB reads the source's Arrow batches as they are (no pandas round trip).
                frame = frame.arrow()
            for ahead in _ahead(frame, functools.partial(prepare, in_sql=in_sql)):
                n_rows += ahead.n_rows
                item = ahead
                if ahead.sql is not None:
                    written = _write_sql_slice(
                        tx, ahead, predictions, labels, contract, plan, features, constants
                    )
                    if written is not None:
                        n_good, n_bad = n_good + written[0], n_bad + written[1]
                        days |= written[2]
                        continue
                    assert ahead.chunk is not None
                    item = prepare(ahead.chunk)
                if item.rows is None:
                    continue
                writes[:] = [item]
                identical, replaced = _write_slice(
                    predictions, item.rows, contract, plan, "prediction", batch_id, now
                )
                _quarantine(tx, _concat(item.quarantined, replaced))
                n_good += item.rows.num_rows - identical - len(replaced)
                n_bad += item.n_bad + len(replaced)
                days |= item.days
                if item.labels is not None:
                    # A label that comes again in a later slice wins, as its prediction does
                    # (whose duplicate is counted and quarantined above).
                    again = labels.earlier(item.labels.column("prediction_id"))
                    labels.write(item.labels, replacing=bool(again.any()))
                    _quarantine(tx, item.labels_quarantined)
                    if writing is not None and again.any():
                        # Labels of rows an earlier slice packed, of one of the batch's days.
                        packed.mark_stale(tx, plan.model, sorted(days))
            predictions.finish()
            labels.finish()
            result = IngestResult(n_rows, n_good, n_bad, frozenset(days))
            _record(tx, contract, "prediction", batch_id, result, now)
            if writing is not None:
                # Days whose rows this batch changed or moved: their chunks made again.
                packed.refresh(tx, plan.model)
            if n_good >= ANALYZE_MIN_ROWS:
                tx.analyze(plan.predictions_table, ["prediction_id", "prediction_date"])
                tx.analyze(plan.labels_table, ["prediction_id"])
    except _SliceError as failed:
        if not isinstance(failed.error, SourceSchemaError):
            raise failed.error from None
        _reject_batch(wh, contract, "prediction", n_rows + failed.n_rows, batch_id, failed.error)
        raise failed.error from None
    return result


def _label_slice(
    chunk: pd.DataFrame,
    contract: ModelContract,
    features: Mapping[str, str] | None,
    constants: Mapping[str, Any],
    columns_order: list[str],
) -> _Slice:
    if chunk.empty:
        return _Slice(0)
    columns, drop, bad = _validate(chunk, contract, "label", features=features)
    batch_id, now = constants["batch_id"], constants["labelled_at"]
    return _Slice(
        len(chunk),
        rows=_arrow_rows(columns, drop, columns_order, constants),
        quarantined=_quarantine_rows(contract, "label", bad, batch_id, now),
        n_bad=len(bad),
    )


def ingest_labels(
    wh: Warehouse,
    contract: ModelContract,
    frame: pd.DataFrame | Iterable[pd.DataFrame],
    *,
    batch_id: str,
    features: Mapping[str, str] | None = None,
) -> IngestResult:
    """Validate and upsert late labels (id and target columns), a frame or its slices. Days
    are those of the predictions whose label is new or changed; labels whose prediction is
    not stored yet are kept (they may come first) and count in no day until it arrives (its
    ingestion reports the day)."""
    plan = layout(contract, features)
    now = _now()
    n_rows = n_good = n_bad = 0
    batches: set[str] = set()
    try:
        with wh.transaction() as tx:
            # A row store keeps the labels by column too: this writer clears the packed labels
            # of the days it labels (`storage.packed`).
            writing = None if wh.columnar else packed.writer(tx, plan.model)
            store = _Store(tx, plan.labels_table, plan.label_types())
            prepare = functools.partial(
                _label_slice,
                contract=contract,
                features=features,
                constants={"batch_id": batch_id, "labelled_at": now},
                columns_order=store.columns,
            )
            for item in _ahead(frame, prepare):
                n_rows += item.n_rows
                if item.rows is None:
                    continue
                identical, replaced = _write_slice(
                    store, item.rows, contract, plan, "label", batch_id, now
                )
                batches |= set(item.rows.column("batch_id").unique().to_pylist())
                _quarantine(tx, _concat(item.quarantined, replaced))
                n_good += item.rows.num_rows - identical - len(replaced)
                n_bad += item.n_bad + len(replaced)
            store.finish()
            if writing is None:
                days = _label_days(tx, plan, now, batches)
            else:
                # The same days, their packed labels cleared in the same pass.
                written = {"labelled_at": now, "batches": sorted(batches)}
                found = packed.labelled(
                    tx, plan.model, plan.predictions_table, plan.labels_table, written
                )
                days = frozenset(_date(d) for d in found)
                packed.refresh(tx, plan.model)
            result = IngestResult(n_rows, n_good, n_bad, days)
            _record(tx, contract, "label", batch_id, result, now)
            if n_good >= ANALYZE_MIN_ROWS:
                tx.analyze(plan.labels_table, ["prediction_id"])
    except _SliceError as failed:
        if not isinstance(failed.error, SourceSchemaError):
            raise failed.error from None
        _reject_batch(wh, contract, "label", n_rows + failed.n_rows, batch_id, failed.error)
        raise failed.error from None
    return result


def _label_days(
    tx: Transaction, plan: Layout, labelled_at: dt.datetime, batches: set[str]
) -> frozenset[dt.date]:
    if not batches:
        return frozenset()
    # Table names from the validated layout; the batch ids and the time are bound. Labels
    # written now are the new or changed ones (an identical label keeps its first time).
    found = tx.query(
        f"SELECT DISTINCT p.prediction_date AS day FROM {plan.labels_table} l "  # noqa: S608
        f"JOIN {plan.predictions_table} p ON p.prediction_id = l.prediction_id "
        "WHERE l.labelled_at = :labelled_at AND l.batch_id = ANY(:batches)",
        {"labelled_at": labelled_at, "batches": sorted(batches)},
    )
    return frozenset(_date(r["day"]) for r in found)


def _date(value: dt.date) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


# --------------------------------------------------------------------------- reading


def read_for_metrics(
    wh: Warehouse,
    contract: ModelContract,
    day: dt.date,
    *,
    features: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One day's predictions with what metrics need and nothing else: y_true (NULL until
    labelled), y_pred, proba (binary) or proba__<i> (multiclass, i = index in class_labels),
    odds (roi). Classification labels are pandas strings, numbers float64."""
    *_, frame = iter_for_metrics(wh, contract, day, features=features)
    return frame


def iter_for_metrics(
    wh: Warehouse,
    contract: ModelContract,
    day: dt.date,
    *,
    features: Mapping[str, str] | None = None,
    unlabelled_first: bool = False,
) -> Iterator[pd.DataFrame]:
    """`read_for_metrics`'s frame; with `unlabelled_first`, after a first frame of the
    same snapshot that needs no labels, read without the join while the engine joins the
    labels (`Warehouse.read_frames`). On DuckDB that is every output (`_joined_last`): the
    caller makes the metrics' inputs from them meanwhile. On PostgreSQL it is the
    probabilities (and odds) alone, from the day's chunks (`storage.packed`), to estimate
    from; while those are stale, the join alone is read: a first read of the
    row store would scan the day's rows whole a second time, which costs more than the
    estimate it would hide (1M rows: +0.9 s of reading to hide 0.4 s)."""
    plan = layout(contract, features)
    # A model nothing was logged for yet (or one that gained a feature) reads as empty rows.
    packing = _ensure_tables(wh, contract, features)[1]
    label_kind = "text" if plan.classification else "double"
    types = {"y_true": label_kind, "y_pred": label_kind}
    # A model that serves labels only has an all-NULL proba column: not reading it leaves the
    # probability metrics NULL instead of failing them on NaN.
    if plan.task == "binary" and plan.probability_column:
        types["proba"] = "double"
    for column in plan.class_probability_columns:
        types[column] = "double"
    if plan.odds_column:
        types["odds"] = "double"
    select = ", ".join(
        f"l.{quote_identifier(c)}" if c == "y_true" else f"p.{quote_identifier(c)}" for c in types
    )
    statements = [
        (  # noqa: S608 - validated identifiers; the day is bound
            f"SELECT {select} FROM {plan.predictions_table} p "
            f"LEFT JOIN {plan.labels_table} l ON l.prediction_id = p.prediction_id "
            "WHERE p.prediction_date = :day",
            {"day": day},
        )
    ]
    unlabelled = [c for c in types if c not in ("y_true", "y_pred")]
    if not unlabelled_first:
        unlabelled = []
    if unlabelled and wh.columnar:
        frames = _joined_last(wh, plan, day, types)
    else:
        frames = _metrics_frames(wh, plan, day, statements, types, packing, unlabelled)
    for frame in frames:
        if not plan.classification and "y_pred" in frame:
            # A regression model's prediction is its score (the name the task metrics read).
            frame["score"] = frame["y_pred"]
        yield frame


def _joined_last(
    wh: Warehouse, plan: Layout, day: dt.date, types: dict[str, str]
) -> Iterator[pd.DataFrame]:
    """DuckDB: the day's outputs (every column but y_true), then the whole frame. The
    outputs are read without the join; the labels alone are joined while the caller works
    on them. The join builds its table on one side and gives rows in the other's order, so
    it is ordered by the predictions' rowid: the order of the plain scan (DuckDB keeps a
    table's insertion order, which is its rowid order). The rowids of both reads are
    compared all the same: rows put beside the wrong labels would be wrong metrics."""
    outputs = [c for c in types if c != "y_true"]
    columns = ", ".join(quote_identifier(c) for c in outputs)
    statements = [
        (  # noqa: S608 - validated identifiers; the day is bound
            f"SELECT rowid AS _row, {columns} FROM {plan.predictions_table} "
            "WHERE prediction_date = :day",
            {"day": day},
        ),
        (  # noqa: S608 - validated identifiers; the day is bound
            f"SELECT p.rowid AS _row, l.y_true FROM {plan.predictions_table} p "
            f"LEFT JOIN {plan.labels_table} l ON l.prediction_id = p.prediction_id "
            "WHERE p.prediction_date = :day ORDER BY p.rowid",
            {"day": day},
        ),
    ]
    frames = wh.read_frames(statements, types={**types, "_row": "bigint"})
    try:
        first = next(frames)
        rows = first.pop("_row").to_numpy(dtype="int64")
        yield first
        labels = next(frames)
    finally:
        frames.close()  # the read's transaction ends here, even when the caller stops early
    if not np.array_equal(rows, labels["_row"].to_numpy(dtype="int64")):
        raise InferenceLogError(
            f"{plan.predictions_table}: the day's labels came back in another row order than "
            "its predictions; nothing was computed from them"
        )
    frame = first.copy(deep=False)
    frame.insert(0, "y_true", labels["y_true"].array)
    yield frame


def _metrics_frames(
    wh: Warehouse,
    plan: Layout,
    day: dt.date,
    statements: list[tuple[str, dict[str, Any]]],
    types: dict[str, str],
    packing: packed.Packing | None,
    unlabelled: list[str],
) -> Iterator[pd.DataFrame]:
    """The frames of `statements`; on a row store, from the day's chunks while they and
    their labels are fresh, the `unlabelled` columns first when asked (from chunks they
    cost a few megabytes, not a second scan of the day)."""
    if packing is None:
        yield from wh.read_frames(statements, types=types)
        return
    outputs = [c for c in types if c != "y_true"]
    chunked = [(packed.select(plan.model, outputs, label=True), {"day": day})]
    if unlabelled:
        # Fresh only if the second read will be: the day's chunks hold all it reads.
        complete = [*outputs, packed.LABEL]
        first = packed.select(plan.model, unlabelled, complete=complete)
        chunked.insert(0, (first, {"day": day}))
    frames = wh.read_frames(
        chunked, types=types, decode=functools.partial(packed.decode, packing=packing)
    )
    try:
        for frame in frames:
            yield pd.DataFrame({c: frame[c] for c in types if c in frame}, copy=False)
    except packed.StaleDay:  # rows or labels changed since the day's chunks were made
        # The join on the row store, alone (its probabilities read first would cost a
        # second scan of the day).
        yield from wh.read_frames(statements[-1:], types=types)


def read_features(
    wh: Warehouse,
    contract: ModelContract,
    day: dt.date,
    *,
    features: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One day's feature columns: numeric float64, categorical pandas strings, in their
    canonical spelling as `validate_rows` stored them (not spelled again here: that was a
    tenth of a million-row drift run)."""
    plan = layout(contract, features)
    parts = list(iter_features(wh, contract, day, features=features))
    frame = parts[0] if len(parts) == 1 else pd.concat(parts, axis=1)
    return frame[list(plan.features)]


def iter_features(
    wh: Warehouse,
    contract: ModelContract,
    day: dt.date,
    *,
    features: Mapping[str, str] | None = None,
    counted: bool = False,
) -> Iterator[pd.DataFrame | dict[str, CategoryCounts]]:
    """`read_features` in groups of columns, the rows in the same order in all: the engine
    reads a group while the caller tests the one before. Nothing is tested while the first
    group is read, so it is small and quick to decode: three numeric features. Then the rest
    of the numeric ones in two halves, each read while the group before is tested, and the
    categorical ones last, read while the last numeric ones are tested.
    `counted`: the categorical group comes as each feature's counts (`CategoryCounts` by
    name), whose test takes next to no time. A column store counts them (`GROUP BY`): for 1M
    rows x 10 features 0.03 s instead of 0.2-0.35 s of reading the text and 0.15 s of
    counting it in pandas. On a row store Arrow counts the values in the chunks' bytes (a
    `GROUP BY` there would scan every row once per feature); a stale day's are counted from
    its rows.
    On the embedded engine the file stays locked until the last group is read. On a row
    store the features come from their chunks (`storage.packed`), or from the predictions
    table while the day's chunks are stale.
    The tables' check and the read share one connection: on the embedded engine, one open
    of the file instead of two (a new one starts with none of it cached)."""
    plan = layout(contract, features)
    numeric = [n for n, k in plan.features.items() if k == "numeric"]
    categorical = [n for n, k in plan.features.items() if k == "categorical"]
    half = 3 + (len(numeric) - 3) // 2
    counts = counted and bool(categorical)
    groups = [numeric[:3], numeric[3:half], numeric[half:], categorical]
    groups = [g for g in groups if g]
    with wh.session():
        frames = _feature_frames(wh, contract, features, plan, day, groups, counts=counts)
        try:
            for _ in groups[1:]:
                yield next(frames)
            last = next(frames)
            # The reads run to their end: PostgreSQL's connection then goes back to its pool
            # for the process's next read (closed instead when they are cut short).
            for _ in frames:
                raise InferenceLogError("the feature reads gave more results than groups")
        finally:
            frames.close()
    yield last  # once the session is closed: the caller's tests of it hold no file lock


def _feature_frames(
    wh: Warehouse,
    contract: ModelContract,
    features: Mapping[str, str] | None,
    plan: Layout,
    day: dt.date,
    groups: list[list[str]],
    *,
    counts: bool = False,
) -> Iterator[pd.DataFrame | dict[str, CategoryCounts]]:
    """`iter_features`' frames, one per group; with `counts`, the last group (the
    categorical features) as their counts."""
    packing = _ensure_tables(wh, contract, features)[1]
    types = _feature_types(plan)
    by_column = [(_features_sql(plan, g), {"day": day}) for g in groups]
    if packing is None:
        if not counts:
            yield from wh.read_frames(by_column, types=types)
            return
        by_column[-1] = (_counts_sql(plan, groups[-1]), {"day": day})
        yield from _last_counted(
            wh.read_frames(by_column, types={**types, **_COUNT_TYPES}),
            len(groups),
            lambda frame: _category_counts(frame, groups[-1]),
        )
        return
    # The first group's read tells whether the chunks hold every group's columns (a chunk
    # made before the model gained a feature lacks it): then all are read from them.
    everything = [n for g in groups for n in g]
    chunked = [
        packed.select(plan.model, g, complete=everything if i == 0 else ())
        for i, g in enumerate(groups)
    ]
    counted = set(groups[-1]) if counts else set()

    def decode(table: Any) -> pd.DataFrame | dict[str, CategoryCounts]:
        if counted and set(table.column_names[2:]) == counted:
            return packed.decode_counts(table)
        return packed.decode(table, packing)

    frames = wh.read_frames(
        [(statement, {"day": day}) for statement in chunked], types=types, decode=decode
    )
    try:
        first = next(frames)
    except packed.StaleDay:  # rows changed since the day's chunks were made
        frames = wh.read_frames(by_column, types=types)
        if counts:  # read whole from the table: counted here
            frames = _last_counted(
                frames,
                len(groups),
                lambda frame: {name: CategoryCounts.of(frame[name]) for name in groups[-1]},
            )
        yield from frames
        return
    yield first
    yield from frames


def _last_counted(
    frames: Iterator[pd.DataFrame], n: int, count: Callable[[Any], dict[str, CategoryCounts]]
) -> Iterator[pd.DataFrame | dict[str, CategoryCounts]]:
    """The `n` frames, the last as `count` makes it; closing this closes the reads (their
    transaction ends then, not when the collector gets to them)."""
    try:
        for i, frame in enumerate(frames):
            yield count(frame) if i == n - 1 else frame
    finally:
        frames.close()  # type: ignore[attr-defined]


# The counts' result: which feature (its place in the group), its value as text, its rows.
_COUNT_TYPES = {"feature_at": "bigint", "value": "text", "n": "bigint"}


def _counts_sql(plan: Layout, columns: list[str]) -> str:
    """Each column's rows per value (NULL for the missing ones), one `GROUP BY` per column."""
    return " UNION ALL ".join(
        f"SELECT {i} AS feature_at, CAST({quote_identifier(c)} AS VARCHAR) AS value, "  # noqa: S608
        f"count(*) AS n FROM {plan.predictions_table} WHERE prediction_date = :day "
        f"GROUP BY {quote_identifier(c)}"
        for i, c in enumerate(columns)
    )


def _category_counts(frame: pd.DataFrame, columns: list[str]) -> dict[str, CategoryCounts]:
    at = frame["feature_at"].to_numpy(dtype=np.int64)
    missing = frame["value"].isna().to_numpy()
    counts: dict[str, CategoryCounts] = {}
    for i, name in enumerate(columns):
        mine, absent = at == i, (at == i) & missing
        present = mine & ~missing
        counts[name] = CategoryCounts(
            labels=tuple(frame["value"][present].astype(str)),
            counts=frame["n"][present].to_numpy(dtype=np.int64),
            missing=int(frame["n"][absent].sum()),
        )
    return counts


def _feature_types(plan: Layout) -> dict[str, str]:
    return {n: "double" if k == "numeric" else "text" for n, k in plan.features.items()}


def _features_sql(plan: Layout, columns: list[str]) -> str:
    select = ", ".join(quote_identifier(c) for c in columns)
    return (  # noqa: S608 - validated identifiers; the day is bound
        f"SELECT {select} FROM {plan.predictions_table} WHERE prediction_date = :day"
    )


__all__ = [
    "InferenceLogError",
    "IngestResult",
    "Layout",
    "canonical_categories",
    "ensure_tables",
    "ingest_labels",
    "ingest_predictions",
    "iter_features",
    "iter_for_metrics",
    "layout",
    "read_features",
    "read_for_metrics",
    "validate_rows",
]
