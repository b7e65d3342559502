"""Models as the platform sees them: saved, found in the MLflow registry, cached, and scored.

A model trained here is saved in MLflow's LightGBM or scikit-learn flavour together with the
feature encoding it was trained with. A model trained elsewhere is any MLflow flavour in the
registry, named by alias or version. Either is cached under the data directory by MLflow run id
(the cache is rebuilt from MLflow whenever it is missing, so no run depends on another host's
disk) and scored through `Predictor`, which returns what the task's metrics need.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_assets.lib.contract import ModelContract
from mlops_assets.lib.features import FeatureSpec

SPEC_FILE = "mlops_feature_spec.json"


class ModelLoadError(RuntimeError):
    """The model cannot be found, downloaded or loaded; the message names model and cause."""


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    version: str
    run_id: str
    experiment_id: str
    source: str
    signature_inputs: dict[str, str] | None


@dataclass(frozen=True)
class Scores:
    """A model's outputs on a frame: labels, and probabilities where the model gives them."""

    label: np.ndarray | None
    proba: np.ndarray | None  # binary: (n,) P(positive); multiclass: (n, k) in `classes` order
    classes: tuple[str, ...] | None
    score: np.ndarray | None  # regression
    note: str | None = None


def resolve_registered(tracker: Any, contract: ModelContract) -> RegistryEntry:
    """The registry's version for the contract's alias or version, through the breaker."""
    ref = contract.model.registered
    assert ref is not None
    client = tracker.client
    try:
        if ref.alias:
            mv = tracker._call(client.get_model_version_by_alias, ref.name, ref.alias)
        else:
            mv = tracker._call(client.get_model_version, ref.name, ref.version)
        run = tracker._call(client.get_run, mv.run_id)
    except Exception as error:
        from mlops_assets.storage.tracking import is_outage

        if is_outage(error):
            raise
        raise ModelLoadError(
            f"model {contract.name}: cannot resolve {ref.uri} in the MLflow registry: {error}"
        ) from error
    return RegistryEntry(
        name=ref.name,
        version=str(mv.version),
        run_id=mv.run_id,
        experiment_id=run.info.experiment_id,
        source=mv.source,
        signature_inputs=None,
    )


def cached_model_dir(home: Path, run_id: str) -> Path:
    return home / "models" / run_id


def fetch_model(tracker: Any, entry: RegistryEntry, home: Path) -> Path:
    """The model's local copy, downloaded once per run id (atomically, so a crash leaves none)."""
    target = cached_model_dir(home, entry.run_id)
    if (target / "MLmodel").exists():
        return target
    import mlflow.artifacts

    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        # Resolved with our client, not through a `models:/` URI: MLflow resolves those against
        # the process-wide registry URI, which a worker that never trained has not set.
        source = tracker._call(
            tracker.client.get_model_version_download_uri, entry.name, entry.version
        )
        path = tracker._call(
            mlflow.artifacts.download_artifacts,
            artifact_uri=source,
            dst_path=str(staging),
            tracking_uri=tracker.config.tracking_uri,
        )
    except Exception:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    found = Path(path)
    if not (found / "MLmodel").exists():
        candidates = list(staging.rglob("MLmodel"))
        if not candidates:
            raise ModelLoadError(f"{entry.name} version {entry.version}: no MLmodel file")
        found = candidates[0].parent
    shutil.rmtree(target, ignore_errors=True)
    found.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def signature_inputs(model_dir: Path) -> dict[str, str] | None:
    """Column name -> MLflow type from the model's signature, if it has one."""
    import yaml

    meta = yaml.safe_load((model_dir / "MLmodel").read_text())
    inputs = (meta.get("signature") or {}).get("inputs")
    if not inputs:
        return None
    columns = json.loads(inputs)
    return {c["name"]: c.get("type", "double") for c in columns if "name" in c}


class Predictor:
    """Scores a frame of raw features with a loaded model, whatever its flavour."""

    def __init__(
        self, contract: ModelContract, model_dir: Path, *, features: list[str] | None = None
    ):
        import yaml

        self.contract = contract
        self.features = features
        self.model_dir = model_dir
        meta = yaml.safe_load((model_dir / "MLmodel").read_text())
        self.flavors = set((meta.get("flavors") or {}).keys())
        spec_path = model_dir / SPEC_FILE
        self.spec = FeatureSpec.from_json(spec_path.read_text()) if spec_path.exists() else None
        self._model = self._load()

    def _load(self) -> Any:
        try:
            if "lightgbm" in self.flavors:
                import mlflow.lightgbm

                return mlflow.lightgbm.load_model(str(self.model_dir))
            if "sklearn" in self.flavors:
                import mlflow.sklearn

                return mlflow.sklearn.load_model(str(self.model_dir))
            import mlflow.pyfunc

            return mlflow.pyfunc.load_model(str(self.model_dir))
        except Exception as error:
            raise ModelLoadError(
                f"model {self.contract.name}: cannot load {self.model_dir.name} "
                f"(flavours {', '.join(sorted(self.flavors)) or 'none'}): {error}"
            ) from error

    def _inputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.spec:
            return self.spec.encode(frame)
        # A model trained elsewhere gets exactly its input columns, in signature order.
        return frame[self.features] if self.features else frame

    def score(self, frame: pd.DataFrame) -> Scores:
        x = self._inputs(frame)
        task = self.contract.task
        model = self._model
        if task == "regression":
            return Scores(None, None, None, np.asarray(model.predict(x), dtype=float).ravel())
        classes = tuple(self.contract.class_labels)
        if hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(x), dtype=float)
            model_classes = [str(c) for c in getattr(model, "classes_", classes)]
        elif type(model).__name__ == "Booster":  # native LightGBM: predict gives probabilities
            proba = np.asarray(model.predict(x), dtype=float)
            model_classes = list(classes)
        else:
            labels = np.asarray(model.predict(x)).ravel().astype(str)
            return Scores(
                labels, None, classes, None, note="model returns labels only (no probabilities)"
            )
        if task == "binary":
            p = proba if proba.ndim == 1 else proba[:, model_classes.index(classes[-1])]
            return Scores(None, p, classes, None)
        order = [model_classes.index(c) for c in classes]
        return Scores(None, proba[:, order], classes, None)


def cached_predictor(
    contract: ModelContract,
    *,
    tracker: Any,
    home: Path,
    artifact_root: Path,
    local_run_id: str,
    mlflow_run_id: str | None,
    model_version: str | None,
    features: list[str],
) -> Predictor | None:
    """The model of a run from this host's copies (the registry cache by MLflow run id, or the
    buffered artifacts of a run trained here), else downloaded once from the MLflow registry
    into the cache, so a worker that never saw the training run scores like the one that did.

    None when no copy is reachable: a run still waiting for replay (no registry version yet,
    its artifacts on the training host only) or MLflow unavailable (the breaker answers at
    once while it is open)."""
    candidates = [artifact_root / local_run_id / "model"]
    if mlflow_run_id:
        candidates.insert(0, cached_model_dir(home, mlflow_run_id))
    for model_dir in candidates:
        if (model_dir / "MLmodel").exists():
            return Predictor(contract, model_dir, features=features)
    if not (mlflow_run_id and model_version):
        return None
    registered = contract.model.registered
    entry = RegistryEntry(
        name=registered.name if registered else contract.name,
        version=model_version,
        run_id=mlflow_run_id,
        experiment_id="",
        source="",
        signature_inputs=None,
    )
    try:
        model_dir = fetch_model(tracker, entry, home)
    except Exception as error:
        from mlops_assets.lib.breaker import CircuitOpenError
        from mlops_assets.storage.tracking import is_outage

        if isinstance(error, CircuitOpenError) or is_outage(error):
            return None
        raise ModelLoadError(
            f"model {contract.name}: cannot download version {model_version} of "
            f"{entry.name} from MLflow: {error}"
        ) from error
    return Predictor(contract, model_dir, features=features)
