#!/usr/bin/env bash
# Builds the wheel, installs it into a fresh venv and runs a short smoke from an empty temp
# directory (so nothing resolves to this checkout): migrate, one training run, `status`.
#
# Dependencies are not downloaded a second time: the fresh venv sees the project venv's
# site-packages through a .pth line added after the wheel is installed, so mlops_assets itself
# comes from the wheel (checked below) and the rest from .venv. WHEEL_SMOKE_FULL_INSTALL=1
# installs the wheel with its dependencies from the index instead (several minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-$ROOT/.venv/bin/python}
started=$SECONDS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# setuptools keeps build/ in the tree between builds; a stale copy would ship deleted files.
rm -rf "$ROOT/build"
"$PY" -m pip wheel --no-deps --quiet . -w "$work/dist" 2>"$work/build.log" || {
    cat "$work/build.log" >&2
    exit 1
}
wheel=$(ls "$work"/dist/mlops_assets-*.whl)
listing=$(unzip -l "$wheel")
grep -q "mlops_assets/sql/migrations/0001_" <<<"$listing" || { echo "FATAL: no SQL in $wheel" >&2; exit 1; }
if grep -q "mlops_assets_tests/" <<<"$listing"; then echo "FATAL: tests shipped in $wheel" >&2; exit 1; fi

"$PY" -m venv "$work/venv"
V=$work/venv/bin
if [ "${WHEEL_SMOKE_FULL_INSTALL:-0}" = 1 ]; then
    "$V/pip" install --quiet "$wheel"
else
    "$V/pip" install --quiet --no-deps "$wheel"
    deps=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    site=$("$V/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$deps" >"$site/zz_project_dependencies.pth"
fi

mkdir -p "$work/run"
cd "$work/run"
for var in $(env | grep -o '^MLOPS_[A-Z_]*\|^MLFLOW_TRACKING_URI' || true); do unset "$var"; done
unset PYTHONPATH
export MLOPS_HOME=$work/home

"$V/python" - "$work/venv" <<'PY'
import sys
import mlops_assets
from mlops_assets.runtime import build_runtime
from mlops_assets.storage.warehouse import migrations

assert mlops_assets.__file__.startswith(sys.argv[1]), f"not the wheel: {mlops_assets.__file__}"
try:
    import mlops_assets_tests  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("mlops_assets_tests is importable from the wheel install")
version = build_runtime().warehouse.schema_version()
expected = max(m.version for m in migrations())
assert version == expected, f"migrated to {version}, files go up to {expected}"
print(f"migrate: schema version {version} ({len(migrations())} migrations from the wheel)")
PY

# One model declared the way users declare theirs: a YAML file, trained from a table.
mkdir -p "$work/models"
cat >"$work/models/smoke.yaml" <<'YAML'
type: mlops_assets.MonitoredModel
attributes:
  name: smoke
  task: binary
  model:
    train:
      source: {table: demo.match_history}
      params: {n_estimators: 30}
  columns:
    id: match_id
    timestamp: match_date
    target: outcome
    probability: p_home_win
    features: {elo_diff: numeric, home_form: numeric, away_form: numeric, league: categorical}
  baseline: {n_boot: 20, reference_rows: 300}
  production:
    predictions: {table: demo.match_predictions}
YAML
export MLOPS_MODELS_PATH=$work/models

"$V/python" - <<'PY'
import datetime as dt

import dagster as dg

from mlops_assets import demo_serving
from mlops_assets.definitions import defs as load_defs
from mlops_assets.runtime import build_runtime

demo_serving.load_match_history(build_runtime().warehouse, end=dt.date(2026, 1, 31), n_rows=1500)
defs = load_defs()
instance = dg.DagsterInstance.ephemeral()
instance.add_dynamic_partitions("models", ["smoke"])
keys = ["training_dataset", "training_run", "training_baseline", "ml_model_health_status"]
result = dg.materialize(
    [defs.get_assets_def(dg.AssetKey(k)) for k in keys[:3]],
    resources=defs.resources,
    partition_key="smoke",
    run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    instance=instance,
)
run = result.output_for_node("training_run")
assert run.tracking_status == "TRACKED", run.tracking_status
dg.materialize(
    [defs.get_assets_def(dg.AssetKey(keys[3]))],
    resources=defs.resources,
    run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    instance=instance,
)
print(f"training: {run.local_run_id} tracked as MLflow run {run.mlflow_run_id}")
PY

status=$("$V/mlops-assets" status)
echo "$status"
grep -q "smoke" <<<"$status" || { echo "FATAL: status does not show the smoke model" >&2; exit 1; }
echo "wheel smoke passed in $((SECONDS - started))s"
