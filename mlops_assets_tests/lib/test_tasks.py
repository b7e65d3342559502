from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlops_assets.lib.metrics import (
    MetricInputError,
    classification_metrics,
    severity_for,
    thresholds_for,
)
from mlops_assets.lib.tasks import (
    LABELS_ONLY_NOTE,
    BinaryTask,
    CostMatrix,
    MulticlassTask,
    RegressionTask,
    Roi,
    Task,
    TaskOutputs,
    degradation,
    get_task,
)

# --- data -------------------------------------------------------------------------------------


def _seeded_binary(n: int = 600, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * signal))).astype(int)
    proba = 1 / (1 + np.exp(-(1.5 * signal + rng.normal(scale=0.8, size=n))))
    return y, proba


def _breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.4, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=500))
    model.fit(x_train, y_train)
    return y_test, model.predict_proba(x_test)[:, 1]


def _seeded_multiclass(
    n: int = 800, seed: int = 2
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    rng = np.random.default_rng(seed)
    classes = ("ant", "bee", "cat", "dog")
    y_idx = rng.integers(0, len(classes), size=n)
    logits = rng.normal(size=(n, len(classes)))
    logits[np.arange(n), y_idx] += 1.2
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return np.asarray(classes)[y_idx], proba, classes


def _iris() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    x, y = load_iris(return_X_y=True)
    names = np.asarray(load_iris().target_names)[y]  # string labels, as the task expects
    x_train, x_test, y_train, y_test = train_test_split(
        x, names, test_size=0.5, random_state=0, stratify=names
    )
    # a weak model so that every metric is away from its bound and mistakes exist
    model = LogisticRegression(C=0.02, max_iter=500).fit(x_train[:, :2], y_train)
    return y_test, model.predict_proba(x_test[:, :2]), tuple(str(c) for c in model.classes_)


def _seeded_regression(n: int = 500, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.gamma(4.0, 10.0, size=n) + 1.0
    return y, y + rng.normal(scale=6.0, size=n)


def _diabetes() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.4, random_state=0)
    return y_test, Ridge(alpha=1.0).fit(x_train, y_train).predict(x_test)


BINARY_DATA: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "seeded": _seeded_binary,
    "breast_cancer": _breast_cancer,
}
MULTICLASS_DATA = {"seeded": _seeded_multiclass, "iris": _iris}
REGRESSION_DATA = {"seeded": _seeded_regression, "diabetes": _diabetes}


# --- get_task ---------------------------------------------------------------------------------


def test_get_task_returns_each_task() -> None:
    assert isinstance(get_task("binary"), BinaryTask)
    assert get_task("binary", threshold=0.3).threshold == 0.3
    assert isinstance(get_task("multiclass"), MulticlassTask)
    assert isinstance(get_task("regression"), RegressionTask)


@pytest.mark.parametrize(
    ("name", "options", "fragment"),
    [
        ("ranking", {}, "unknown task 'ranking'; expected one of binary, multiclass, regression"),
        ("regression", {"threshold": 0.5}, "task 'regression' does not take option(s) threshold"),
        ("binary", {"treshold": 0.5}, "does not take option(s) treshold; it takes threshold"),
        ("binary", {"threshold": 1.5}, "threshold must be a finite number in [0.0, 1.0]"),
        ("binary", {"threshold": math.nan}, "threshold must be a finite number"),
    ],
)
def test_get_task_rejects_bad_names_and_options(
    name: str, options: dict[str, float], fragment: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        get_task(name, **options)


@pytest.mark.parametrize("task", [get_task(n) for n in ("binary", "multiclass", "regression")])
def test_every_metric_has_a_direction_and_a_level(task: Task) -> None:
    business = {
        "binary": [None, Roi(odds=np.array([2.0]), value_margin=0.0), _BINARY_COSTS],
        "multiclass": [None, _MULTICLASS_COSTS],
        "regression": [None],
    }[task.name]
    for value in business:
        metrics = task.metrics_for(value)
        baseline = dict.fromkeys(metrics, 1.0)
        levels = task.levels_for(business=value, baseline=baseline)
        assert set(levels) == set(metrics)
        for metric in metrics:
            assert isinstance(task.direction(metric), bool)
            warning, critical = levels[metric]
            assert 0 < warning <= critical
    assert set(task.default_monitored) <= set(task.metrics)


def test_directions() -> None:
    assert {m for m, up in get_task("binary").higher_is_better.items() if not up} == {"log_loss"}
    assert {m for m, up in get_task("multiclass").higher_is_better.items() if not up} == {
        "log_loss"
    }
    assert {m for m, up in get_task("regression").higher_is_better.items() if up} == {"r2"}
    with pytest.raises(MetricInputError, match="unknown metric 'f1' for task 'regression'"):
        get_task("regression").direction("f1")


def test_regression_levels_in_target_units_scale_with_the_baseline() -> None:
    task = get_task("regression")
    assert task.levels_for(baseline={"mae": 20.0, "rmse": 30.0})["mae"] == pytest.approx((2.0, 4.0))
    # no baseline: no made-up level in unknown units
    assert "mae" not in task.levels_for()
    assert task.levels_for()["r2"] == task.default_levels["r2"]


# --- binary -----------------------------------------------------------------------------------


def _sk_binary(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": skm.accuracy_score(y, predicted),
        "precision": skm.precision_score(y, predicted),
        "recall": skm.recall_score(y, predicted),
        "f1": skm.f1_score(y, predicted),
    }


@pytest.mark.parametrize("data", BINARY_DATA, ids=str)
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_binary_matches_sklearn(data: str, threshold: float) -> None:
    y, proba = BINARY_DATA[data]()
    result = get_task("binary", threshold=threshold).compute(y, TaskOutputs(proba=proba))
    expected = _sk_binary(y, (proba >= threshold).astype(int))
    expected["roc_auc"] = skm.roc_auc_score(y, proba)
    expected["log_loss"] = skm.log_loss(y, proba)
    assert set(result.values) == set(get_task("binary").metrics)
    for metric, value in expected.items():
        assert result.values[metric] == pytest.approx(value, rel=1e-9), metric
    assert result.notes == {}
    assert result.n == y.size


@pytest.mark.parametrize("data", BINARY_DATA, ids=str)
def test_binary_labels_only(data: str) -> None:
    y, proba = BINARY_DATA[data]()
    label = (proba >= 0.6).astype(int)  # the model's own decision, not the task threshold
    result = get_task("binary").compute(y, TaskOutputs(label=label))
    for metric, value in _sk_binary(y, label).items():
        assert result.values[metric] == pytest.approx(value, rel=1e-9), metric
    for metric in ("roc_auc", "log_loss"):
        assert result.values[metric] is None
        assert result.notes[metric] == LABELS_ONLY_NOTE


def test_binary_label_wins_over_threshold_but_proba_still_scores() -> None:
    y, proba = _seeded_binary()
    label = (proba >= 0.7).astype(int)
    result = get_task("binary").compute(y, TaskOutputs(label=label, proba=proba))
    assert result.values["accuracy"] == pytest.approx(skm.accuracy_score(y, label))
    assert result.values["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba))


def test_binary_agrees_with_classification_metrics_including_roi() -> None:
    y, proba = _seeded_binary()
    odds = np.random.default_rng(9).uniform(1.3, 4.0, size=y.size)
    old = classification_metrics(y, proba, odds=odds, threshold=0.4, value_margin=0.02)
    new = get_task("binary", threshold=0.4).compute(
        y, TaskOutputs(proba=proba), business=Roi(odds=odds, value_margin=0.02)
    )
    assert new.values == old.values
    assert new.n_bets == old.n_bets > 0


@pytest.mark.parametrize(
    ("y", "outputs", "undefined", "fragment"),
    [
        # nothing predicted positive at the threshold
        ([1, 0, 1], TaskOutputs(proba=np.array([0.1, 0.2, 0.3])), "precision", "threshold 0.5"),
        ([1, 0, 1], TaskOutputs(label=np.array([0, 0, 0])), "precision", "no positive label"),
        # no positives in y_true: recall and roc_auc undefined
        ([0, 0, 0], TaskOutputs(proba=np.array([0.1, 0.7, 0.3])), "recall", "no positive labels"),
        ([0, 0, 0], TaskOutputs(proba=np.array([0.1, 0.7, 0.3])), "roc_auc", "only one class"),
        ([0, 0], TaskOutputs(proba=np.array([0.1, 0.2])), "f1", "no positive labels and no"),
    ],
)
def test_binary_undefined_metrics_are_none_with_a_note(
    y: list[int], outputs: TaskOutputs, undefined: str, fragment: str
) -> None:
    result = get_task("binary").compute(y, outputs)
    assert result.values[undefined] is None
    assert fragment in result.notes[undefined]


def test_roi_needs_probabilities() -> None:
    result = get_task("binary").compute(
        [1, 0], TaskOutputs(label=np.array([1, 0])), business=Roi(odds=np.array([2.5, 2.5]))
    )
    assert result.values["roi"] is None
    assert result.notes["roi"] == LABELS_ONLY_NOTE


def test_roi_without_bets_is_none() -> None:
    result = get_task("binary").compute(
        [1, 0],
        TaskOutputs(proba=np.array([0.3, 0.2])),
        business=Roi(odds=np.array([2.0, 2.0]), value_margin=0.1),
    )
    assert result.values["roi"] is None
    assert result.notes["roi"] == "no bets: prob * odds never exceeded 1.1"
    assert result.n_bets == 0


# --- multiclass -------------------------------------------------------------------------------


def _sk_multiclass_labels(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": skm.accuracy_score(y, predicted),
        "f1_macro": skm.f1_score(y, predicted, average="macro"),
        "f1_weighted": skm.f1_score(y, predicted, average="weighted"),
        "precision_macro": skm.precision_score(y, predicted, average="macro", zero_division=np.nan),
        "recall_macro": skm.recall_score(y, predicted, average="macro", zero_division=np.nan),
    }


@pytest.mark.parametrize("data", MULTICLASS_DATA, ids=str)
def test_multiclass_matches_sklearn(data: str) -> None:
    y, proba, classes = MULTICLASS_DATA[data]()
    assert list(classes) == sorted(classes)  # sklearn's column order, needed by its labels=
    result = get_task("multiclass").compute(y, TaskOutputs(proba=proba, classes=classes))
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    expected = _sk_multiclass_labels(y, predicted)
    expected["log_loss"] = skm.log_loss(y, proba, labels=list(classes))
    expected["roc_auc_ovr"] = skm.roc_auc_score(
        y, proba, multi_class="ovr", average="macro", labels=list(classes)
    )
    assert set(result.values) == set(get_task("multiclass").metrics)
    for metric, value in expected.items():
        assert result.values[metric] == pytest.approx(value, rel=1e-9), metric
    assert result.notes == {}

    # the column order is whatever classes says: a permutation gives the same metrics
    order = [2, 0, 3, 1][: len(classes)] if len(classes) == 4 else [2, 0, 1]
    permuted = get_task("multiclass").compute(
        y, TaskOutputs(proba=proba[:, order], classes=tuple(classes[i] for i in order))
    )
    assert permuted.values == pytest.approx(result.values)


@pytest.mark.parametrize("data", MULTICLASS_DATA, ids=str)
def test_multiclass_labels_only(data: str) -> None:
    y, proba, classes = MULTICLASS_DATA[data]()
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    result = get_task("multiclass").compute(y, TaskOutputs(label=predicted))
    for metric, value in _sk_multiclass_labels(y, predicted).items():
        assert result.values[metric] == pytest.approx(value, rel=1e-9), metric
    for metric in ("log_loss", "roc_auc_ovr"):
        assert result.values[metric] is None
        assert result.notes[metric] == LABELS_ONLY_NOTE


def test_multiclass_model_that_never_predicts_a_class() -> None:
    y, proba, classes = _seeded_multiclass()
    proba = proba.copy()
    proba[:, 1] = 0.0  # "bee" is never predicted
    proba /= proba.sum(axis=1, keepdims=True)
    result = get_task("multiclass").compute(y, TaskOutputs(proba=proba, classes=classes))
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    assert "bee" not in set(predicted)
    # bee's precision is undefined and left out, not counted as 0; its recall is a real 0
    for metric, value in _sk_multiclass_labels(y, predicted).items():
        assert result.values[metric] == pytest.approx(value, rel=1e-9), metric
    assert result.values["precision_macro"] > skm.precision_score(
        y, predicted, average="macro", zero_division=0
    )


def test_multiclass_class_absent_from_y_true() -> None:
    y, proba, classes = _seeded_multiclass()
    keep = y != "dog"
    y, proba = y[keep], proba[keep]
    result = get_task("multiclass").compute(y, TaskOutputs(proba=proba, classes=classes))
    present = [i for i, c in enumerate(classes) if c != "dog"]
    expected_auc = np.mean([skm.roc_auc_score(y == classes[i], proba[:, i]) for i in present])
    assert result.values["roc_auc_ovr"] == pytest.approx(expected_auc, rel=1e-9)
    assert result.values["log_loss"] == pytest.approx(
        skm.log_loss(y, proba, labels=list(classes)), rel=1e-9
    )
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    assert result.values["f1_macro"] == pytest.approx(
        skm.f1_score(y, predicted, average="macro"), rel=1e-9
    )


def test_multiclass_roc_auc_undefined_with_one_class() -> None:
    proba = np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]])
    result = get_task("multiclass").compute(
        ["a", "a"], TaskOutputs(proba=proba, classes=("a", "b", "c"))
    )
    assert result.values["roc_auc_ovr"] is None
    assert "fewer than 2 classes in y_true (only 'a'" in result.notes["roc_auc_ovr"]
    assert result.values["accuracy"] == 1.0


def test_multiclass_integer_labels_are_class_names() -> None:
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(C=0.05, max_iter=500).fit(x, y)
    proba = model.predict_proba(x)
    # integer targets and a model's integer classes_ meet as the strings "0", "1", "2"
    result = get_task("multiclass").compute(
        y, TaskOutputs(proba=proba, classes=tuple(model.classes_))
    )
    assert result.values["log_loss"] == pytest.approx(skm.log_loss(y, proba), rel=1e-9)
    assert result.values["accuracy"] == pytest.approx(model.score(x, y), rel=1e-9)
    costs = CostMatrix(classes=(0, 1, 2), values=np.eye(3).tolist())
    valued = get_task("multiclass").compute(
        y, TaskOutputs(proba=proba, classes=("0", "1", "2")), business=costs
    )
    assert valued.values["business_value"] == pytest.approx(model.score(x, y))


def test_multiclass_missing_labels_from_pandas_are_named() -> None:
    pd = pytest.importorskip("pandas")
    y = pd.Series(["a", pd.NA, "b"], dtype="object")
    with pytest.raises(MetricInputError, match=re.escape("y_true contains 1 missing label(s)")):
        get_task("multiclass").compute(y, TaskOutputs(label=np.array(["a", "b", "b"])))


# --- regression -------------------------------------------------------------------------------


@pytest.mark.parametrize("data", REGRESSION_DATA, ids=str)
def test_regression_matches_sklearn(data: str) -> None:
    y, score = REGRESSION_DATA[data]()
    result = get_task("regression").compute(y, TaskOutputs(score=score))
    expected = {
        "mae": skm.mean_absolute_error(y, score),
        "rmse": skm.root_mean_squared_error(y, score),
        "mape": skm.mean_absolute_percentage_error(y, score),
        "r2": skm.r2_score(y, score),
    }
    assert set(result.values) == set(expected)
    for metric, value in expected.items():
        assert result.values[metric] == pytest.approx(value, rel=1e-9), metric
    assert result.notes == {}


def test_mape_undefined_when_y_true_has_zeros() -> None:
    result = get_task("regression").compute([0.0, 2.0, 4.0], TaskOutputs(score=[0.5, 2.0, 3.0]))
    assert result.values["mape"] is None
    assert result.notes["mape"].startswith("MAPE undefined: y_true contains zeros")
    assert result.values["mae"] == pytest.approx(0.5)
    assert result.values["r2"] == pytest.approx(skm.r2_score([0, 2, 4], [0.5, 2, 3]))


def test_r2_undefined_when_y_true_is_constant() -> None:
    result = get_task("regression").compute([0.1] * 5, TaskOutputs(score=[0.1, 0.2, 0, 0.1, 0.1]))
    assert result.values["r2"] is None
    assert "y_true is constant" in result.notes["r2"]
    assert result.values["rmse"] == pytest.approx(math.sqrt(0.02 / 5))


# --- business value ---------------------------------------------------------------------------

_BINARY_COSTS = CostMatrix(classes=("0", "1"), values=[[0.0, -1.0], [-5.0, 3.0]])
_MULTICLASS_COSTS = CostMatrix(
    classes=("a", "b", "c"), values=[[1.0, -1.0, -2.0], [-1.0, 2.0, 0.0], [-3.0, 0.0, 4.0]]
)


def test_binary_cost_matrix_hand_checked() -> None:
    # predicted [1, 1, 0, 0] against actual [1, 0, 1, 0]: TP=3, FP=-1, FN=-5, TN=0
    outputs = TaskOutputs(label=np.array([1, 1, 0, 0]))
    result = get_task("binary").compute([1, 0, 1, 0], outputs, business=_BINARY_COSTS)
    assert result.values["business_value"] == pytest.approx((3 - 1 - 5 + 0) / 4)
    # the same matrix written in the other class order
    flipped = CostMatrix(classes=("1", "0"), values=[[3.0, -5.0], [-1.0, 0.0]])
    again = get_task("binary").compute([1, 0, 1, 0], outputs, business=flipped)
    assert again.values["business_value"] == pytest.approx(-0.75)


def test_multiclass_cost_matrix_hand_checked() -> None:
    # (actual, predicted): (a,a)=1, (b,c)=0, (c,a)=-3, (c,c)=4, (b,b)=2 -> 4 / 5
    result = get_task("multiclass").compute(
        ["a", "b", "c", "c", "b"],
        TaskOutputs(label=np.array(["a", "c", "a", "c", "b"])),
        business=_MULTICLASS_COSTS,
    )
    assert result.values["business_value"] == pytest.approx(4 / 5)
    assert get_task("multiclass").levels_for(business=_MULTICLASS_COSTS)[
        "business_value"
    ] == pytest.approx((0.03 * 7, 0.06 * 7))  # span: 4 - (-3)


def test_business_metric_only_when_configured() -> None:
    binary = get_task("binary")
    assert "roi" not in binary.metrics_for(None)
    assert "business_value" not in binary.metrics_for(None)
    assert binary.metrics_for(Roi(odds=np.array([2.0])))[-1] == "roi"
    assert binary.metrics_for(_BINARY_COSTS)[-1] == "business_value"
    assert binary.monitored_for(_BINARY_COSTS)[-1] == "business_value"
    result = binary.compute([1, 0], TaskOutputs(proba=np.array([0.8, 0.1])))
    assert "roi" not in result.values and "business_value" not in result.values


@pytest.mark.parametrize(
    ("task", "business", "fragment"),
    [
        ("multiclass", Roi(odds=np.array([2.0])), "Roi business value does not apply to"),
        ("regression", _BINARY_COSTS, "CostMatrix business value does not apply to"),
        ("binary", "roi", "business must be None, Roi or CostMatrix, got str"),
    ],
)
def test_business_value_must_fit_the_task(task: str, business: object, fragment: str) -> None:
    with pytest.raises(MetricInputError, match=re.escape(fragment)):
        get_task(task).metrics_for(business)  # type: ignore[arg-type]


# --- bootstrap --------------------------------------------------------------------------------


def _bootstrap_cases() -> list[tuple[str, np.ndarray, TaskOutputs, object]]:
    y, proba = _seeded_binary(n=2000)
    odds = np.random.default_rng(4).uniform(1.5, 3.5, size=y.size)
    ym, pm, classes = _seeded_multiclass(n=2000)
    yr, score = _seeded_regression(n=2000)
    return [
        ("binary", y, TaskOutputs(proba=proba), Roi(odds=odds)),
        ("multiclass", ym, TaskOutputs(proba=pm, classes=classes), _MULTICLASS_COSTS_4),
        ("regression", yr, TaskOutputs(score=score), None),
    ]


_MULTICLASS_COSTS_4 = CostMatrix(
    classes=("ant", "bee", "cat", "dog"),
    values=[[1, -1, -1, -1], [-1, 1, -1, -1], [-1, -1, 1, -1], [-2, -2, -2, 3]],
)


@pytest.mark.parametrize("case", _bootstrap_cases(), ids=lambda c: c[0])
def test_bootstrap_std_shrinks_with_sample_size(
    case: tuple[str, np.ndarray, TaskOutputs, object],
) -> None:
    name, y, outputs, business = case
    task = get_task(name)
    small = task.bootstrap_std(y, outputs, business=business, n_boot=60, sample_size=100)
    large = task.bootstrap_std(y, outputs, business=business, n_boot=60, sample_size=1600)
    assert set(small) == set(large) == set(task.metrics_for(business))  # type: ignore[arg-type]
    for metric in small:
        # noise scales as 1/sqrt(n): 16x the rows is ~4x less noise
        assert 0 < large[metric] < small[metric] / 2, metric
    again = task.bootstrap_std(y, outputs, business=business, n_boot=60, sample_size=100)
    assert again == small  # seeded


def test_bootstrap_leaves_out_metrics_it_cannot_compute() -> None:
    y, proba = _seeded_binary()
    std = get_task("binary").bootstrap_std(y, TaskOutputs(label=(proba > 0.5).astype(int)))
    assert set(std) == {"accuracy", "precision", "recall", "f1"}
    yr, score = _seeded_regression()
    yr[:5] = 0.0
    std = get_task("regression").bootstrap_std(yr, TaskOutputs(score=score), n_boot=20)
    assert "mape" not in std and set(std) == {"mae", "rmse", "r2"}


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"n_boot": 1}, "n_boot must be an integer >= 2"),
        ({"n_boot": True}, "n_boot must be an integer >= 2"),
        ({"sample_size": 0}, "sample_size must be a positive integer"),
        ({"sample_size": 2.5}, "sample_size must be a positive integer"),
    ],
)
def test_bootstrap_rejects_bad_settings(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(MetricInputError, match=fragment):
        get_task("regression").bootstrap_std([1.0, 2.0], TaskOutputs(score=[1.0, 2.0]), **kwargs)


# --- validation -------------------------------------------------------------------------------

_P3 = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
_ABC = ("a", "b", "c")


@pytest.mark.parametrize(
    ("task", "y", "outputs", "business", "fragment"),
    [
        ("binary", [], TaskOutputs(proba=np.array([])), None, "empty input"),
        ("binary", [1, 0], TaskOutputs(proba=np.array([0.5])), None, "length mismatch: y_true"),
        ("binary", [1, 0], TaskOutputs(label=np.array([1])), None, "label has 1"),
        (
            "binary",
            [1, 0],
            TaskOutputs(proba=np.array([0.5, np.nan])),
            None,
            "proba contains 1 NaN",
        ),
        (
            "binary",
            [1, np.nan],
            TaskOutputs(proba=np.array([0.5, 0.5])),
            None,
            "y_true contains 1 NaN",
        ),
        ("binary", [1, 0], TaskOutputs(proba=np.array([0.5, 1.2])), None, "outside [0, 1]"),
        (
            "binary",
            [1, 2],
            TaskOutputs(proba=np.array([0.5, 0.5])),
            None,
            "y_true must contain only 0/1",
        ),
        (
            "binary",
            [1, 0],
            TaskOutputs(label=np.array([1, 3])),
            None,
            "label must contain only 0/1",
        ),
        (
            "binary",
            [1, 0],
            TaskOutputs(),
            None,
            "needs outputs.proba (P(positive)) or outputs.label",
        ),
        (
            "binary",
            [1, 0],
            TaskOutputs(proba=np.array([[0.5, 0.5], [0.1, 0.9]])),
            None,
            "binary proba must be P(positive) with shape (n,)",
        ),
        (
            "binary",
            [1, 0],
            TaskOutputs(proba=np.array([0.5, 0.5])),
            Roi(odds=np.array([2.0])),
            "y_true has 2 values, odds has 1",
        ),
        (
            "binary",
            [1, 0],
            TaskOutputs(proba=np.array([0.5, 0.5])),
            Roi(odds=np.array([2.0, 0.5])),
            "odds must be decimal odds > 1",
        ),
        (
            "binary",
            [1, 0],
            TaskOutputs(proba=np.array([0.5, 0.5])),
            _MULTICLASS_COSTS,
            "a binary cost matrix needs classes ('0', '1')",
        ),
        ("multiclass", [], TaskOutputs(label=np.array([])), None, "empty input"),
        (
            "multiclass",
            ["a", "b"],
            TaskOutputs(proba=_P3),
            None,
            "multiclass proba needs outputs.classes",
        ),
        (
            "multiclass",
            ["a", "b"],
            TaskOutputs(proba=_P3, classes=("a", "b")),
            None,
            "proba has 3 columns but classes names 2",
        ),
        (
            "multiclass",
            ["a", "b"],
            TaskOutputs(proba=_P3, classes=("a", "b", "a")),
            None,
            "classes must be unique; repeated: ['a']",
        ),
        # 1 and "1" are the same class once compared as strings
        (
            "multiclass",
            ["a", "b"],
            TaskOutputs(proba=_P3, classes=(1, "1", "b")),
            None,
            "repeated: ['1']",
        ),
        (
            "multiclass",
            ["a", "b"],
            TaskOutputs(proba=_P3, classes=("a", None, "c")),
            None,
            "classes must not contain empty or missing names",
        ),
        (
            "multiclass",
            ["a", "b"],
            TaskOutputs(proba=_P3[:, :2], classes=("a", "b")),
            None,
            "proba rows must sum to 1 (tolerance 0.001); 2 row(s)",
        ),
        # row 0 sums to 1.0005, within tolerance; row 1 to 1.0015, outside
        (
            "multiclass",
            ["a", "b"],
            TaskOutputs(proba=_P3 * [1, 1, 1.005], classes=_ABC),
            None,
            "1 row(s) do not, e.g. row 1 sums to 1.0015",
        ),
        (
            "multiclass",
            ["a", "b"],
            TaskOutputs(proba=np.array([[1.2, -0.2, 0], [0.2, 0.5, 0.3]]), classes=_ABC),
            None,
            "proba contains 2 value(s) outside [0, 1]",
        ),
        (
            "multiclass",
            ["a", "b"],
            TaskOutputs(proba=np.where(_P3 == 0.1, np.nan, _P3), classes=_ABC),
            None,
            "proba contains 1 NaN/inf",
        ),
        (
            "multiclass",
            ["a", "z"],
            TaskOutputs(proba=_P3, classes=_ABC),
            None,
            "y_true has 1 label(s) not in classes ('a', 'b', 'c'): e.g. ['z']",
        ),
        (
            "multiclass",
            ["a", "b"],
            TaskOutputs(proba=_P3, label=np.array(["a", "q"]), classes=_ABC),
            None,
            "label has 1 label(s) not in classes",
        ),
        (
            "multiclass",
            ["a", None],
            TaskOutputs(proba=_P3, classes=_ABC),
            None,
            "y_true contains 1 missing label(s)",
        ),
        (
            "multiclass",
            ["a", "b", "c"],
            TaskOutputs(proba=_P3, classes=_ABC),
            None,
            "length mismatch: y_true has 3 values, proba has 2",
        ),
        (
            "multiclass",
            ["a", "b"],
            TaskOutputs(proba=_P3[0], classes=_ABC),
            None,
            "multiclass proba must have shape (n, k)",
        ),
        (
            "multiclass",
            ["a", "b"],
            TaskOutputs(),
            None,
            "needs outputs.proba (with outputs.classes) or outputs.label",
        ),
        (
            "multiclass",
            ["a", "d"],
            TaskOutputs(label=np.array(["a", "d"])),
            _MULTICLASS_COSTS,
            "y_true has label(s) ['d'] not in the cost matrix classes",
        ),
        ("regression", [], TaskOutputs(score=[]), None, "empty input"),
        (
            "regression",
            [1.0, 2.0],
            TaskOutputs(score=[1.0]),
            None,
            "y_true has 2 values, score has 1",
        ),
        (
            "regression",
            [1.0, np.inf],
            TaskOutputs(score=[1.0, 2.0]),
            None,
            "y_true contains 1 NaN/inf",
        ),
        (
            "regression",
            [1.0, 2.0],
            TaskOutputs(score=[np.nan, 2.0]),
            None,
            "score contains 1 NaN/inf",
        ),
        (
            "regression",
            [1.0, 2.0],
            TaskOutputs(proba=np.array([0.1, 0.2])),
            None,
            "regression task needs outputs.score",
        ),
        ("regression", [1.0, 2.0], [1.0, 2.0], None, "outputs must be a TaskOutputs, got list"),
    ],
)
def test_bad_input_names_the_problem(
    task: str, y: object, outputs: TaskOutputs, business: object, fragment: str
) -> None:
    with pytest.raises(MetricInputError, match=re.escape(fragment)):
        get_task(task).compute(y, outputs, business=business)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: CostMatrix(("a",), [[1.0]]), "at least 2 non-empty names"),
        (lambda: CostMatrix(("a", "a"), [[1, 0], [0, 1]]), "unique; repeated: ['a']"),
        (lambda: CostMatrix(("a", "b"), [[1, 0]]), "must be 2 rows of 2 numbers"),
        (lambda: CostMatrix(("a", "b"), [[1, 0], [0, math.nan]]), "contain 1 NaN/inf"),
        (lambda: CostMatrix(("a", "b"), [[1, "x"], [0, 1]]), "must be numeric"),
        (lambda: Roi(odds=np.array([2.0]), value_margin=-0.1), "value_margin must be a finite"),
    ],
)
def test_bad_business_config_names_the_problem(make: Callable[[], object], fragment: str) -> None:
    with pytest.raises(MetricInputError, match=re.escape(fragment)):
        make()


# --- degradation for any task -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "higher_is_better", "observed", "baseline", "expected"),
    [
        ("mae", False, 12.0, 10.0, 2.0),  # error grew: worse
        ("r2", True, 0.4, 0.5, 0.1),
        ("f1_macro", True, 0.8, 0.7, -0.1),  # improvement is negative
        ("business_value", True, -0.5, -0.25, 0.25),
    ],
)
def test_degradation_for_any_metric(
    metric: str, higher_is_better: bool, observed: float, baseline: float, expected: float
) -> None:
    absolute, relative = degradation(metric, observed, baseline, higher_is_better)
    assert absolute == pytest.approx(expected)
    assert relative == pytest.approx(expected / abs(baseline))
    names = ("binary", "multiclass", "regression")
    task = next(get_task(n) for n in names if metric in get_task(n).higher_is_better)
    assert task.degradation(metric, observed, baseline) == (absolute, relative)


def test_thresholds_and_severity_accept_task_metrics_with_a_direction() -> None:
    warning, critical = thresholds_for(
        "rmse",
        baseline=30.0,
        baseline_std=2.0,
        n_current=100,
        n_baseline=400,
        warning_abs=3.0,
        critical_abs=6.0,
        higher_is_better=False,
    )
    assert (warning, critical) == pytest.approx((8.0, 12.0))  # 2 * 2 * sqrt(4), 3 * 2 * 2
    assert (
        severity_for(
            "rmse",
            degradation_abs=9.0,
            warning_threshold=warning,
            critical_threshold=critical,
            higher_is_better=False,
        )
        == "warning"
    )
    # without a direction only the binary metric names are known, as before
    with pytest.raises(MetricInputError, match="unknown metric 'rmse'"):
        severity_for("rmse", degradation_abs=1.0, warning_threshold=1.0, critical_threshold=2.0)
