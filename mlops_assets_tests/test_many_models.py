"""100 declared models make one set of assets partitioned by model, not 100 copies.

The models are copies of the demo's wine_cultivar YAML under other names in a folder named by
MLOPS_MODELS_PATH, loaded by the real code location (`mlops_assets.definitions`). The
inference_log_sensor registers every declared model as a partition of the `models` dimension.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.defs.partitions import DAY_MODEL, MODELS

DEMO_YAML = Path(__file__).resolve().parents[1] / "mlops_assets/defs/models/wine_cultivar/defs.yaml"


def _declare(folder: Path, n: int) -> list[str]:
    text = DEMO_YAML.read_text()
    folder.mkdir()
    names = [f"wine_cultivar_{i:03d}" for i in range(n)]
    for name in names:
        (folder / f"{name}.yaml").write_text(text.replace("name: wine_cultivar", f"name: {name}"))
    return names


def _code_location(folder: Path, monkeypatch: pytest.MonkeyPatch):
    from mlops_assets.definitions import defs

    monkeypatch.setenv("MLOPS_MODELS_PATH", str(folder))
    return defs().get_repository_def()


def test_a_hundred_models_share_one_set_of_assets_partitioned_by_model(
    tmp_path: Path, mlops_home: Path, monkeypatch: pytest.MonkeyPatch
):
    _declare(tmp_path / "one", 1)
    names = _declare(tmp_path / "many", 100)
    one = _code_location(tmp_path / "one", monkeypatch)
    many = _code_location(tmp_path / "many", monkeypatch)

    keys = many.asset_graph.get_all_asset_keys()
    assert keys == one.asset_graph.get_all_asset_keys()
    assert not any("wine_cultivar" in key.to_user_string() for key in keys)
    for key in keys:
        partitions = many.asset_graph.get(key).partitions_def
        assert partitions in (DAY_MODEL, MODELS, None), key
    assert many.asset_graph.get(dg.AssetKey("production_metrics")).partitions_def == DAY_MODEL
    assert {j.name for j in many.get_all_jobs()} == {j.name for j in one.get_all_jobs()}

    # The sensor adds the declared models as partitions of the model dimension (no baseline
    # yet, so it launches nothing and says why).
    from mlops_assets.defs.production.sensors import inference_log_sensor
    from mlops_assets.platform import catalog_of, default_models
    from mlops_assets.resources import WarehouseResource

    catalog = catalog_of(default_models())
    assert catalog.names == names
    instance = dg.DagsterInstance.ephemeral()
    with dg.build_sensor_context(
        instance=instance,
        resources={"warehouse": WarehouseResource(home=str(mlops_home)), "models": catalog},
    ) as context:
        result = inference_log_sensor(context)
    [request] = result.dynamic_partitions_requests
    assert request.partitions_def_name == MODELS.name
    assert sorted(request.partition_keys) == names
    assert not result.run_requests
