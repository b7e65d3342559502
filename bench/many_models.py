"""Loading the code location with 100 declared models against one model.

The models are copies of the demo's wine_cultivar YAML under other names in a temporary
MLOPS_MODELS_PATH folder. Each measurement is a fresh Python process that imports
`mlops_assets.definitions`, builds the Definitions and resolves them into the repository
Dagster serves (asset graph, jobs, schedules, sensors): what `dagster dev` or a code server
does at start-up. Both sizes run the same script the same number of times, interleaved (1,
100, 1, 100, ...), after one discarded warm-up each; the figure is the median.

    .venv/bin/python bench/many_models.py [--models 100] [--repeats 7]

Ends with one JSON line: `load_100_over_1` (target <= 1.2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_YAML = REPO / "mlops_assets" / "defs" / "models" / "wine_cultivar" / "defs.yaml"

# Timed inside the child from its first statement, so interpreter start-up is not counted.
LOAD = """
import time
started = time.perf_counter()
from mlops_assets.definitions import defs
repository = defs().get_repository_def()
repository.asset_graph
repository.get_all_jobs()
elapsed = time.perf_counter() - started
n_assets = len(repository.asset_graph.get_all_asset_keys())
print(elapsed, n_assets)
"""


def declare(folder: Path, n: int) -> Path:
    """`n` copies of the demo's wine_cultivar declaration under other names."""
    text = DEMO_YAML.read_text()
    assert "name: wine_cultivar" in text
    folder.mkdir(parents=True)
    for i in range(n):
        name = f"wine_cultivar_{i:03d}"
        (folder / f"{name}.yaml").write_text(text.replace("name: wine_cultivar", f"name: {name}"))
    return folder


def load_once(models_path: Path) -> tuple[float, int]:
    env = {**os.environ, "MLOPS_MODELS_PATH": str(models_path)}
    out = subprocess.run(
        [sys.executable, "-c", LOAD], env=env, cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[-2]), int(out[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="mlops-many-models-"))
    one, many = declare(root / "one", 1), declare(root / "many", args.models)
    load_once(one), load_once(many)  # warm-up: file system and bytecode caches
    times: dict[str, list[float]] = {"one": [], "many": []}
    assets: dict[str, int] = {}
    for _ in range(args.repeats):
        for label, folder in (("one", one), ("many", many)):
            seconds, n_assets = load_once(folder)
            times[label].append(seconds)
            assets[label] = n_assets
    median = {label: statistics.median(t) for label, t in times.items()}
    print(f"1 model: median {median['one']:.2f}s over {args.repeats} loads, {assets['one']} assets")
    print(
        f"{args.models} models: median {median['many']:.2f}s over {args.repeats} loads, "
        f"{assets['many']} assets"
    )
    print(
        json.dumps(
            {
                "models": args.models,
                "repeats": args.repeats,
                "load_1_s": round(median["one"], 3),
                f"load_{args.models}_s": round(median["many"], 3),
                "assets_1": assets["one"],
                f"assets_{args.models}": assets["many"],
                f"load_{args.models}_over_1": round(median["many"] / median["one"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
