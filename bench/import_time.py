"""Code location load time against `import dagster`, in fresh processes.

Every run worker and backfill partition loads the code location, so its load cost is paid per
run. Loading is what Dagster does with `-m mlops_assets.definitions`: import the module and call
its `@dg.definitions` function (which imports the asset, sensor and schedule modules). Each
measurement is one new interpreter timing its own import (interpreter start-up excluded); both
sides get the same warm-up run, the same number of runs, interleaved, and the figure is the
median. The last line is JSON with `definitions_import_over_dagster` (target: <= 2.0).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import time
started = time.perf_counter()
{code}
print(time.perf_counter() - started)
"""
DAGSTER = "import dagster"
CODE_LOCATION = "from mlops_assets.definitions import defs; defs()"


def measure(code: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    for code in (DAGSTER, CODE_LOCATION):  # warm the file cache and bytecode of both once
        measure(code)
    dagster, definitions = [], []
    for _ in range(args.runs):  # interleaved, so machine load hits both alike
        dagster.append(measure(DAGSTER))
        definitions.append(measure(CODE_LOCATION))
    d, m = statistics.median(dagster), statistics.median(definitions)
    for label, median, runs in (
        ("import dagster", d, dagster),
        ("load mlops_assets.definitions", m, definitions),
    ):
        print(f"{label:<32} median {median:.3f}s  runs {[round(x, 3) for x in runs]}")
    print(
        json.dumps(
            {
                "dagster_import_s": round(d, 3),
                "definitions_import_s": round(m, 3),
                "definitions_import_over_dagster": round(m / d, 2),
                "runs": args.runs,
            }
        )
    )


if __name__ == "__main__":
    main()
