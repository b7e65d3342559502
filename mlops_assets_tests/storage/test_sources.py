"""Source readers: a table in the warehouse (both engines) and a folder of Parquet files.
Poll cursors see new rows only; reads return the contract's columns; predictions from either
source, and labels two days later, land in the inference log with the same types."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_assets.lib.contract import ProductionSource, Source
from mlops_assets.storage.inference_log import (
    canonical_categories,
    ensure_tables,
    ingest_labels,
    ingest_predictions,
    layout,
    read_features,
    read_for_metrics,
)
from mlops_assets.storage.sources import SourceError, SourceSchemaError, open_source
from mlops_assets.storage.warehouse import Warehouse
from mlops_assets_tests.storage.conftest import DAY, binary_contract, prediction_frame

PREDS_DDL = (
    "CREATE TABLE serving.preds (pid TEXT, ts TIMESTAMP, amount DOUBLE PRECISION, "
    "region TEXT, label INTEGER, p DOUBLE PRECISION, loaded_at TIMESTAMP)"
)
T1 = dt.datetime(2026, 3, 2, 10, 0)
T2 = dt.datetime(2026, 3, 3, 11, 0)


def _write(wh: Warehouse, table: str, frame: pd.DataFrame) -> None:
    with wh.transaction() as tx:
        tx.insert_frame(table, frame)


def _table_reader(wh: Warehouse, table: str = "serving.preds"):
    return open_source(Source(table=table), wh, model="credit")


# --------------------------------------------------------------------------- table


def test_table_poll_sees_new_rows_only(warehouse: Warehouse):
    warehouse.execute(PREDS_DDL)
    _write(warehouse, "serving.preds", prediction_frame(30, loaded_at=T1))
    reader = _table_reader(warehouse)
    first = reader.poll(None, cursor_column="loaded_at", timestamp_column="ts")
    assert (first.n_rows, first.days, first.batches) == (30, {DAY}, ("serving.preds",))
    rows = reader.read_new(first, ["pid", "p"], cursor_column="loaded_at")
    assert len(rows) == 30 and set(rows["_batch"]) == {"serving.preds"}

    nothing = reader.poll(first.cursor, cursor_column="loaded_at", timestamp_column="ts")
    assert nothing.empty and nothing.days == frozenset() and nothing.cursor == first.cursor

    next_day = DAY + dt.timedelta(days=1)
    _write(
        warehouse,
        "serving.preds",
        prediction_frame(10, day=next_day, start=100, loaded_at=T2),
    )
    second = reader.poll(first.cursor, cursor_column="loaded_at", timestamp_column="ts")
    assert (second.n_rows, second.days) == (10, {next_day})
    new = reader.read_new(second, ["pid"], cursor_column="loaded_at")
    assert sorted(new["pid"]) == sorted(f"id-{i}" for i in range(100, 110))
    assert reader.poll(second.cursor, cursor_column="loaded_at", timestamp_column="ts").empty


def test_table_rows_at_the_high_water_mark_are_not_missed(warehouse: Warehouse):
    warehouse.execute(PREDS_DDL)
    _write(warehouse, "serving.preds", prediction_frame(5, loaded_at=T1))
    reader = _table_reader(warehouse)
    first = reader.poll(None, cursor_column="loaded_at", timestamp_column="ts")
    # A second writer commits rows stamped with the same loaded_at after the poll.
    _write(warehouse, "serving.preds", prediction_frame(3, start=50, loaded_at=T1))
    second = reader.poll(first.cursor, cursor_column="loaded_at", timestamp_column="ts")
    assert (second.n_rows, second.days) == (3, {DAY})
    again = reader.read_new(second, ["pid"], cursor_column="loaded_at")
    assert {"id-50", "id-51", "id-52"} <= set(again["pid"])  # the boundary is read again
    assert reader.poll(second.cursor, cursor_column="loaded_at", timestamp_column="ts").empty


def _poll(reader, cursor):
    return reader.poll(cursor, cursor_column="loaded_at", timestamp_column="ts")


def test_a_late_commit_below_the_mark_is_picked_up_within_the_lookback(warehouse: Warehouse):
    """Rows committed after a poll with a loaded_at below its mark (a writer that stamped
    them when its transaction began): within `lookback_seconds` they are picked up, with
    the day they fall on; further back, and without a lookback, they are not."""
    warehouse.execute(PREDS_DDL)
    mark = T1 + dt.timedelta(minutes=10)
    _write(warehouse, "serving.preds", prediction_frame(5, loaded_at=mark))
    watching = open_source(Source(table="serving.preds"), warehouse, model="credit")
    windowed = open_source(
        ProductionSource(table="serving.preds", lookback_seconds=300), warehouse, model="credit"
    )
    plain, first = _poll(watching, None), _poll(windowed, None)
    assert first.n_rows == plain.n_rows == 5
    next_day = DAY + dt.timedelta(days=1)
    late = prediction_frame(3, day=next_day, start=50, loaded_at=mark - dt.timedelta(minutes=4))
    too_late = prediction_frame(2, start=80, loaded_at=mark - dt.timedelta(minutes=6))
    _write(warehouse, "serving.preds", pd.concat([late, too_late]))

    assert _poll(watching, plain.cursor).empty  # the limit without a lookback
    second = _poll(windowed, first.cursor)
    # The late rows are new, on their own day; the window is read again with them (the log
    # upserts: the rows it has write nothing).
    assert (second.n_rows, second.days) == (3, {next_day})
    again = set(windowed.read_new(second, ["pid"], cursor_column="loaded_at")["pid"])
    assert again == {f"id-{i}" for i in [0, 1, 2, 3, 4, 50, 51, 52]}
    assert _poll(windowed, second.cursor).empty
    # Rows above the mark are read alone, as without a lookback.
    _write(warehouse, "serving.preds", prediction_frame(2, start=90, loaded_at=T2))
    third = _poll(windowed, second.cursor)
    assert (third.n_rows, third.days) == (2, {DAY})
    new = set(windowed.read_new(third, ["pid"], cursor_column="loaded_at")["pid"])
    assert new == {"id-90", "id-91"}


@pytest.mark.postgres
def test_concurrent_writers_stamped_by_now_are_all_picked_up(pg_warehouse: Warehouse):
    """Two serving writers on PostgreSQL whose loaded_at defaults to now() (the start of each
    transaction): the one that began first commits last, below the mark of a poll between
    the commits. With a lookback its row is picked up at the next poll."""
    import psycopg

    warehouse = pg_warehouse
    warehouse.execute(
        "CREATE TABLE serving.preds (pid TEXT, ts TIMESTAMP, amount DOUBLE PRECISION, "
        "region TEXT, label INTEGER, p DOUBLE PRECISION, "
        "loaded_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    source = ProductionSource(table="serving.preds", lookback_seconds=60)
    reader = open_source(source, warehouse, model="credit")
    insert = (
        "INSERT INTO serving.preds (pid, ts, amount, region, label, p) "
        "VALUES (%s, %s, 1.0, 'north', 1, 0.9)"
    )
    with psycopg.connect(warehouse.dsn) as slow, psycopg.connect(warehouse.dsn) as quick:
        slow.execute(insert, ("id-slow", T1))  # its transaction stays open
        quick.execute(insert, ("id-quick", T1))
        quick.commit()
        first = _poll(reader, None)
        assert first.n_rows == 1
        assert set(reader.read_new(first, ["pid"], cursor_column="loaded_at")["pid"]) == {
            "id-quick"
        }
        slow.commit()
    stamps = warehouse.query("SELECT pid FROM serving.preds ORDER BY loaded_at")
    assert [r["pid"] for r in stamps] == ["id-slow", "id-quick"]  # below the mark
    second = _poll(reader, first.cursor)
    assert (second.n_rows, second.days) == (1, {DAY})
    assert "id-slow" in set(reader.read_new(second, ["pid"], cursor_column="loaded_at")["pid"])
    assert _poll(reader, second.cursor).empty


def test_a_lookback_needs_a_timestamp_cursor_column(warehouse: Warehouse):
    warehouse.execute("CREATE TABLE serving.seq (pid TEXT, ts TIMESTAMP, seq BIGINT)")
    source = ProductionSource(table="serving.seq", lookback_seconds=30)
    reader = open_source(source, warehouse, model="credit")
    with pytest.raises(SourceError, match=r"credit: table serving\.seq .*'seq' is bigint"):
        reader.poll(None, cursor_column="seq", timestamp_column="ts")


def test_table_read_day_and_ids_with_names_in_another_case(warehouse: Warehouse):
    warehouse.execute(PREDS_DDL)
    _write(warehouse, "serving.preds", prediction_frame(4, loaded_at=T1))
    _write(
        warehouse,
        "serving.preds",
        prediction_frame(6, day=DAY + dt.timedelta(days=1), start=10, loaded_at=T2),
    )
    # PostgreSQL folds unquoted names to lower case; a contract may spell them otherwise.
    reader = _table_reader(warehouse, "Serving.PREDS")
    day = reader.read_day(DAY, ["PID", "Amount"], timestamp_column="TS")
    assert list(day.columns) == ["PID", "Amount", "_batch"] and len(day) == 4
    assert day["Amount"].dtype == "float64"
    picked = reader.read_ids(["id-1", "id-12", "nope"], ["pid", "label"], id_column="pid")
    assert sorted(picked["pid"]) == ["id-1", "id-12"]


def test_table_missing_column_names_column_source_and_model(warehouse: Warehouse):
    warehouse.execute(PREDS_DDL)
    reader = _table_reader(warehouse)
    with pytest.raises(SourceSchemaError, match=r"credit.*'score'.*table serving\.preds"):
        reader.read_day(DAY, ["pid", "score"], timestamp_column="ts")


# --------------------------------------------------------------------------- parquet


def _parquet(folder: Path, name: str, frame: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    frame.to_parquet(path, index=False)
    return path


def test_parquet_poll_sees_new_and_rewritten_files(tmp_path: Path, warehouse: Warehouse):
    folder = tmp_path / "inbox"
    _parquet(folder, "a.parquet", prediction_frame(20))
    _parquet(folder, "_b.parquet", prediction_frame(5, start=500))  # still being written
    (folder / "notes.txt").write_text("not a batch")
    reader = open_source(Source(parquet=str(folder)), warehouse, model="credit")
    first = reader.poll(None, cursor_column="loaded_at", timestamp_column="ts")
    assert (first.n_rows, first.days, first.batches) == (20, {DAY}, ("a.parquet",))
    assert reader.poll(first.cursor, cursor_column="x", timestamp_column="ts").empty

    next_day = DAY + dt.timedelta(days=1)
    _parquet(folder, "c.parquet", prediction_frame(7, day=next_day, start=100))
    (folder / "d.parquet").write_bytes(b"PAR1 half written")
    second = reader.poll(first.cursor, cursor_column="x", timestamp_column="ts")
    assert (second.n_rows, second.days, second.batches) == (7, {next_day}, ("c.parquet",))
    assert len(second.unreadable) == 1 and second.unreadable[0].startswith("d.parquet")
    rows = reader.read_new(second, ["pid", "p"], cursor_column="x")
    assert len(rows) == 7 and set(rows["_batch"]) == {"c.parquet"}

    # A re-written (re-delivered) file is picked up again.
    path = _parquet(folder, "a.parquet", prediction_frame(20, seed=9))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    (folder / "d.parquet").unlink()
    third = reader.poll(second.cursor, cursor_column="x", timestamp_column="ts")
    assert third.batches == ("a.parquet",) and third.n_rows == 20
    assert set(json.loads(third.cursor)["files"]) == {"a.parquet", "c.parquet"}


def test_parquet_read_day_ids_and_missing_columns(tmp_path: Path, warehouse: Warehouse):
    folder = tmp_path / "inbox"
    _parquet(folder, "a.parquet", prediction_frame(4))
    _parquet(folder, "b.parquet", prediction_frame(6, day=DAY + dt.timedelta(days=1), start=10))
    reader = open_source(Source(parquet=str(folder)), warehouse, model="credit")
    day = reader.read_day(DAY, ["pid", "amount"], timestamp_column="ts")
    assert len(day) == 4 and set(day["_batch"]) == {"a.parquet"}
    picked = reader.read_ids(["id-2", "id-11"], ["pid"], id_column="pid")
    assert sorted(picked["pid"]) == ["id-11", "id-2"]
    _parquet(folder, "c.parquet", prediction_frame(2, start=90).drop(columns=["p"]))
    with pytest.raises(SourceSchemaError, match=r"credit.*'p'.*c\.parquet"):
        reader.read_day(DAY, ["pid", "p"], timestamp_column="ts")


# --------------------------------------------------------------------------- end to end


def _ingest_new(wh: Warehouse, contract, reader, cursor):
    poll = reader.poll(cursor, cursor_column="loaded_at", timestamp_column="ts")
    plan = layout(contract)
    frame = reader.read_new(poll, plan.source_columns("prediction"), cursor_column="loaded_at")
    result = ingest_predictions(
        wh, contract, frame, batch_id=poll.batches[0] if poll.batches else "-", model_version="1"
    )
    return poll, result


@pytest.mark.parametrize("kind", ["table", "parquet"])
def test_predictions_from_a_source_then_labels_two_days_later(
    kind: str, tmp_path: Path, warehouse: Warehouse
):
    folder = tmp_path / "inbox"
    source = {"table": "serving.preds"} if kind == "table" else {"parquet": str(folder)}
    contract = binary_contract(predictions=source, labels={"table": "serving.labels"})
    ensure_tables(warehouse, contract)
    warehouse.execute(PREDS_DDL)
    warehouse.execute(
        "CREATE TABLE serving.labels (pid TEXT, defaulted INTEGER, loaded_at TIMESTAMP)"
    )
    frame = prediction_frame(40, loaded_at=T1)
    if kind == "table":
        _write(warehouse, "serving.preds", frame)
    else:
        _parquet(folder, "batch-1.parquet", frame)
    reader = open_source(contract.production.predictions, warehouse, model=contract.name)
    poll, result = _ingest_new(warehouse, contract, reader, None)
    assert (result.n_good, result.days) == (40, {DAY})

    # Two days later the outcomes are known for 25 of them.
    labelled_at = dt.datetime.combine(DAY + dt.timedelta(days=2), dt.time(8))
    _write(
        warehouse,
        "serving.labels",
        pd.DataFrame({"pid": frame["pid"][:25], "defaulted": 1, "loaded_at": labelled_at}),
    )
    labels = open_source(contract.production.labels, warehouse, model=contract.name)
    label_poll = labels.poll(None, cursor_column="loaded_at", timestamp_column=None)
    assert label_poll.n_rows == 25 and label_poll.days == frozenset()
    new_labels = labels.read_new(
        label_poll, layout(contract).source_columns("label"), cursor_column="loaded_at"
    )
    late = ingest_labels(warehouse, contract, new_labels, batch_id="labels")
    assert late.days == {DAY}
    metrics = read_for_metrics(warehouse, contract, DAY)
    assert metrics["y_true"].eq("1").sum() == 25 and metrics["y_true"].isna().sum() == 15
    # The same batch delivered again does not duplicate.
    if kind == "parquet":
        path = _parquet(folder, "batch-1.parquet", frame)
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    else:
        _write(warehouse, "serving.preds", frame.assign(loaded_at=T2))
    again, _ = _ingest_new(warehouse, contract, reader, poll.cursor)
    assert again.n_rows == 40
    assert len(read_for_metrics(warehouse, contract, DAY)) == 40


def test_an_int_coded_categorical_reads_the_same_from_table_and_parquet(
    tmp_path: Path, warehouse: Warehouse
):
    """The `1` vs `1.0` defect: int codes written by serving (an INTEGER column, or a float
    column in Parquet because of a missing value) compare equal to a reference built from ints."""
    features = {"amount": "numeric", "segment": "categorical"}
    codes = np.tile([1, 2, 3], 10)
    reference = canonical_categories(pd.Series(codes))
    frame = prediction_frame(30, loaded_at=T1).drop(columns=["region"]).assign(segment=codes)

    warehouse.execute(PREDS_DDL.replace("region TEXT", "segment INTEGER"))
    _write(warehouse, "serving.preds", frame)
    folder = tmp_path / "inbox"
    floats = frame.assign(segment=frame["segment"].astype("float64"), pid=frame["pid"] + "-pq")
    floats.loc[len(floats)] = floats.iloc[0].copy()
    floats.loc[len(floats) - 1, ["pid", "segment"]] = ["missing-code", np.nan]
    _parquet(folder, "floats.parquet", floats)

    by_source = {}
    for name, source in (("tbl", {"table": "serving.preds"}), ("pq", {"parquet": str(folder)})):
        contract = binary_contract(name=name, predictions=source, features=features)
        ensure_tables(warehouse, contract)
        _ingest_new(
            warehouse,
            contract,
            open_source(contract.production.predictions, warehouse, model=name),
            None,
        )
        by_source[name] = read_features(warehouse, contract, DAY)["segment"]
    assert by_source["pq"].isna().sum() == 1
    for values in by_source.values():
        observed = values.dropna().value_counts().sort_index()
        assert observed.to_dict() == reference.value_counts().sort_index().to_dict()
        assert set(values.dropna()) == {"1", "2", "3"}


# --------------------------------------------------------------------------- slices


@pytest.mark.parametrize("kind", ["table", "parquet"])
def test_a_day_is_read_and_stored_in_slices_and_a_rerun_writes_nothing(
    kind: str, tmp_path: Path, warehouse: Warehouse
):
    """A day streamed in slices of 8 rows: a file re-delivered in part (another slice) is
    stored once, nothing is quarantined, and reading the day again leaves the rows as they
    were (identical rows are not rewritten: their ingestion time stays the first one)."""
    folder = tmp_path / "inbox"
    source = {"table": "serving.preds"} if kind == "table" else {"parquet": str(folder)}
    contract = binary_contract(predictions=source)
    ensure_tables(warehouse, contract)
    first = prediction_frame(30, loaded_at=T1)
    second = pd.concat([first.iloc[5:15], prediction_frame(5, start=100, loaded_at=T1)])
    if kind == "table":
        warehouse.execute(PREDS_DDL)
        _write(warehouse, "serving.preds", first)
        _write(warehouse, "serving.preds", second)
    else:
        _parquet(folder, "a.parquet", first)
        _parquet(folder, "b.parquet", second)
    reader = open_source(contract.production.predictions, warehouse, model=contract.name)
    columns = layout(contract).source_columns("prediction")
    slices = list(reader.iter_day(DAY, columns, timestamp_column="ts", chunk_rows=8))
    assert len(slices) >= 5 and sum(len(s) for s in slices) == 45
    assert all(set(s.columns) == {*columns, "_batch"} for s in slices)

    result = ingest_predictions(
        warehouse,
        contract,
        reader.iter_day(DAY, columns, timestamp_column="ts", chunk_rows=8),
        batch_id="day",
        model_version="1",
    )
    assert (result.n_rows, result.n_good, result.n_quarantined) == (45, 35, 0)
    stored = 'SELECT prediction_id, proba, ingested_at FROM inference."credit__predictions"'
    before = sorted(warehouse.query(stored), key=lambda r: r["prediction_id"])
    assert len(before) == 35
    assert not warehouse.query("SELECT * FROM mlops.quarantine")

    again = ingest_predictions(
        warehouse,
        contract,
        reader.iter_day(DAY, columns, timestamp_column="ts", chunk_rows=8),
        batch_id="day-rerun",
        model_version="1",
    )
    assert (again.n_good, again.n_quarantined) == (35, 0)
    assert sorted(warehouse.query(stored), key=lambda r: r["prediction_id"]) == before


def test_an_id_changed_in_a_later_slice_keeps_the_last_and_quarantines_the_first(
    warehouse: Warehouse,
):
    contract = binary_contract()
    ensure_tables(warehouse, contract)
    first = prediction_frame(10)
    later = pd.concat(
        [
            first.iloc[5:8],  # identical copies: dropped, not quarantined
            first.iloc[8:10].assign(p=0.99, label=1),  # changed: the later row wins
            prediction_frame(5, start=100),
        ]
    )
    result = ingest_predictions(
        warehouse, contract, iter([first, later]), batch_id="b", model_version="1"
    )
    assert (result.n_rows, result.n_good, result.n_quarantined) == (20, 15, 2)
    stored = read_for_metrics(warehouse, contract, DAY)
    assert len(stored) == 15 and (stored["proba"] == 0.99).sum() == 2
    rows = warehouse.query("SELECT row_id, reason, row_json FROM mlops.quarantine ORDER BY row_id")
    assert [r["row_id"] for r in rows] == ["id-8", "id-9"]
    assert {r["reason"] for r in rows} == {"duplicate id within the batch (its last row was kept)"}
    kept = json.loads(rows[0]["row_json"])
    assert kept["pid"] == "id-8" and kept["p"] == pytest.approx(first.loc[8, "p"])


def test_a_bad_slice_late_in_the_batch_leaves_nothing_half_written(warehouse: Warehouse):
    contract = binary_contract()
    ensure_tables(warehouse, contract)
    good = prediction_frame(10)
    broken = prediction_frame(4, start=50).drop(columns=["region"])
    with pytest.raises(SourceSchemaError, match="'region'"):
        ingest_predictions(
            warehouse, contract, iter([good, broken]), batch_id="b", model_version="1"
        )
    assert len(read_for_metrics(warehouse, contract, DAY)) == 0
    [reject] = warehouse.query("SELECT row_id, reason FROM mlops.quarantine")
    assert reject["row_id"] is None and "14 rows rejected" in reject["reason"]
