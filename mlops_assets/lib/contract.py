"""The model contract: everything the platform needs to know about one monitored model.

One contract per model, declared in YAML (a `mlops_assets.MonitoredModel` component instance).
Pure pydantic, no Dagster: the CLI validates files with it and the assets read it at run time.
The column names here are the users' own; the platform never assumes the demo's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Each task owns its metrics, their directions, default levels and default monitored set.
from mlops_assets.lib.tasks import TASKS

FeatureKind = Literal["numeric", "categorical"]
Severity = Literal["info", "warning", "critical"]

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_COLUMN_RULE = "letters, digits and _, not starting with a digit"


class ContractError(ValueError):
    """A contract is invalid; `problems` holds one "field: message" line per problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _column(value: str | None) -> str | None:
    if value is not None and not _COLUMN.match(value):
        raise ValueError(f"column name {value!r} must be {_COLUMN_RULE}")
    return value


class Source(_Strict):
    """Where rows come from: a table or view in the warehouse, or a folder of Parquet files."""

    table: str | None = Field(default=None, description="schema.table (or view) in the warehouse")
    parquet: str | None = Field(
        default=None, description="Folder of .parquet files (one batch per file), local path"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        if (self.table is None) == (self.parquet is None):
            raise ValueError("give exactly one of table or parquet")
        if self.table is not None and not _TABLE.match(self.table):
            raise ValueError(f"table must be schema.table, got {self.table!r}")
        return self

    def describe(self) -> str:
        return f"table {self.table}" if self.table else f"parquet folder {self.parquet}"


class ProductionSource(Source):
    """A source the serving system writes to while the platform picks rows up."""

    lookback_seconds: int = Field(
        default=0,
        ge=0,
        le=86_400,
        description="Table sources: rows committed late, with a pick-up cursor value up to "
        "this many seconds below the highest one seen, are picked up too (several writers "
        "whose loaded_at is stamped when their transaction begins, as a default of now() is); "
        "0 picks up only rows above it",
    )

    @model_validator(mode="after")
    def _lookback_for_tables(self) -> ProductionSource:
        if self.lookback_seconds and self.table is None:
            raise ValueError(
                "lookback_seconds applies to a table source (a Parquet batch is new by its "
                "file name)"
            )
        return self


class RegisteredModel(_Strict):
    """A model trained elsewhere and registered in MLflow."""

    name: str = Field(description="Registered model name in MLflow")
    alias: str | None = Field(default=None, description="Alias, e.g. champion")
    version: str | None = Field(default=None, description="Version number (instead of alias)")

    @model_validator(mode="after")
    def _one_ref(self) -> RegisteredModel:
        if (self.alias is None) == (self.version is None):
            raise ValueError("give exactly one of alias or version")
        return self

    @property
    def uri(self) -> str:
        ref = f"@{self.alias}" if self.alias else f"/{self.version}"
        return f"models:/{self.name}{ref}"


class TrainingRecipe(_Strict):
    """A model the platform trains: data, estimator, parameters, held-out split."""

    source: Source = Field(description="Training history (features and target)")
    estimator: str = Field(
        default="lightgbm",
        description="lightgbm, or a dotted path to a scikit-learn-compatible class "
        "(e.g. sklearn.ensemble.RandomForestClassifier)",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Estimator parameters")
    test_size: float = Field(default=0.25, gt=0.05, lt=0.9)
    order_by: str | None = Field(
        default=None,
        description="Column for a time-ordered split (default: the timestamp column if the "
        "training data has it, else a seeded shuffle)",
    )
    seed: int = 42
    promotion_tolerance: float = Field(
        default=0.01, ge=0, description="A new version is champion unless worse by more"
    )

    @field_validator("order_by")
    @classmethod
    def _order(cls, value: str | None) -> str | None:
        return _column(value)

    @field_validator("estimator")
    @classmethod
    def _estimator(cls, value: str) -> str:
        if value != "lightgbm" and not re.match(r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$", value):
            raise ValueError(f"estimator must be lightgbm or a dotted class path, got {value!r}")
        return value


class ModelSource(_Strict):
    registered: RegisteredModel | None = None
    train: TrainingRecipe | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        if (self.registered is None) == (self.train is None):
            raise ValueError("give exactly one of registered or train")
        return self


class Columns(_Strict):
    """Column names in the users' data: training data, validation data and inference log."""

    features: dict[str, FeatureKind] | None = Field(
        default=None,
        description="feature -> numeric | categorical; omit to take them from the MLflow "
        "model signature (strings categorical, numbers numeric)",
    )
    target: str = Field(description="Label column (training data, validation data, labels)")
    id: str = Field(default="prediction_id", description="Unique prediction id")
    timestamp: str = Field(default="predicted_at", description="When the prediction was made")
    prediction: str | None = Field(
        default=None,
        description="Predicted label (classification) or predicted value (regression)",
    )
    probability: str | None = Field(
        default=None, description="Binary: column holding P(positive class)"
    )
    probabilities: dict[str, str] | None = Field(
        default=None, description="Multiclass: class label -> column holding its probability"
    )
    loaded_at: str | None = Field(
        default=None,
        description="When a row landed in a table source; the pick-up cursor (default: "
        "timestamp). Set it when serving writes late or out of order.",
    )
    labelled_at: str | None = Field(
        default=None,
        description="When a label landed in a labels table; the labels' pick-up cursor "
        "(required for a labels table; Parquet label files are picked up by file)",
    )

    @field_validator(
        "target", "id", "timestamp", "prediction", "probability", "loaded_at", "labelled_at"
    )
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return _column(value)

    @field_validator("features")
    @classmethod
    def _features(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            if not value:
                raise ValueError("features must name at least one column (or be omitted)")
            for name in value:
                _column(name)
        return value

    @field_validator("probabilities")
    @classmethod
    def _proba(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for column in (value or {}).values():
            _column(column)
        return value


class Baseline(_Strict):
    """How the reference metrics, their noise and the reference sample are made."""

    source: Source | None = Field(
        default=None,
        description="Validation data for a registered model (features and target); a model "
        "trained here uses its held-out split",
    )
    reference_rows: int = Field(default=5000, ge=100, description="Reference sample for drift")
    n_boot: int = Field(default=200, ge=20, description="Bootstrap resamples for metric noise")


class BusinessValue(_Strict):
    kind: Literal["none", "roi", "cost_matrix"] = "none"
    odds_column: str | None = Field(default=None, description="roi: decimal odds column")
    value_margin: float = Field(
        default=0.0, ge=0, description="roi: bet when p * odds > 1 + margin (train and serve)"
    )
    classes: list[str] | None = Field(default=None, description="cost_matrix: class order")
    matrix: list[list[float]] | None = Field(
        default=None, description="cost_matrix: value per [actual][predicted]"
    )

    @model_validator(mode="after")
    def _complete(self) -> BusinessValue:
        if self.kind == "roi" and not self.odds_column:
            raise ValueError("kind roi needs odds_column")
        if self.kind == "roi":
            _column(self.odds_column)
        if self.kind == "cost_matrix":
            if not self.classes or not self.matrix:
                raise ValueError("kind cost_matrix needs classes and matrix")
            k = len(self.classes)
            if len(self.matrix) != k or any(len(row) != k for row in self.matrix):
                raise ValueError(f"matrix must be {k} x {k} (one row and column per class)")
        return self


class MetricLevels(_Strict):
    warning: float = Field(ge=0, description="Absolute degradation that warns")
    critical: float = Field(ge=0, description="Absolute degradation that is critical")

    @model_validator(mode="after")
    def _ordered(self) -> MetricLevels:
        if self.critical < self.warning:
            raise ValueError("critical must not be below warning")
        return self


class Monitoring(_Strict):
    metrics: dict[str, MetricLevels] | None = Field(
        default=None, description="Monitored metrics and their levels (default per task)"
    )
    min_labelled: int = Field(default=200, ge=1, description="Fewer labelled rows: no verdict")
    k_warning: float = Field(default=3.0, gt=0, description="Noise multiples for a warning")
    k_critical: float = Field(default=4.5, gt=0, description="Noise multiples for critical")
    escalate_after_days: int = Field(default=3, ge=1)
    resolve_after_days: int = Field(default=2, ge=1)
    estimate: bool = Field(
        default=True,
        description="Classification: estimate metrics from calibrated probabilities on days "
        "with too few labels (confidence-based performance estimation)",
    )
    estimated_severity_cap: Severity = Field(
        default="warning",
        description="Highest severity an alert on estimated metrics alone may reach",
    )


class Drift(_Strict):
    engine: Literal["scipy", "alibi"] = Field(
        default="scipy", description="scipy, or alibi (alibi-detect, Business Source License)"
    )
    correction: Literal["bonferroni", "fdr"] = "bonferroni"
    p_value: float = Field(default=0.05, gt=0, lt=1)
    drift_share: float = Field(default=0.5, gt=0, le=1, description="Share for dataset drift")


class Alerts(_Strict):
    severity_floor: Severity = Field(
        default="warning", description="Deliver alerts of this severity and above"
    )
    webhook_env: str | None = Field(
        default=None,
        description="Name of an environment variable holding this model's webhook URL "
        "(default: MLOPS_ALERT_WEBHOOK_URL)",
    )

    @field_validator("webhook_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Z_][A-Z0-9_]*$", value):
            raise ValueError(f"webhook_env must be an environment variable name, got {value!r}")
        return value


class Production(_Strict):
    predictions: ProductionSource = Field(description="The inference log the serving system writes")
    labels: ProductionSource | None = Field(
        default=None,
        description="Late labels (id and target columns), joined by prediction id; omit "
        "when the inference log carries the target itself",
    )


class ModelContract(_Strict):
    """One monitored model."""

    name: str = Field(description="Model name: letters, digits, _ (1-50, starts with a letter)")
    task: Literal["binary", "multiclass", "regression"]
    description: str | None = None
    owner: str | None = None
    model: ModelSource
    columns: Columns
    classes: list[str] | None = Field(
        default=None, description="Class labels (multiclass; binary is 0/1 unless given)"
    )
    threshold: float = Field(default=0.5, ge=0, le=1, description="Binary decision threshold")
    baseline: Baseline = Baseline()
    business_value: BusinessValue = BusinessValue()
    production: Production
    monitoring: Monitoring = Monitoring()
    drift: Drift = Drift()
    alerts: Alerts = Alerts()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        from mlops_assets.lib.names import validate_model_name

        return validate_model_name(value)

    @model_validator(mode="after")
    def _consistent(self) -> ModelContract:
        problems = []
        c = self.columns
        if self.task == "binary" and not (c.probability or c.prediction):
            problems.append("columns: binary needs probability (or at least prediction)")
        if self.task == "multiclass":
            if not (c.probabilities or c.prediction):
                problems.append("columns: multiclass needs probabilities (or prediction)")
            if not self.classes and not c.probabilities:
                problems.append("classes: multiclass needs classes (or columns.probabilities)")
        if self.task == "regression":
            if not c.prediction:
                problems.append("columns: regression needs prediction (the predicted value)")
            if self.business_value.kind != "none":
                problems.append("business_value: regression supports only kind none")
        if self.business_value.kind == "roi" and self.task != "binary":
            problems.append("business_value: roi is for binary models")
        labels = self.production.labels
        if labels is not None and labels.table and not c.labelled_at:
            problems.append("columns.labelled_at: required when production.labels is a table")
        if self.model.registered and self.baseline.source is None:
            problems.append(
                "baseline.source: a registered model needs validation data to baseline on"
            )
        if self.model.registered and c.features is None:
            pass  # taken from the MLflow signature at load time
        elif c.features is None:
            problems.append("columns.features: required for a model trained here")
        known = TASKS[self.task].higher_is_better
        unknown = set(self.monitoring.metrics or {}) - set(known)
        if unknown:
            problems.append(
                f"monitoring.metrics: unknown metric(s) {', '.join(sorted(unknown))} for task "
                f"{self.task} (known: {', '.join(known)})"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- derived -------------------------------------------------------------------------

    @property
    def class_labels(self) -> list[str]:
        if self.task == "regression":
            return []
        if self.classes:
            return [str(c) for c in self.classes]
        if self.columns.probabilities:
            return list(self.columns.probabilities)
        return ["0", "1"]

    def monitored_metrics(self) -> dict[str, tuple[float, float] | None]:
        """Monitored metric -> its declared (warning, critical) levels, or None where the
        task's default applies (sized by `lib.evaluation.monitored_levels`, some from the
        baseline)."""
        if self.monitoring.metrics:
            return {m: (v.warning, v.critical) for m, v in self.monitoring.metrics.items()}
        names = list(TASKS[self.task].default_monitored)
        if self.business_value.kind == "roi":
            names.append("roi")
        elif self.business_value.kind == "cost_matrix":
            names.append("business_value")
        return dict.fromkeys(names)

    def warnings(self) -> list[str]:
        """Valid but probably not what the user means: each line names the field and the fix."""
        found = []
        predictions = self.production.predictions
        if predictions.table and not self.columns.loaded_at:
            found.append(
                f"columns.loaded_at: not set, so {predictions.describe()} is picked up by "
                f"{self.columns.timestamp}: rows written later with an older "
                f"{self.columns.timestamp} (an out-of-order or re-delivered batch) are never "
                "picked up by the sensor; name a column holding when each row was written"
            )
        return found

    def feature_kinds(self, signature_inputs: Mapping[str, str] | None = None) -> dict[str, str]:
        """Features from the contract, else from the MLflow signature's column types."""
        if self.columns.features:
            return dict(self.columns.features)
        if not signature_inputs:
            raise ContractError(
                self.name, ["columns.features: not declared and the model has no signature"]
            )
        return {
            name: "categorical" if kind in ("string", "boolean") else "numeric"
            for name, kind in signature_inputs.items()
        }


def _problem_lines(error: ValidationError) -> list[str]:
    lines = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        message = e["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return lines


def parse_contract(data: Any, *, source: str) -> ModelContract:
    """Validate one contract; a bad one raises ContractError naming the file and each field."""
    if not isinstance(data, Mapping):
        raise ContractError(source, ["the model declaration must be a mapping"])
    try:
        return ModelContract.model_validate(data)
    except ValidationError as error:
        raise ContractError(source, _problem_lines(error)) from None


def load_contract_file(path: Path) -> ModelContract:
    """Read a component YAML (`type: mlops_assets.MonitoredModel`, `attributes: ...`)."""
    import yaml

    try:
        # libyaml's parser when present: the pure-Python one takes ~25 ms a model file.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        document = yaml.load(path.read_text(), Loader=loader)  # noqa: S506 - a safe loader
    except (OSError, yaml.YAMLError) as error:
        raise ContractError(str(path), [f"cannot read YAML: {error}"]) from None
    if not isinstance(document, Mapping) or "attributes" not in document:
        raise ContractError(
            str(path), ["expected `type: mlops_assets.MonitoredModel` and `attributes:`"]
        )
    return parse_contract(document["attributes"], source=str(path))


class UnknownModelError(LookupError):
    """A model name that no contract declares."""


class ModelCatalog:
    """The declared models by name."""

    def __init__(self, contracts: Iterable[ModelContract] = ()):
        self._by_name: dict[str, ModelContract] = {}
        for contract in contracts:
            self.add(contract)

    def add(self, contract: ModelContract) -> None:
        """Declare one more model (tests and notebooks; a code location declares in YAML)."""
        if contract.name in self._by_name:
            raise ContractError(contract.name, ["name: declared twice"])
        self._by_name[contract.name] = contract

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __iter__(self):
        return iter(self._by_name[n] for n in self.names)

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> ModelContract:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownModelError(
                f"model {name!r} is not declared; declared: {', '.join(self.names) or 'none'}"
            ) from None
