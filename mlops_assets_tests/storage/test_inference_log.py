"""The inference log on both engines: typed per-model tables, upserts by prediction id, late
labels, quarantine of bad rows, and the one canonical spelling of categorical values."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from mlops_assets.lib.contract import parse_contract
from mlops_assets.storage import packed
from mlops_assets.storage.inference_log import (
    InferenceLogError,
    canonical_categories,
    ensure_tables,
    ingest_labels,
    ingest_predictions,
    iter_features,
    iter_for_metrics,
    layout,
    read_features,
    read_for_metrics,
    validate_rows,
)
from mlops_assets.storage.sources import SourceSchemaError
from mlops_assets.storage.warehouse import PostgresWarehouse, Warehouse
from mlops_assets_tests.storage.conftest import DAY, binary_contract, prediction_frame

LABELS = {"table": "serving.labels"}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2, 2], ["1", "2", "2"]),
        ([1.0, 2.0, np.nan], ["1", "2", None]),  # an int code read back as float
        ([1.5, -0.25, 3.0], ["1.5", "-0.25", "3"]),
        ([True, False, None], ["true", "false", None]),
        ([" north", "south ", ""], ["north", "south", ""]),
        (["1", 1, 1.0], ["1", "1", "1"]),  # one spelling whatever the writer used
        (pd.array([1, None], dtype="Int64"), ["1", None]),
    ],
)
def test_canonical_categories(values, expected):
    result = canonical_categories(pd.Series(values))
    assert str(result.dtype) == "string"
    assert [None if pd.isna(v) else v for v in result] == expected


def _count(wh: Warehouse, table: str) -> int:
    return int(wh.query(f"SELECT count(*) AS n FROM {table}")[0]["n"])  # noqa: S608


def test_tables_are_typed_from_the_contract(warehouse: Warehouse):
    contract = binary_contract(business_value={"kind": "roi", "odds_column": "odds_home"})
    ensure_tables(warehouse, contract)
    rows = warehouse.query(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'inference' AND table_name = 'credit__predictions'"
    )
    types = {r["column_name"]: r["data_type"].lower() for r in rows}
    assert types["amount"].startswith("double")
    assert types["region"] in ("text", "varchar")
    assert types["y_pred"] in ("text", "varchar")
    assert types["proba"].startswith("double")
    assert types["odds"].startswith("double")
    assert "features_json" not in types
    assert ensure_tables(warehouse, contract) == []  # idempotent


def test_predictions_then_labels_two_days_later(warehouse: Warehouse):
    contract = binary_contract(labels=LABELS)
    ensure_tables(warehouse, contract)
    frame = prediction_frame(50)
    result = ingest_predictions(warehouse, contract, frame, batch_id="b1", model_version="3")
    assert (result.n_rows, result.n_good, result.n_quarantined) == (50, 50, 0)
    assert result.days == {DAY}

    before = read_for_metrics(warehouse, contract, DAY)
    assert len(before) == 50 and before["y_true"].isna().all()
    # Only what metrics need: not the features, ids or the model version.
    assert set(before.columns) == {"y_true", "y_pred", "proba"}

    labels = pd.DataFrame({"pid": frame["pid"][:30], "defaulted": [1, 0] * 15})
    late = ingest_labels(warehouse, contract, labels, batch_id="labels-day3")
    assert (late.n_good, late.days) == (30, {DAY})
    after = read_for_metrics(warehouse, contract, DAY).sort_values("proba")
    assert after["y_true"].notna().sum() == 30
    assert set(after["y_true"].dropna()) == {"0", "1"}
    expected = frame.set_index("p")["label"].astype(str)
    assert list(after["y_pred"]) == list(expected.loc[after["proba"]])
    stored = warehouse.query(
        f"SELECT DISTINCT model_version FROM {layout(contract).predictions_table}"
    )
    assert stored == [{"model_version": "3"}]


def test_a_large_batch_refreshes_the_planner_statistics(warehouse: Warehouse, monkeypatch):
    """A day's run right after a big batch must not plan with the empty table's sizes (on
    PostgreSQL: a nested loop of index probes to join a million labels)."""
    from mlops_assets.storage import inference_log

    contract = binary_contract(labels=LABELS)
    ensure_tables(warehouse, contract)
    plan = layout(contract)
    predictions, labels_table = (
        t.split(".")[-1].strip('"') for t in (plan.predictions_table, plan.labels_table)
    )
    monkeypatch.setattr(inference_log, "ANALYZE_MIN_ROWS", 40)
    frame = prediction_frame(50)
    ingest_predictions(warehouse, contract, frame, batch_id="p", model_version="1")
    labels = pd.DataFrame({"pid": frame["pid"][:45], "defaulted": 1})
    ingest_labels(warehouse, contract, labels, batch_id="l")
    small = pd.DataFrame({"pid": frame["pid"][45:], "defaulted": 0})
    ingest_labels(warehouse, contract, small, batch_id="l2")  # under the threshold
    assert read_for_metrics(warehouse, contract, DAY)["y_true"].notna().sum() == 50
    if warehouse.engine != "postgres":
        return  # DuckDB keeps its statistics as it writes
    sizes = {
        r["relname"]: r["reltuples"]
        for r in warehouse.query(
            "SELECT relname, reltuples FROM pg_class WHERE relnamespace = 'inference'::regnamespace"
        )
    }
    # The last analysis of the labels saw the 45 rows of the large batch, not the small one's.
    assert {predictions: 50, labels_table: 45} == {
        k: v for k, v in sizes.items() if k in (predictions, labels_table)
    }
    analysed = warehouse.query(
        "SELECT tablename, attname FROM pg_stats WHERE schemaname = 'inference' "
        "ORDER BY tablename, attname"
    )
    assert [(r["tablename"], r["attname"]) for r in analysed] == [
        (labels_table, "prediction_id"),
        (predictions, "prediction_date"),
        (predictions, "prediction_id"),
    ]


def test_outputs_come_first_from_the_same_snapshot(warehouse: Warehouse):
    """What the estimate needs first, no join, then what metrics need, the same rows in the
    same order in both. On DuckDB that is every output (the labels alone are joined after,
    in the predictions' order, whatever order the labels came in); on PostgreSQL the
    probabilities from the day's chunks, and while their labels wait for a refresh, the join
    alone (a second scan of the row store would cost more than it hides)."""
    contract = binary_contract(labels=LABELS)
    ensure_tables(warehouse, contract)
    frame = prediction_frame(40)
    ingest_predictions(warehouse, contract, frame, batch_id="p", model_version="1")
    # Labelled backwards, so a join probing the labels would give their order, every third
    # one positive.
    late = frame.iloc[::-1][:25]
    labels = pd.DataFrame({"pid": late["pid"], "defaulted": (late.index % 3 == 0).astype(int)})
    ingest_labels(warehouse, contract, labels, batch_id="l")
    first, joined = iter_for_metrics(warehouse, contract, DAY, unlabelled_first=True)
    outputs = ["y_pred", "proba"] if warehouse.columnar else ["proba"]
    assert list(first.columns) == outputs
    assert list(joined.columns) == ["y_true", "y_pred", "proba"]
    assert sorted(first["proba"]) == sorted(joined["proba"]) == sorted(frame["p"])
    if warehouse.columnar:
        assert first.equals(joined[outputs])
    # Each row's label is its prediction's (the probabilities are distinct).
    truth = dict(zip(frame["p"], [str(int(i % 3 == 0)) for i in frame.index], strict=True))
    expected = [truth[p] if p in set(late["p"]) else None for p in joined["proba"]]
    assert [None if pd.isna(y) else y for y in joined["y_true"]] == expected
    assert joined["y_true"].notna().sum() == 25
    [only] = iter_for_metrics(warehouse, contract, DAY)
    assert (
        only.sort_values("proba")
        .reset_index(drop=True)
        .equals(joined.sort_values("proba").reset_index(drop=True))
    )
    if not warehouse.columnar:
        plan = layout(contract)
        warehouse.execute(
            f"UPDATE {plan.labels_table} SET y_true = '0' WHERE prediction_id = 'id-39'"
        )
        [joined] = iter_for_metrics(warehouse, contract, DAY, unlabelled_first=True)
        assert list(joined.columns) == ["y_true", "y_pred", "proba"]
        assert joined["y_true"].notna().sum() == 25 and (joined["y_true"] == "0").sum() == 17


def test_labels_before_their_predictions_are_kept(warehouse: Warehouse):
    contract = binary_contract(labels=LABELS)
    ensure_tables(warehouse, contract)
    frame = prediction_frame(10)
    early = ingest_labels(
        warehouse, contract, pd.DataFrame({"pid": frame["pid"], "defaulted": 1}), batch_id="l"
    )
    assert (early.n_good, early.days) == (10, frozenset())
    ingest_predictions(warehouse, contract, frame, batch_id="p", model_version="1")
    assert read_for_metrics(warehouse, contract, DAY)["y_true"].eq("1").all()


def test_a_redelivered_batch_replaces_rows(warehouse: Warehouse):
    contract = binary_contract()
    ensure_tables(warehouse, contract)
    frame = prediction_frame(40)
    ingest_predictions(warehouse, contract, frame, batch_id="b1", model_version="1")
    again = frame.assign(p=0.25, label=0)
    ingest_predictions(warehouse, contract, again, batch_id="b1-again", model_version="1")
    assert _count(warehouse, 'inference."credit__predictions"') == 40
    stored = read_for_metrics(warehouse, contract, DAY)
    assert (stored["proba"] == 0.25).all()


def test_an_out_of_order_batch_lands_in_its_day(warehouse: Warehouse):
    contract = binary_contract()
    ensure_tables(warehouse, contract)
    later = DAY + dt.timedelta(days=2)
    ingest_predictions(
        warehouse, contract, prediction_frame(20, day=later), batch_id="b2", model_version="1"
    )
    old = prediction_frame(15, day=DAY, start=100)
    result = ingest_predictions(warehouse, contract, old, batch_id="b1-late", model_version="1")
    assert result.days == {DAY}
    assert len(read_for_metrics(warehouse, contract, DAY)) == 15
    assert len(read_for_metrics(warehouse, contract, later)) == 20


def test_bad_rows_are_quarantined_and_good_rows_land(warehouse: Warehouse):
    contract = binary_contract()
    ensure_tables(warehouse, contract)
    frame = prediction_frame(10).astype({"amount": object, "p": object})
    frame.loc[1, "pid"] = None
    frame.loc[2, "p"] = 1.5
    frame.loc[3, "p"] = np.nan
    frame.loc[4, "amount"] = "lots"
    frame.loc[5, "ts"] = None
    frame.loc[6, "pid"] = frame.loc[7, "pid"]  # the last occurrence (row 7) is kept
    frame.loc[8, "amount"] = np.nan  # missing features are data, not errors
    result = ingest_predictions(warehouse, contract, frame, batch_id="batch-7", model_version="1")
    assert (result.n_rows, result.n_good, result.n_quarantined) == (10, 4, 6)

    rows = warehouse.query(
        "SELECT row_id, reason, batch_id, kind, row_json FROM mlops.quarantine ORDER BY reason"
    )
    reasons = {r["reason"] for r in rows}
    assert reasons == {
        "id pid missing",
        "probability p outside [0, 1]",
        "probability p missing or not a number",
        "feature amount is not a number",
        "timestamp ts missing or not a timestamp",
        "duplicate id within the batch (its last row was kept)",
    }
    assert {r["batch_id"] for r in rows} == {"batch-7"}
    assert {r["kind"] for r in rows} == {"prediction"}
    lots = next(r for r in rows if r["reason"].startswith("feature"))
    assert json.loads(lots["row_json"])["amount"] == "lots" and lots["row_id"] == "id-4"
    features = read_features(warehouse, contract, DAY)
    assert len(features) == 4 and features["amount"].isna().sum() == 1
    batch = warehouse.query("SELECT n_rows, n_good, n_quarantined, days FROM mlops.ingest_batches")
    assert batch == [{"n_rows": 10, "n_good": 4, "n_quarantined": 6, "days": '["2026-03-02"]'}]


def _row_store_features(wh: Warehouse, contract, day: dt.date = DAY) -> pd.DataFrame:
    """The day's features read column by column from the predictions table itself, in a
    stable order (the packed copy keeps its own physical order)."""
    plan = layout(contract)
    columns = ", ".join(f'"{c}"' for c in plan.features)
    types = {c: "double" if k == "numeric" else "text" for c, k in plan.features.items()}
    frame = wh.read_frame(
        f"SELECT {columns} FROM {plan.predictions_table} WHERE prediction_date = :day",  # noqa: S608
        {"day": day},
        types=types,
    )
    return _in_order(frame)


def _in_order(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns), na_position="first").reset_index(drop=True)


def test_feature_groups_keep_each_row_in_its_place(warehouse: Warehouse):
    """The drift asset reads the features in groups (each while the one before is tested):
    three numeric, the other numeric in two halves, then the categorical. Put side by side
    they are `read_features`, row for row, also after a re-delivery moved rows in the table
    and with another day beside; and they are the rows the predictions table holds."""
    features = {
        "amount": "numeric",
        "region": "categorical",
        "score": "numeric",
        "n": "numeric",
        "m": "numeric",
        "k": "numeric",
        "j": "numeric",
    }
    contract = binary_contract(features=features)
    ensure_tables(warehouse, contract)

    def batch(n: int, seed: int, start: int = 0, day: dt.date = DAY) -> pd.DataFrame:
        frame = prediction_frame(n, seed=seed, start=start, day=day)
        rng = np.random.default_rng(seed + 1)
        return frame.assign(
            score=rng.normal(size=n),
            n=rng.integers(0, 9, n).astype(float),
            m=rng.normal(size=n),
            k=rng.uniform(size=n),
            j=rng.integers(-5, 5, n).astype(float),
        )

    ingest_predictions(warehouse, contract, batch(300, 1), batch_id="a", model_version="1")
    later = DAY + dt.timedelta(days=1)
    ingest_predictions(
        warehouse, contract, batch(50, 2, 1000, later), batch_id="b", model_version="1"
    )
    # A re-delivery of some rows with new values: their stored rows move in the table.
    ingest_predictions(warehouse, contract, batch(100, 3, 100), batch_id="c", model_version="1")
    whole = read_features(warehouse, contract, DAY)
    parts = list(iter_features(warehouse, contract, DAY))
    groups = [["amount", "score", "n"], ["m"], ["k", "j"], ["region"]]
    assert [list(p.columns) for p in parts] == groups
    pd.testing.assert_frame_equal(pd.concat(parts, axis=1)[list(features)], whole)
    assert len(whole) == 300
    pd.testing.assert_frame_equal(_in_order(whole), _row_store_features(warehouse, contract))


def test_counted_categories_are_the_counts_of_the_rows(warehouse: Warehouse):
    """`counted=True`: the categorical group comes last, as each feature's counts (made by
    DuckDB, or by Arrow from PostgreSQL's chunks), the counts of the rows `read_features`
    gives: missing rows, an int-coded feature as text, a re-delivered row counted once; and
    after a user's own UPDATE (PostgreSQL's chunks stale until the next refresh: counted from
    the table's rows)."""
    features = {"amount": "numeric", "region": "categorical", "tier": "categorical"}
    contract = binary_contract(features=features)
    ensure_tables(warehouse, contract)

    def batch(n: int, seed: int, start: int = 0) -> pd.DataFrame:
        frame = prediction_frame(n, seed=seed, start=start)
        tier = np.random.default_rng(seed).integers(0, 4, n).astype(object)
        tier[::7] = None
        return frame.assign(tier=tier)

    def check() -> None:
        whole = read_features(warehouse, contract, DAY)
        assert len(whole) == 240 and whole["tier"].isna().sum() > 0
        numeric, counts = list(iter_features(warehouse, contract, DAY, counted=True))
        pd.testing.assert_frame_equal(numeric, whole[["amount"]])
        assert set(counts) == {"region", "tier"}
        for name, counted in counts.items():
            rows = whole[name].dropna().value_counts().to_dict()
            assert dict(zip(counted.labels, counted.counts.tolist(), strict=True)) == rows
            assert counted.missing == int(whole[name].isna().sum())
        if not warehouse.columnar:  # no read left open (its snapshot would hold locks)
            open_reads = warehouse.query(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
            )
            assert open_reads == [{"n": 0}]

    ingest_predictions(warehouse, contract, batch(200, 1), batch_id="a", model_version="1")
    ingest_predictions(warehouse, contract, batch(80, 2, 160), batch_id="b", model_version="1")
    check()
    table = layout(contract).predictions_table
    assert {r["tier"] for r in warehouse.query(f"SELECT DISTINCT tier FROM {table}")} == {
        "0", "1", "2", "3", None
    }  # fmt: skip
    warehouse.execute(f"UPDATE {table} SET tier = '9' WHERE prediction_id IN ('id-3', 'id-4')")
    if not warehouse.columnar:  # the chunks' day is stale: read from the table
        stale = f'inference."{contract.name}__stale"'
        assert warehouse.query(f"SELECT prediction_date FROM {stale}") == [{"prediction_date": DAY}]
    check()
    # A day without predictions: no rows, no counts.
    quiet = DAY + dt.timedelta(days=9)
    numeric, counts = list(iter_features(warehouse, contract, quiet, counted=True))
    assert len(numeric) == 0
    assert {n: (c.labels, c.counts.tolist(), c.missing) for n, c in counts.items()} == {
        "region": ((), [], 0),
        "tier": ((), [], 0),
    }


@pytest.mark.postgres
def test_packed_features_follow_every_write(pg_warehouse: PostgresWarehouse):
    """On PostgreSQL the monitoring reads take the features from their packed copy, which
    triggers keep: after a first delivery, a re-delivery that changes rows and moves one to
    another day, a user's UPDATE and DELETE, NULLs, NaN, infinities, empty and non-ASCII
    categories, a feature the model gained, a TRUNCATE and a predictions table made anew,
    it reads what the predictions table holds."""
    warehouse = pg_warehouse
    contract = binary_contract()
    ensure_tables(warehouse, contract)
    later = DAY + dt.timedelta(days=1)

    def stale() -> set[dt.date]:
        return {
            r["prediction_date"] for r in warehouse.query('SELECT * FROM inference."credit__stale"')
        }

    def chunked_rows() -> int:
        return _count(warehouse, 'inference."credit__packed"') and int(
            warehouse.query('SELECT sum(n_rows) AS n FROM inference."credit__packed"')[0]["n"]
        )

    def same(grown=contract) -> None:
        for day in (DAY, later):
            packed_read = _in_order(read_features(warehouse, grown, day))
            pd.testing.assert_frame_equal(packed_read, _row_store_features(warehouse, grown, day))

    frame = prediction_frame(40, seed=5)
    frame.loc[0:3, "amount"] = [np.nan, np.inf, -np.inf, 0.1 + 0.2]
    frame.loc[4:7, "region"] = [None, "", "Zürich", " ö "]
    ingest_predictions(warehouse, contract, frame, batch_id="a", model_version="1")
    features = read_features(warehouse, contract, DAY)
    assert features["amount"].isna().sum() == 1 and np.isinf(features["amount"]).sum() == 2
    assert set(features["region"].dropna()) >= {"", "Zürich", "ö"}
    assert features["region"].isna().sum() == 1
    assert stale() == set() and chunked_rows() == 40
    same()
    # A re-delivery: rows 10-19 change, row 20 moves to the next day.
    again = prediction_frame(40, seed=6).iloc[10:21].copy()
    again.loc[20, "ts"] = pd.Timestamp(later) + pd.Timedelta(hours=3)
    ingest_predictions(warehouse, contract, again, batch_id="b", model_version="1")
    assert len(read_features(warehouse, contract, later)) == 1
    assert stale() == set() and chunked_rows() == 40  # the ingestion made the days again
    same()
    plan = layout(contract)
    with warehouse.transaction() as tx:
        tx.execute(f"UPDATE {plan.predictions_table} SET amount = -5 WHERE prediction_id = 'id-30'")
        tx.execute(
            f"DELETE FROM {plan.predictions_table} WHERE prediction_id IN ('id-31', 'id-32')"
        )
    assert stale() == {DAY}  # read from the predictions table until refreshed
    assert len(read_features(warehouse, contract, DAY)) == 37
    same()
    with warehouse.transaction() as tx:
        assert packed.refresh(tx, "credit") == 1
    assert stale() == set() and chunked_rows() == 38
    same()
    # A chunk that lacks a feature (written under the layout before one was added): read
    # from the predictions table, and made again by the next refresh.
    warehouse.execute('UPDATE inference."credit__packed" SET region = NULL')
    same()
    with warehouse.transaction() as tx:
        assert packed.refresh(tx, "credit") == 2  # both days
    assert chunked_rows() == 38 and _count(warehouse, 'inference."credit__packed"') == 2
    assert warehouse.query('SELECT count(region) AS n FROM inference."credit__packed"')[0]["n"]
    same()
    with warehouse.transaction() as tx:  # a user's own INSERT: the trigger packs it
        tx.execute(
            f"INSERT INTO {plan.predictions_table} (prediction_id, prediction_date, "
            "predicted_at, amount, region, y_pred, proba, ingested_at) "
            "SELECT 'copy-' || prediction_id, prediction_date, predicted_at, amount, region, "
            f"y_pred, proba, ingested_at FROM {plan.predictions_table} "
            "WHERE prediction_id IN ('id-1', 'id-5')"
        )
    assert stale() == set() and chunked_rows() == 40
    same()
    grown = binary_contract(
        features={"amount": "numeric", "region": "categorical", "age": "numeric"}
    )
    assert ensure_tables(warehouse, grown) == ["age"]
    assert read_features(warehouse, grown, DAY)["age"].isna().sum() == 39
    same(grown)
    # A model version that serves fewer features: the table keeps the others, NULL here.
    fewer = binary_contract(features={"amount": "numeric"})
    ensure_tables(warehouse, fewer)
    ingest_predictions(
        warehouse, fewer, prediction_frame(5, start=500), batch_id="d", model_version="2"
    )
    assert read_features(warehouse, grown, DAY)["region"].isna().sum() == 1 + 5
    assert stale() == set()
    same(grown)
    warehouse.execute(f"TRUNCATE {plan.predictions_table}")
    assert read_features(warehouse, grown, DAY).empty
    # The predictions table made anew (moved aside by hand, say): the triggers come back.
    warehouse.execute(f"DROP TABLE {plan.predictions_table}")
    ensure_tables(warehouse, contract)
    ingest_predictions(warehouse, contract, prediction_frame(12), batch_id="c", model_version="1")
    assert len(read_features(warehouse, contract, DAY)) == 12
    same()


@pytest.mark.postgres
def test_the_ingestion_packs_chunks_as_the_trigger_does(pg_warehouse: PostgresWarehouse):
    """The ingestion appends the chunks of the rows it inserts itself (the trigger would
    cost PostgreSQL more than the rows' COPY): row for row what the trigger makes of the
    same rows inserted by plain SQL, NaN, infinities, -0.0, NULLs and non-ASCII included,
    each with its id and its label (from the ingestion's memory; joined by the trigger)."""
    warehouse = pg_warehouse
    contract = binary_contract(labels=None)  # the targets in the log: packed from memory
    ensure_tables(warehouse, contract)
    frame = prediction_frame(30, seed=3)
    frame.loc[0:3, "amount"] = [np.nan, np.inf, -np.inf, -0.0]
    frame.loc[4:6, "region"] = [None, "", "Zürich"]
    frame["defaulted"] = pd.array([1, None, 0] * 10, dtype="Int64")
    # Every fourth row a day later: each day's rows are picked from the slice, not a run.
    later = DAY + dt.timedelta(days=1)
    frame.loc[frame.index % 4 == 1, "ts"] = pd.Timestamp(later) + pd.Timedelta(hours=1)
    ingest_predictions(warehouse, contract, frame, batch_id="a", model_version="1")
    plan = layout(contract)
    packing = packed.Packing.parse(
        warehouse.query(
            "SELECT obj_description(to_regclass('inference.\"credit__packed\"'), 'pg_class') AS m"
        )[0]["m"]
    )
    assert packing is not None

    def chunk_rows() -> pd.DataFrame:
        """The chunks' rows of both days, each with its id, in id order."""
        days = []
        for day in (DAY, later):
            (frame,) = warehouse.read_frames(
                [
                    (
                        packed.select(
                            "credit", ["amount", "region", "y_pred", "proba"], label=True
                        ),
                        {"day": day},
                    )
                ],
                types={},
                decode=lambda table: packed.decode(table, packing),
            )
            ids = warehouse.query(
                'SELECT "(ids)" AS ids FROM inference."credit__packed" '
                "WHERE prediction_date = :day ORDER BY chunk",
                {"day": day},
            )
            frame.insert(0, "id", [i for row in ids for i in row["ids"]])
            days.append(frame)
        return pd.concat(days).sort_values("id").reset_index(drop=True)

    by_ingestion = chunk_rows()
    with warehouse.transaction() as tx:
        tx.execute(f"CREATE TABLE serving.kept AS SELECT * FROM {plan.predictions_table}")
        tx.execute(f"TRUNCATE {plan.predictions_table}")
        tx.execute(f"INSERT INTO {plan.predictions_table} SELECT * FROM serving.kept")
    by_trigger = chunk_rows()
    assert len(by_ingestion) == 30 and by_ingestion["y_true"].notna().sum() == 20
    assert by_ingestion["amount"].isna().sum() == 1  # NaN read back as NaN, -0.0 as -0.0
    pd.testing.assert_frame_equal(by_trigger, by_ingestion)
    assert np.signbit(by_trigger.set_index("id").loc["id-3", "amount"])


@pytest.mark.postgres
def test_the_chunks_are_made_once(pg_warehouse: PostgresWarehouse):
    """A second `ensure_tables` finds the chunks, their functions and triggers as they are
    and does not pack the table again, also for the longest model name the log takes
    (PostgreSQL keeps 63 bytes of a name)."""
    warehouse = pg_warehouse
    contract = binary_contract(name="m" * 50)
    ensure_tables(warehouse, contract)
    chunks = f'inference."{"m" * 50}__packed"'

    def made() -> int:
        return warehouse.query(f"SELECT to_regclass('{chunks}')::oid AS oid")[0]["oid"]

    first = made()
    ingest_predictions(warehouse, contract, prediction_frame(8), batch_id="a", model_version="1")
    ensure_tables(warehouse, contract)
    assert made() == first
    assert len(read_features(warehouse, contract, DAY)) == 8
    assert int(warehouse.query(f"SELECT sum(n_rows) AS n FROM {chunks}")[0]["n"]) == 8


def _chunked_outcomes(wh: Warehouse, contract, day: dt.date = DAY) -> pd.DataFrame | None:
    """The day's outputs and labels from the chunks alone; None while they are stale."""
    plan = layout(contract)
    found = wh.query(
        f"SELECT obj_description(to_regclass('inference.\"{plan.model}__packed\"'), "
        "'pg_class') AS marker"
    )
    layout_of = packed.Packing.parse(found[0]["marker"])
    assert layout_of is not None
    columns = ["y_pred", "proba"]
    try:
        (frame,) = wh.read_frames(
            [(packed.select(plan.model, columns, label=True), {"day": day})],
            types={},
            decode=lambda table: packed.decode(table, layout_of),
        )
    except packed.StaleDay:
        return None
    return _in_order(frame[["y_true", *columns]])


def _joined_outcomes(wh: Warehouse, contract, day: dt.date = DAY) -> pd.DataFrame:
    """The day's outputs and labels joined row by row in SQL."""
    plan = layout(contract)
    frame = wh.read_frame(
        f"SELECT l.y_true, p.y_pred, p.proba FROM {plan.predictions_table} p "  # noqa: S608
        f"LEFT JOIN {plan.labels_table} l ON l.prediction_id = p.prediction_id "
        "WHERE p.prediction_date = :day",
        {"day": day},
        types={"y_true": "text", "y_pred": "text", "proba": "double"},
    )
    return _in_order(frame)


@pytest.mark.postgres
def test_packed_labels_follow_every_write(pg_warehouse: PostgresWarehouse):
    """On PostgreSQL the metrics read takes the outputs and labels from the chunks too. They
    hold what the tables join to after: predictions first and labels two days later, a label
    that comes before its prediction, a user's INSERT, UPDATE and DELETE of labels, a
    prediction deleted and delivered again, a TRUNCATE of the labels; while the labels wait
    for `refresh`, the metrics read joins the tables."""
    warehouse = pg_warehouse
    contract = binary_contract()
    plan = layout(contract)
    ensure_tables(warehouse, contract)
    frame = prediction_frame(60, seed=4)
    ingest_predictions(warehouse, contract, frame, batch_id="a", model_version="1")

    def fresh() -> pd.DataFrame:
        """The chunks' outcomes, fresh and equal to the join, and what the metrics read."""
        chunked = _chunked_outcomes(warehouse, contract)
        assert chunked is not None, "the day's labels wait for refresh"
        joined = _joined_outcomes(warehouse, contract)
        pd.testing.assert_frame_equal(chunked, joined)
        metrics = _in_order(read_for_metrics(warehouse, contract, DAY)[list(joined.columns)])
        pd.testing.assert_frame_equal(metrics, joined)
        return chunked

    assert fresh()["y_true"].isna().all()
    labels = pd.DataFrame({"pid": frame["pid"][:30], "defaulted": [1, 0] * 15})
    ingest_labels(warehouse, contract, labels, batch_id="late")
    assert fresh()["y_true"].notna().sum() == 30
    # Labels before their predictions: kept aside, and packed when the rows come.
    early = pd.DataFrame({"pid": ["id-500", "id-501"], "defaulted": [1, 1]})
    ingest_labels(warehouse, contract, early, batch_id="early")
    assert {
        r["prediction_id"]
        for r in warehouse.query('SELECT prediction_id FROM inference."credit__orphans"')
    } == {"id-500", "id-501"}
    ingest_predictions(
        warehouse, contract, prediction_frame(3, start=500), batch_id="b", model_version="1"
    )
    assert fresh()["y_true"].notna().sum() == 32
    assert warehouse.query('SELECT count(*) AS n FROM inference."credit__orphans"')[0]["n"] == 0
    # A user's own SQL on the labels: the day's labels are read by the join until refreshed.
    for statement, labelled in (
        (
            "INSERT INTO {t} (prediction_id, y_true, labelled_at) VALUES ('id-40', '1', now())",
            33,
        ),
        ("UPDATE {t} SET y_true = '0' WHERE prediction_id = 'id-0'", 33),
        (
            "DELETE FROM {t} WHERE prediction_id = 'id-1'",
            32,
        ),
    ):
        warehouse.execute(statement.format(t=plan.labels_table))
        assert _chunked_outcomes(warehouse, contract) is None, statement
        joined = read_for_metrics(warehouse, contract, DAY)[["y_true", "y_pred", "proba"]]
        pd.testing.assert_frame_equal(_in_order(joined), _joined_outcomes(warehouse, contract))
        with warehouse.transaction() as tx:
            assert packed.refresh(tx, "credit") == 1
        assert fresh()["y_true"].notna().sum() == labelled
    # A labelled prediction deleted, then delivered again: its label is still its own.
    warehouse.execute(f"DELETE FROM {plan.predictions_table} WHERE prediction_id = 'id-2'")
    ingest_predictions(warehouse, contract, frame.iloc[[2]], batch_id="c", model_version="1")
    assert fresh()["y_true"].notna().sum() == 32
    warehouse.execute(f"TRUNCATE {plan.labels_table}")
    assert _chunked_outcomes(warehouse, contract) is None
    with warehouse.transaction() as tx:
        packed.refresh(tx, "credit")
    assert fresh()["y_true"].isna().all()


@pytest.mark.postgres
def test_the_ingestion_packs_the_labels_in_its_rows(pg_warehouse: PostgresWarehouse):
    """A model whose targets come in its predictions: the ingestion packs each row's label
    from its memory, as the join would find it (a row without a target unlabelled); a
    quarantined row's label waits for its prediction, which takes it when it comes without
    a target; a re-delivery that changes labels of stored rows is packed again."""
    warehouse = pg_warehouse
    contract = binary_contract(labels=None)
    ensure_tables(warehouse, contract)
    frame = prediction_frame(40, seed=8)
    frame["defaulted"] = pd.array([1, 0, None, 1] * 10, dtype="Int64")
    frame.loc[5, "p"] = 1.5  # quarantined; its label is kept, waiting for its prediction
    ingest_predictions(warehouse, contract, frame, batch_id="a", model_version="1")
    plan = layout(contract)

    def fresh() -> pd.DataFrame:
        chunked = _chunked_outcomes(warehouse, contract)
        assert chunked is not None
        pd.testing.assert_frame_equal(chunked, _joined_outcomes(warehouse, contract))
        return chunked

    def orphans() -> set[str]:
        rows = warehouse.query('SELECT prediction_id FROM inference."credit__orphans"')
        return {r["prediction_id"] for r in rows}

    chunked = fresh()
    assert len(chunked) == 39 and chunked["y_true"].notna().sum() == 29
    assert _count(warehouse, plan.labels_table) == 30 and orphans() == {"id-5"}
    # The row delivered again, mended and without its target: the label that waited is its.
    mended = frame.iloc[[5]].assign(p=0.3, defaulted=pd.array([None], dtype="Int64"))
    ingest_predictions(warehouse, contract, mended, batch_id="b", model_version="1")
    assert fresh()["y_true"].notna().sum() == 30 and orphans() == set()
    # Labels of stored rows changed by a re-delivery.
    again = frame.iloc[[0, 2]].copy()
    again["defaulted"] = pd.array([0, 1], dtype="Int64")
    ingest_predictions(warehouse, contract, again, batch_id="c", model_version="1")
    assert fresh()["y_true"].notna().sum() == 31


@pytest.mark.postgres
def test_a_label_written_beside_its_prediction_is_packed(pg_warehouse: PostgresWarehouse):
    """A user's label committed while the ingestion of its prediction runs: the ingestion
    waits for the label's transaction, then packs it (the triggers and the writer share one
    lock per model)."""
    warehouse = pg_warehouse
    import threading

    import psycopg

    contract = binary_contract()
    plan = layout(contract)
    ensure_tables(warehouse, contract)
    ingest_predictions(warehouse, contract, prediction_frame(10), batch_id="a", model_version="1")
    with psycopg.connect(warehouse.dsn) as con:
        con.execute(
            f"INSERT INTO {plan.labels_table} (prediction_id, y_true, labelled_at) "
            "VALUES ('id-20', '1', now())"
        )
        done: list[BaseException | None] = []

        def ingest() -> None:
            try:
                ingest_predictions(
                    warehouse,
                    contract,
                    prediction_frame(1, start=20),
                    batch_id="b",
                    model_version="1",
                )
                done.append(None)
            except BaseException as error:  # noqa: BLE001 - handed to the test's thread
                done.append(error)

        thread = threading.Thread(target=ingest)
        thread.start()
        thread.join(timeout=2)
        assert thread.is_alive(), "the ingestion waits for the label's transaction"
        con.commit()
    thread.join(timeout=60)
    assert done == [None]
    chunked = _chunked_outcomes(warehouse, contract)
    assert chunked is not None
    assert chunked["y_true"].notna().sum() == 1
    pd.testing.assert_frame_equal(chunked, _joined_outcomes(warehouse, contract))


def test_a_missing_column_rejects_the_whole_batch(warehouse: Warehouse):
    contract = binary_contract()
    ensure_tables(warehouse, contract)
    frame = prediction_frame(5).drop(columns=["region"])
    with pytest.raises(SourceSchemaError, match=r"'region'.*table serving\.preds") as caught:
        ingest_predictions(warehouse, contract, frame, batch_id="b", model_version="1")
    assert "credit" in str(caught.value)
    rows = warehouse.query("SELECT row_id, reason FROM mlops.quarantine")
    assert len(rows) == 1 and rows[0]["row_id"] is None and "5 rows" in rows[0]["reason"]
    assert _count(warehouse, 'inference."credit__predictions"') == 0


def test_multiclass_probabilities_and_labels(warehouse: Warehouse):
    contract = parse_contract(
        {
            "name": "iris",
            "task": "multiclass",
            "model": {"train": {"source": {"table": "serving.history"}}},
            "columns": {
                "features": {"petal": "numeric"},
                "target": "species",
                "id": "pid",
                "timestamp": "ts",
                "probabilities": {"setosa": "p_s", "virginica": "p_v", "versicolor": "p_c"},
            },
            "classes": ["setosa", "versicolor", "virginica"],
            "production": {"predictions": {"table": "serving.iris"}},
        },
        source="test",
    )
    ensure_tables(warehouse, contract)
    ts = dt.datetime.combine(DAY, dt.time(9))
    frame = pd.DataFrame(
        {
            "pid": [1, 2, 3, 4],
            "ts": [ts] * 4,
            "petal": [1.0, 2.0, 3.0, 4.0],
            "p_s": [0.7, 0.1, 0.5, 0.2],
            "p_c": [0.2, 0.1, 0.4, 0.3],
            "p_v": [0.1, 0.8, 0.4, 0.5],
            "species": ["setosa", "virginica", None, "rose"],
        }
    )
    result = ingest_predictions(warehouse, contract, frame, batch_id="m", model_version="1")
    assert (result.n_good, result.n_quarantined) == (3, 1)  # row 3 sums to 1.3
    stored = read_for_metrics(warehouse, contract, DAY).sort_values("proba__0")
    assert list(stored.columns) == [
        "y_true",
        "y_pred",
        "proba__0",
        "proba__1",
        "proba__2",
    ]
    # proba__i follows the order of `classes`, not of the probabilities mapping.
    assert list(stored["proba__2"]) == [0.8, 0.5, 0.1]
    assert list(stored["y_pred"]) == ["virginica", "virginica", "setosa"]
    # The in-log target: a known class is a label, an unknown one is quarantined, none waits.
    assert sorted(stored["y_true"].dropna()) == ["setosa", "virginica"]
    bad = warehouse.query("SELECT kind, reason FROM mlops.quarantine ORDER BY kind")
    assert [r["kind"] for r in bad] == ["label", "prediction"]
    assert "not one of the classes" in bad[0]["reason"]


def test_regression_predictions_are_numbers(warehouse: Warehouse):
    contract = parse_contract(
        {
            "name": "price",
            "task": "regression",
            "model": {"train": {"source": {"table": "serving.history"}}},
            "columns": {
                "features": {"rooms": "numeric", "zone": "categorical"},
                "target": "price",
                "prediction": "predicted",
            },
            "production": {"predictions": {"table": "serving.price"}},
        },
        source="test",
    )
    ensure_tables(warehouse, contract)
    ts = dt.datetime.combine(DAY, dt.time(9))
    frame = pd.DataFrame(
        {
            "prediction_id": ["a", "b", "c"],
            "predicted_at": [ts] * 3,
            "rooms": [2, 3, 4],
            "zone": [1, 2, 2],
            "predicted": [100.5, "n/a", 300.0],
            "price": [110.0, None, 290.0],
        }
    )
    result = ingest_predictions(warehouse, contract, frame, batch_id="r", model_version="1")
    assert (result.n_good, result.n_quarantined) == (2, 1)
    stored = read_for_metrics(warehouse, contract, DAY).sort_values("y_pred")
    assert stored["y_pred"].dtype == "float64" and list(stored["y_pred"]) == [100.5, 300.0]
    assert list(stored["y_true"]) == [110.0, 290.0]
    assert list(read_features(warehouse, contract, DAY)["zone"].sort_values()) == ["1", "2"]


def test_a_new_feature_adds_a_column_and_keeps_history(warehouse: Warehouse):
    contract = binary_contract()
    ensure_tables(warehouse, contract)
    ingest_predictions(warehouse, contract, prediction_frame(5), batch_id="b", model_version="1")
    grown = binary_contract(
        features={"amount": "numeric", "region": "categorical", "age": "numeric"}
    )
    assert ensure_tables(warehouse, grown) == ["age"]
    assert read_features(warehouse, grown, DAY)["age"].isna().sum() == 5
    changed = binary_contract(features={"amount": "categorical", "region": "categorical"})
    with pytest.raises(InferenceLogError, match="amount"):
        ensure_tables(warehouse, changed)


def test_reserved_feature_names_are_refused():
    contract = binary_contract(features={"batch_id": "numeric"})
    with pytest.raises(InferenceLogError, match="'batch_id' is a reserved column"):
        layout(contract)


def test_validate_rows_returns_typed_columns():
    contract = binary_contract()
    good, bad = validate_rows(prediction_frame(3).astype({"label": bool}), contract, "prediction")
    assert bad.empty
    assert set(good.columns) == {
        "prediction_id",
        "prediction_date",
        "predicted_at",
        "amount",
        "region",
        "y_pred",
        "proba",
    }
    assert str(good["region"].dtype) == "string" and good["amount"].dtype == "float64"
    assert set(good["y_pred"]) <= {"0", "1"}  # booleans map onto the default classes


def _stored(wh: Warehouse, contract) -> dict[str, list]:
    plan = layout(contract)
    out = {}
    for table, ignore in (
        (plan.predictions_table, "ingested_at"),
        (plan.labels_table, "labelled_at"),
    ):
        rows = wh.query(f"SELECT * EXCLUDE ({ignore}) FROM {table} ORDER BY prediction_id")  # noqa: S608
        out[table] = rows
    out["quarantine"] = wh.query(
        "SELECT batch_id, kind, row_id, reason, row_json FROM mlops.quarantine "
        "ORDER BY kind, row_id, reason"
    )
    out["batches"] = wh.query(
        "SELECT batch_id, n_rows, n_good, n_quarantined, days FROM mlops.ingest_batches "
        "ORDER BY batch_id"
    )
    return out


def _awkward_batches() -> list[list[pd.DataFrame]]:
    """Deliveries that exercise each check: whitespace (Unicode too), int ids, booleans,
    NaN, bad rows of each kind, labels in the log, a file column, an id again in a later
    slice, an id twice in a slice, and a later delivery over stored rows."""
    first = prediction_frame(12).assign(defaulted=[1, 0, None, 1, 1, 0, 1, 0, 1, 0, 1, 0])
    first = first.astype({"defaulted": object})
    first.loc[0, "region"] = "\u00a0north\t"
    first.loc[1, "pid"] = " id-1 "
    first.loc[2, "amount"] = np.nan
    first.loc[3, "p"] = 1.5
    first.loc[4, "pid"] = ""
    first.loc[5, "ts"] = None
    first.loc[6, "p"] = np.nan
    first.loc[7, "defaulted"] = 7  # not a class: the label is quarantined, the prediction lands
    first["_batch"] = ["f1.parquet"] * 6 + [None] * 6
    second = prediction_frame(6, start=10, seed=1).assign(defaulted=1)  # ids 10, 11 again
    second.loc[0, "region"] = "east"  # differs from the first slice's id-10
    third = prediction_frame(4, start=30, seed=2).assign(defaulted=0)
    third.loc[3, "pid"] = third.loc[2, "pid"]  # twice in one slice
    ints = prediction_frame(3, start=40, seed=3).assign(defaulted=[True, False, True])
    ints["pid"] = [40, 41, 42]
    ints["region"] = [1, 2, 2]  # an int-coded categorical
    again = first.assign(p=0.25)  # a later delivery over stored rows
    return [[first, second, third], [ints], [again]]


def test_sql_path_stores_what_the_python_path_stores(tmp_path, monkeypatch):
    """The embedded engine types and validates in SQL; the same deliveries through the Python
    path (what PostgreSQL runs) store the same rows, quarantine and batch records."""
    from mlops_assets.storage import inference_log
    from mlops_assets.storage.warehouse import DuckDBWarehouse

    results = {}
    written: list[bool] = []  # per slice given to the SQL path: written there (not handed back)
    real = inference_log._write_sql_slice

    def counted(*args, **kwargs):
        result = real(*args, **kwargs)
        written.append(result is not None)
        return result

    monkeypatch.setattr(inference_log, "_write_sql_slice", counted)
    for in_sql in (True, False):
        wh = DuckDBWarehouse(tmp_path / f"sql-{in_sql}.duckdb")
        wh.migrate()
        contract = binary_contract(labels=None)
        ensure_tables(wh, contract)
        monkeypatch.setattr(inference_log, "_in_sql", lambda _wh, value=in_sql: value)
        for i, delivery in enumerate(_awkward_batches()):
            ingest_predictions(wh, contract, iter(delivery), batch_id=f"b{i}", model_version="1")
        results[in_sql] = _stored(wh, contract)
    assert results[True] == results[False]
    # Most slices were written by SQL, bad rows included; the id twice went to Python.
    assert written.count(True) >= 3 and written.count(False) >= 1
    quarantine = results[True]["quarantine"]
    assert {r["kind"] for r in quarantine} == {"prediction", "label"}
    assert len(results[True]['inference."credit__predictions"']) > 10


def test_arrow_slices_store_what_pandas_slices_and_the_python_path_store(tmp_path, monkeypatch):
    """A Parquet source's slices reach the embedded engine's SQL path as Arrow record batches
    (no pandas round trip); the same files read as pandas frames, through the SQL path and
    through the Python path, store the same rows, quarantine and batch records. The slices
    it hands back (an id twice) and its bad rows take the pandas frame the source would give."""
    import pyarrow as pa

    from mlops_assets.lib.contract import Source
    from mlops_assets.storage import inference_log
    from mlops_assets.storage.sources import ArrowSlices, open_source
    from mlops_assets.storage.warehouse import DuckDBWarehouse

    folders = []
    for i, delivery in enumerate(_awkward_batches()):
        folder = tmp_path / f"delivery-{i}"
        folder.mkdir()
        for j, frame in enumerate(delivery):
            frame.drop(columns=["_batch"], errors="ignore").to_parquet(
                folder / f"slice-{j}.parquet", index=False
            )
        folders.append(folder)

    chunks: list[tuple[str, bool, bool]] = []  # (variant, Arrow chunk, written in SQL)
    real = inference_log._write_sql_slice
    variant = ""

    def counted(*args, **kwargs):
        result = real(*args, **kwargs)
        chunks.append((variant, isinstance(args[1].chunk, pa.RecordBatch), result is not None))
        return result

    monkeypatch.setattr(inference_log, "_write_sql_slice", counted)
    results = {}
    for variant, in_sql in (("arrow", True), ("pandas", True), ("python", False)):
        wh = DuckDBWarehouse(tmp_path / f"{variant}.duckdb")
        wh.migrate()
        contract = binary_contract(labels=None)
        ensure_tables(wh, contract)
        monkeypatch.setattr(inference_log, "_in_sql", lambda _wh, value=in_sql: value)
        for i, folder in enumerate(folders):
            reader = open_source(Source(parquet=str(folder)), wh, model=contract.name)
            poll = reader.poll(None, cursor_column="", timestamp_column="ts")
            columns = layout(contract).source_columns("prediction")
            slices = reader.iter_new(poll, columns, cursor_column="", chunk_rows=5)
            assert isinstance(slices, ArrowSlices)
            frames = slices if variant != "pandas" else (frame for frame in slices)
            ingest_predictions(wh, contract, frames, batch_id=f"b{i}", model_version="1")
        results[variant] = _stored(wh, contract)
    assert results["arrow"] == results["pandas"] == results["python"]
    arrow = [(is_arrow, written) for v, is_arrow, written in chunks if v == "arrow"]
    assert all(is_arrow for is_arrow, _ in arrow)
    assert any(written for _, written in arrow) and not all(written for _, written in arrow)
    assert not any(is_arrow for v, is_arrow, _ in chunks if v == "pandas")
    quarantine = results["arrow"]["quarantine"]
    assert {r["kind"] for r in quarantine} == {"prediction", "label"}
    assert len(results["arrow"]['inference."credit__predictions"']) > 10
