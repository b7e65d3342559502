"""The embedded engine survives writers killed mid-transaction and repairs a broken index.

Issue 12 saw `Failed to delete all rows from index` on every rerun of a partition after one
`kill -9` in 17 during a production run. The kill loop below did not reproduce it here (DuckDB
1.5); the repair path is therefore tested by injecting DuckDB's error at the DELETE.

The kills land inside a transaction, never in DuckDB's checkpoint after it: a process killed
while it checkpoints can leave the file unreadable (`Corrupt database file: computed checksum
... does not match`), because DuckDB rewrites its metadata blocks in place and a `kill -9` can
stop that write part-way. An earlier version of this test killed at random and hit that about
once in eight runs. It is DuckDB's, not something a caller can repair; the README says so and
points production at PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mlops_assets.storage.monitoring import replace_partition
from mlops_assets.storage.warehouse import DuckDBWarehouse, IndexRepairedError

TABLE = "mlops.kill_probe"
DDL = (
    "CREATE TABLE IF NOT EXISTS mlops.kill_probe (model_name TEXT NOT NULL, day DATE NOT NULL, "
    "i INTEGER NOT NULL, payload TEXT, PRIMARY KEY (model_name, day, i))"
)
SECONDARY_INDEX = "CREATE INDEX IF NOT EXISTS kill_probe_payload_idx ON mlops.kill_probe (payload)"
DAY = dt.date(2026, 1, 5)

# Commits one partition's rewrite (20,000 rows tagged with the round), says so, then rewrites
# the next day's partition over and over in one transaction that never commits, saying when
# the first pass is in, until it is killed.
WRITER = """
import datetime as dt, sys
import pandas as pd
from mlops_assets.storage.monitoring import replace_partition
from mlops_assets.storage.warehouse import DuckDBWarehouse

wh, n = DuckDBWarehouse(sys.argv[1]), int(sys.argv[2])
def rows(day, tag):
    return pd.DataFrame({"model_name": "m", "day": day, "i": range(20_000),
                         "payload": [f"{tag}-{i}" * 10 for i in range(20_000)]})
day = dt.date(2026, 1, 1) + dt.timedelta(days=n % 4)
replace_partition(wh, "mlops.kill_probe", model="m", day=day, day_column="day", rows=rows(day, n))
print("committed", flush=True)
other = day + dt.timedelta(days=1) if n % 4 < 3 else dt.date(2026, 1, 1)
with wh.transaction() as tx:
    passes = 0
    while True:
        tx.execute("DELETE FROM mlops.kill_probe WHERE model_name = 'm' AND day = :d", {"d": other})
        tx.insert_frame("mlops.kill_probe", rows(other, f"uncommitted{passes}"))
        if passes == 0:
            print("in transaction", flush=True)
        passes += 1
"""


def _rows(day: dt.date, n: int, tag: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"model_name": "m", "day": day, "i": range(n), "payload": [f"{tag}{i}" for i in range(n)]}
    )


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBWarehouse:
    warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    warehouse.migrate()
    warehouse.execute(DDL)
    warehouse.execute(SECONDARY_INDEX)
    return warehouse


def _partitions(wh: DuckDBWarehouse) -> dict[dt.date, tuple[int, set[str]]]:
    """Per day: its rows and the tags of their payloads (the text before the first '-')."""
    rows = wh.query(
        "SELECT day, count(*) AS n, list(DISTINCT split_part(payload, '-', 1)) AS tags "
        "FROM mlops.kill_probe GROUP BY day"
    )
    return {r["day"]: (r["n"], set(r["tags"])) for r in rows}


@pytest.mark.slow
def test_writers_killed_mid_transaction_leave_a_writable_warehouse(wh: DuckDBWarehouse):
    days = [dt.date(2026, 1, 1) + dt.timedelta(days=offset) for offset in range(4)]
    expected: dict[dt.date, tuple[int, set[str]]] = {}
    rounds = 0
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(wh.path), str(rounds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        assert writer.stdout is not None
        for said in ("committed", "in transaction"):
            line = writer.stdout.readline()
            assert line.strip() == said, writer.stderr.read() if writer.stderr else line
        # Anywhere in the transaction: in a DELETE, an insert, between them.
        time.sleep(random.uniform(0.0, 0.3))
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        expected[days[rounds % 4]] = (20_000, {str(rounds)})
        # The writer's commit is whole and its killed transaction left nothing.
        assert _partitions(wh) == expected, f"after the kill in round {rounds}"
        # Every partition can be rewritten after the kill, and holds exactly what was written.
        for day in days:
            replace_partition(
                wh, TABLE, model="m", day=day, day_column="day", rows=_rows(day, 50, "x-")
            )
            expected[day] = (50, {"x"})
        assert _partitions(wh) == expected, f"after the rewrite in round {rounds}"
        rounds += 1
    assert rounds >= 3


def test_broken_index_is_detected_the_table_rebuilt_and_the_write_retried(
    wh: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
):
    replace_partition(wh, TABLE, model="m", day=DAY, day_column="day", rows=_rows(DAY, 30, "a"))
    other = DAY + dt.timedelta(days=1)
    replace_partition(wh, TABLE, model="m", day=other, day_column="day", rows=_rows(other, 7, "b"))
    real_connect = DuckDBWarehouse._connect
    failures = {"left": 1}

    class BreaksOnce:
        """DuckDB's connection, failing the first commit of a DELETE from the probe table the
        way DuckDB does when the ART index no longer matches the table."""

        def __init__(self, con):
            self._con = con
            self.deleted = False

        def execute(self, sql, *args):
            # DuckDB reports it when the transaction commits, without naming the table.
            self.deleted |= sql.lstrip().upper().startswith("DELETE FROM MLOPS.KILL_PROBE")
            if failures["left"] and self.deleted and sql.strip().upper() == "COMMIT":
                failures["left"] -= 1
                raise RuntimeError(
                    "TransactionContext Error: Failed to commit: Failed to delete all rows "
                    "from index. Only deleted 0 out of 30 rows."
                )
            return self._con.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self._con, name)

    monkeypatch.setattr(DuckDBWarehouse, "_connect", lambda self: BreaksOnce(real_connect(self)))
    rebuilt: list[str] = []
    real_rebuild = DuckDBWarehouse.rebuild_table
    monkeypatch.setattr(
        DuckDBWarehouse,
        "rebuild_table",
        lambda self, table: rebuilt.append(table) or real_rebuild(self, table),
    )

    replace_partition(wh, TABLE, model="m", day=DAY, day_column="day", rows=_rows(DAY, 12, "c"))

    assert rebuilt == [TABLE]
    rows = wh.query("SELECT day, payload FROM mlops.kill_probe ORDER BY day, i")
    assert [r["payload"] for r in rows if r["day"] == DAY] == [f"c{i}" for i in range(12)]
    assert [r["payload"] for r in rows if r["day"] == other] == [f"b{i}" for i in range(7)]
    # The rebuilt table keeps its primary key and its secondary index.
    with pytest.raises(Exception, match=r"(?i)primary key|duplicate"):
        wh.execute("INSERT INTO mlops.kill_probe VALUES ('m', :d, 0, 'dup')", {"d": DAY})
    indexes = wh.query("SELECT index_name FROM duckdb_indexes() WHERE table_name = 'kill_probe'")
    assert [r["index_name"] for r in indexes] == ["kill_probe_payload_idx"]


def test_a_write_that_keeps_finding_the_index_broken_fails_loudly(
    wh: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
):
    real_connect = DuckDBWarehouse._connect

    class AlwaysBroken:
        def __init__(self, con):
            self._con = con

        def execute(self, sql, *args):
            if sql.lstrip().upper().startswith("DELETE FROM MLOPS.KILL_PROBE"):
                raise RuntimeError("Failed to delete all rows from index. Only deleted 0 of 3.")
            return self._con.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self._con, name)

    monkeypatch.setattr(DuckDBWarehouse, "_connect", lambda self: AlwaysBroken(real_connect(self)))
    with pytest.raises(IndexRepairedError, match=r"mlops\.kill_probe"):
        replace_partition(wh, TABLE, model="m", day=DAY, day_column="day", rows=_rows(DAY, 3, "z"))
