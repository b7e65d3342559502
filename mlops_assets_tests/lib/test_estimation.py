"""Label-free performance estimation (lib.estimation) and drift impact ranking (lib.impact)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from mlops_assets.lib.estimation import (
    BINARY_METRICS,
    MULTICLASS_METRICS,
    Band,
    Calibrator,
    EstimationError,
    estimate,
    fit_calibrator,
    realised_metrics,
    reference_band,
)
from mlops_assets.lib.impact import ImpactError, rank_feature_impact, sample_rows

WEIGHTS = np.array([2.0, 1.0, -0.5])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def calibrated_day(
    rng: np.random.Generator, n: int, *, shift: float = 0.0, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """A perfectly calibrated binary model: its score is the true P(y = 1 | x)."""
    x = rng.normal(shift, scale, size=(n, 3))
    p = _sigmoid(x @ WEIGHTS)
    y = (rng.uniform(size=n) < p).astype(np.int64)
    return y, p


def softmax_day(
    rng: np.random.Generator, n: int, coef: np.ndarray, *, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(0.0, scale, size=(n, coef.shape[0]))
    logits = x @ coef
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    y = (rng.uniform(size=(n, 1)) > np.cumsum(proba, axis=1)).sum(axis=1)
    return y, proba


@pytest.fixture(scope="module")
def binary_setup() -> tuple[Calibrator, Band]:
    rng = np.random.default_rng(7)
    y_fit, p_fit = calibrated_day(rng, 10_000)
    y_band, p_band = calibrated_day(rng, 10_000)
    calibrator = fit_calibrator(y_fit, p_fit)
    # the band comes from rows the calibrator did not see, as the docstring advises
    return calibrator, reference_band(calibrator, y_band, p_band, 1000)


def test_calibrated_model_estimates_fall_in_band_on_95_percent_of_days(binary_setup) -> None:
    calibrator, band = binary_setup
    rng = np.random.default_rng(11)
    inside = dict.fromkeys(BINARY_METRICS, 0)
    days = 100
    for _ in range(days):
        # day sizes vary so the band's 1/sqrt(n) rescaling is exercised, not just chunk_size
        y, p = calibrated_day(rng, int(rng.integers(400, 2500)))
        result = estimate(calibrator, p, band=band)
        real = realised_metrics(calibrator, y, p)
        for metric in BINARY_METRICS:
            inside[metric] += result.lower[metric] <= real[metric] <= result.upper[metric]
    assert all(count >= 95 for count in inside.values()), inside
    # a band is useful only if it is narrow: z * std at 1000 rows stays within a few points
    assert all(band.half_width(m, 1000) < 0.05 for m in BINARY_METRICS), band.std


def test_covariate_shift_that_lowers_accuracy_lowers_the_estimate_same_day(binary_setup) -> None:
    calibrator, band = binary_setup
    rng = np.random.default_rng(3)
    y0, p0 = calibrated_day(rng, 2000)
    # inputs squeezed towards the decision boundary: the same P(y|x), harder cases
    y1, p1 = calibrated_day(rng, 2000, scale=0.35)
    real0 = realised_metrics(calibrator, y0, p0)["accuracy"]
    real1 = realised_metrics(calibrator, y1, p1)["accuracy"]
    est0 = estimate(calibrator, p0, band=band)
    est1 = estimate(calibrator, p1, band=band)
    assert real0 - real1 > 0.1
    assert est0.values["accuracy"] - est1.values["accuracy"] > 0.1
    assert est1.lower["accuracy"] <= real1 <= est1.upper["accuracy"]
    assert est1.values["roc_auc"] < est0.values["roc_auc"] - 0.05


def test_miscalibrated_model_is_corrected_by_the_calibrator() -> None:
    rng = np.random.default_rng(5)
    y_fit, p_fit = calibrated_day(rng, 20_000)
    y, p = calibrated_day(rng, 5000)
    # an overconfident model: the same ranking, probabilities pushed to the extremes
    distort = lambda q: _sigmoid(3.0 * np.log(q / (1.0 - q)))  # noqa: E731
    calibrator = fit_calibrator(y_fit, distort(p_fit))
    real = realised_metrics(calibrator, y, distort(p))
    est = estimate(calibrator, distort(p)).values
    naive = np.mean(np.maximum(distort(p), 1.0 - distort(p)))
    assert abs(est["accuracy"] - real["accuracy"]) < 0.015
    assert abs(naive - real["accuracy"]) > 0.05  # would fail if calibration were skipped
    assert abs(est["roc_auc"] - real["roc_auc"]) < 0.015


def test_expected_confusion_matrix_adds_up(binary_setup) -> None:
    calibrator, _ = binary_setup
    _, p = calibrated_day(np.random.default_rng(1), 1500)
    result = estimate(calibrator, p, threshold=0.3)
    confusion = np.array(result.confusion)
    calibrated = calibrator.calibrate(p)
    assert confusion.sum() == pytest.approx(1500)
    assert confusion[1].sum() == pytest.approx(calibrated.sum())  # expected positives
    assert confusion[:, 1].sum() == pytest.approx(np.count_nonzero(p >= 0.3))
    assert result.values["accuracy"] == pytest.approx(np.trace(confusion) / 1500)


def test_realised_metrics_agree_with_scikit_learn() -> None:
    rng = np.random.default_rng(2)
    y, p = calibrated_day(rng, 3000)
    calibrator = fit_calibrator(y, p)
    real = realised_metrics(calibrator, y, p, threshold=0.4)
    predicted = (p >= 0.4).astype(int)
    assert real["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert real["precision"] == pytest.approx(skm.precision_score(y, predicted))
    assert real["recall"] == pytest.approx(skm.recall_score(y, predicted))
    assert real["f1"] == pytest.approx(skm.f1_score(y, predicted))
    assert real["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))

    coef = rng.normal(0.0, 1.5, size=(4, 3))
    y3, p3 = softmax_day(rng, 3000, coef)
    cal3 = fit_calibrator(y3, p3)
    real3 = realised_metrics(cal3, y3, p3)
    pred3 = p3.argmax(axis=1)
    assert real3["accuracy"] == pytest.approx(skm.accuracy_score(y3, pred3))
    assert real3["f1_macro"] == pytest.approx(skm.f1_score(y3, pred3, average="macro"))
    assert real3["precision_macro"] == pytest.approx(
        skm.precision_score(y3, pred3, average="macro")
    )
    assert real3["recall_macro"] == pytest.approx(skm.recall_score(y3, pred3, average="macro"))
    assert real3["roc_auc_ovr"] == pytest.approx(skm.roc_auc_score(y3, p3, multi_class="ovr"))


def test_multiclass_estimates_track_realised_on_generated_days() -> None:
    rng = np.random.default_rng(9)
    coef = rng.normal(0.0, 1.5, size=(4, 3))
    y_fit, p_fit = softmax_day(rng, 10_000, coef)
    y_band, p_band = softmax_day(rng, 10_000, coef)
    classes = ["away", "draw", "home"]
    labels = np.array(classes)
    calibrator = fit_calibrator(labels[y_fit], p_fit, classes=classes)
    assert calibrator.kind == "multiclass" and calibrator.classes == tuple(classes)
    band = reference_band(calibrator, labels[y_band], p_band, 1000)
    inside = dict.fromkeys(MULTICLASS_METRICS, 0)
    for _ in range(40):
        y, p = softmax_day(rng, 1000, coef)
        result = estimate(calibrator, p, band=band)
        real = realised_metrics(calibrator, labels[y], p)
        assert set(result.values) == set(MULTICLASS_METRICS)
        for metric in MULTICLASS_METRICS:
            inside[metric] += result.lower[metric] <= real[metric] <= result.upper[metric]
    assert all(count >= 38 for count in inside.values()), inside

    # a shift towards ambiguous inputs lowers both, as for binary
    y_low, p_low = softmax_day(rng, 3000, coef, scale=0.3)
    drop_real = real["accuracy"] - realised_metrics(calibrator, labels[y_low], p_low)["accuracy"]
    drop_est = result.values["accuracy"] - estimate(calibrator, p_low).values["accuracy"]
    assert drop_real > 0.1 and drop_est > 0.1


def test_multiclass_on_iris() -> None:
    x, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(y.size)
    train, rest = order[:60], order[60:]
    model = LogisticRegression(max_iter=1000, C=0.05).fit(x[train], y[train])
    proba = model.predict_proba(x[rest])
    calibrator = fit_calibrator(y[rest], proba)
    result = estimate(calibrator, proba)
    real = realised_metrics(calibrator, y[rest], proba)
    assert np.allclose(calibrator.calibrate(proba).sum(axis=1), 1.0)
    for metric in MULTICLASS_METRICS:
        assert abs(result.values[metric] - real[metric]) < 0.1, metric


def test_calibrator_and_band_survive_a_json_round_trip(binary_setup) -> None:
    calibrator, band = binary_setup
    text = calibrator.to_json()
    again = Calibrator.from_json(json.loads(json.dumps(text)))
    _, p = calibrated_day(np.random.default_rng(4), 500)
    assert np.array_equal(again.calibrate(p), calibrator.calibrate(p))
    assert again.classes == calibrator.classes and again.n_rows == calibrator.n_rows
    band_again = Band.from_dict(json.loads(json.dumps(band.to_dict())))
    assert estimate(again, p, band=band_again) == estimate(calibrator, p, band=band)

    rng = np.random.default_rng(8)
    y3, p3 = softmax_day(rng, 2000, rng.normal(size=(3, 4)))
    cal3 = fit_calibrator(y3, p3)
    assert np.array_equal(Calibrator.from_json(cal3.to_json()).calibrate(p3), cal3.calibrate(p3))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        # knots must describe a non-decreasing function of the score
        (lambda d: d["maps"][0].update(y=d["maps"][0]["y"][::-1]), "maps\\[0\\]"),
        (lambda d: d["maps"][0].update(x=d["maps"][0]["x"][:-1]), "maps\\[0\\]"),
        (lambda d: d.update(kind="regression"), "kind"),
        (lambda d: d.update(method="platt"), "method"),
        (lambda d: d.update(maps=[]), "maps"),
    ],
)
def test_corrupt_calibrator_json_is_rejected(binary_setup, mutate, message) -> None:
    data = json.loads(binary_setup[0].to_json())
    mutate(data)
    with pytest.raises(EstimationError, match=message):
        Calibrator.from_dict(data)


@pytest.mark.parametrize(
    ("y", "proba", "message"),
    [
        ([0, 1] * 10, [0.3, 0.7] * 10, "at least 50 labelled rows"),
        # 60 rows but only 3 positives: a one-vs-rest map needs both sides
        ([1] * 3 + [0] * 57, [0.5] * 60, "class '1' needs at least 10 rows"),
        ([0, 1, 2] * 20, [0.5] * 60, "not in classes"),
        ([0, 1] * 30, [0.5] * 59 + [1.5], "outside \\[0, 1\\]"),
        ([0, 1] * 30, [0.5] * 59 + [float("nan")], "NaN"),
        ([0, 1] * 30, [0.5] * 50, "length mismatch"),
    ],
)
def test_degenerate_calibration_data_raise_a_clear_error(y, proba, message) -> None:
    with pytest.raises(EstimationError, match=message):
        fit_calibrator(y, proba)


def test_multiclass_rows_must_sum_to_one_and_match_the_classes(binary_setup) -> None:
    rng = np.random.default_rng(1)
    y, p = softmax_day(rng, 600, rng.normal(size=(3, 3)))
    with pytest.raises(EstimationError, match="names 2 classes"):
        fit_calibrator(y, p, classes=["a", "b"])
    with pytest.raises(EstimationError, match="sum to 1"):
        fit_calibrator(y, p * 0.9)
    with pytest.raises(EstimationError, match="shape \\(n, 3\\)"):
        estimate(fit_calibrator(y, p), p[:, :2] / p[:, :2].sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class _Roi:
    odds: np.ndarray
    value_margin: float = 0.0


@dataclass(frozen=True)
class _Costs:
    classes: tuple[str, ...]
    matrix: np.ndarray


def test_business_value_estimates(binary_setup) -> None:
    calibrator, _ = binary_setup
    rng = np.random.default_rng(12)
    y_band, p_band = calibrated_day(rng, 5000)
    odds_band = 1.0 / np.clip(p_band + rng.normal(0, 0.08, p_band.size), 0.05, 0.95)
    band = reference_band(calibrator, y_band, p_band, 1000, business=_Roi(odds_band, 0.05))
    errors, inside = [], 0
    for _ in range(30):
        y, p = calibrated_day(rng, 1000)
        # a bookmaker whose own estimate is noisy: the model finds value on some rows
        odds = 1.0 / np.clip(p + rng.normal(0, 0.08, p.size), 0.05, 0.95)
        roi = _Roi(odds, 0.05)
        est = estimate(calibrator, p, business=roi, band=band)
        real = realised_metrics(calibrator, y, p, business=roi)["roi"]
        errors.append(est.values["roi"] - real)
        inside += est.lower["roi"] <= real <= est.upper["roi"]
        assert est.expected_bets == np.count_nonzero(p * odds > 1.05)
    assert abs(np.mean(errors)) < 0.05 and inside >= 28

    # with the identity as value matrix, value per prediction is accuracy; the matrix's class
    # order differs from the model's on purpose
    identity = _Costs(("1", "0"), np.eye(2))
    y, p = calibrated_day(rng, 1000)
    est = estimate(calibrator, p, business=identity)
    assert est.values["business_value"] == pytest.approx(est.values["accuracy"])
    # a false negative costs 5, a false positive 1: expected value from the expected matrix
    costs = _Costs(("0", "1"), np.array([[0.0, -1.0], [-5.0, 1.0]]))
    est = estimate(calibrator, p, business=costs)
    (_tn, fp), (fn, tp) = est.confusion
    assert est.values["business_value"] == pytest.approx((-fp - 5 * fn + tp) / 1000)
    real = realised_metrics(calibrator, y, p, business=costs)["business_value"]
    predicted = p >= 0.5
    expected_real = (
        -np.sum(predicted & (y == 0))
        - 5 * np.sum(~predicted & (y == 1))
        + np.sum(predicted & (y == 1))
    ) / 1000
    assert real == pytest.approx(expected_real)
    with pytest.raises(EstimationError, match="lack model class"):
        estimate(calibrator, p, business=_Costs(("0", "2"), np.eye(2)))


def test_band_rescales_with_batch_size() -> None:
    band = Band(chunk_size=1000, std={"accuracy": 0.01}, n_chunks=200)
    assert band.half_width("accuracy", 4000) == pytest.approx(3.0 * 0.01 / 2.0)
    assert band.half_width("roc_auc", 4000) is None


# --------------------------------------------------------------------------- impact


def _impact_model(frame: pd.DataFrame) -> np.ndarray:
    # a and c matter equally, b hardly at all; calibrated by construction
    z = 2.5 * frame["a"].to_numpy() + 2.5 * frame["c"].to_numpy() + 0.05 * frame["b"].to_numpy()
    return _sigmoid(z)


def test_impact_ranks_the_shifted_important_feature_first() -> None:
    rng = np.random.default_rng(21)
    n = 8000
    reference = pd.DataFrame(
        {
            "a": rng.normal(0, 1, n),
            "b": rng.normal(0, 1, n),
            "c": rng.normal(0, 1, n),
            "team": rng.choice(["x", "y", "z"], n),
        }
    )
    y_ref = (rng.uniform(size=n) < _impact_model(reference)).astype(int)
    calibrator = fit_calibrator(y_ref, _impact_model(reference))
    current = pd.DataFrame(
        {
            # a squeezed to the boundary costs accuracy; b moves far but barely matters
            "a": rng.normal(0, 0.1, n),
            "b": rng.normal(4, 1, n),
            "c": rng.normal(0, 1, n),
            "team": rng.choice(["x", "y", "z"], n, p=[0.8, 0.1, 0.1]),
        }
    )
    ranking = rank_feature_impact(_impact_model, calibrator, reference, current)
    assert ranking[0].feature == "a"
    impacts = dict(ranking)
    # E[max(p, 1 - p)] for a logit with std 3.5 (reference) vs 2.5 (current) differs by ~0.05
    assert impacts["a"] > 0.03
    assert all(abs(impacts[f]) < 0.02 for f in ("b", "c", "team")), impacts

    # the same with roc_auc and the resampling method
    by_auc = rank_feature_impact(
        _impact_model,
        calibrator,
        reference,
        current,
        ["b", "a"],
        metric="roc_auc",
        method="resample",
        max_rows=2000,
    )
    assert by_auc[0].feature == "a" and by_auc[0].impact > 0.02


def test_impact_of_the_kept_sample_is_the_impact_of_the_day() -> None:
    """The drift asset keeps only the rows `sample_rows` chooses of a large day (its tests
    sort the day's columns in place): ranked on those rows, the impacts are the ones of
    the whole day, the categorical restore's random draws included."""
    rng = np.random.default_rng(5)
    n = 3000

    def frame(shift: float, p: list[float]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "a": rng.normal(shift, 1, n),
                "b": rng.normal(0, 1, n),
                "c": rng.normal(0, 1, n),
                "team": rng.choice(["x", "y", "z"], n, p=p),
            }
        )

    reference, current = frame(0, [0.4, 0.3, 0.3]), frame(0.8, [0.8, 0.1, 0.1])
    y_ref = (rng.uniform(size=n) < _impact_model(reference)).astype(int)
    calibrator = fit_calibrator(y_ref, _impact_model(reference))
    options = {"max_rows": 700, "method": "resample", "seed": 3}
    whole = rank_feature_impact(_impact_model, calibrator, reference, current, **options)
    rows = sample_rows(len(current), 700, seed=3)
    assert rows is not None and len(rows) == 700 and (np.diff(rows) > 0).all()
    kept = current.iloc[rows]
    assert rank_feature_impact(_impact_model, calibrator, reference, kept, **options) == whole
    assert sample_rows(700, 700) is None  # a small day is kept whole


def test_impact_rejects_unknown_features_and_metrics() -> None:
    frame = pd.DataFrame({"a": np.linspace(-2, 2, 100), "b": 0.0, "c": 0.0})
    y = (np.arange(100) % 2).astype(int)
    calibrator = fit_calibrator(y, _impact_model(frame))
    with pytest.raises(ImpactError, match="\\['d'\\] not in the reference"):
        rank_feature_impact(_impact_model, calibrator, frame, frame, ["a", "d"])
    with pytest.raises(ImpactError, match="f1_macro"):
        rank_feature_impact(_impact_model, calibrator, frame, frame, ["a"], metric="f1_macro")


def test_multiclass_business_value_and_roi_refusal() -> None:
    rng = np.random.default_rng(13)
    coef = rng.normal(0.0, 1.5, size=(4, 3))
    y, p = softmax_day(rng, 3000, coef)
    classes = ("a", "b", "c")
    calibrator = fit_calibrator(np.array(classes)[y], p, classes=classes)
    est = estimate(calibrator, p, business=_Costs(("c", "a", "b"), np.eye(3)))
    assert est.values["business_value"] == pytest.approx(est.values["accuracy"])
    # predicting "a" when the truth is "c" costs 10; every other mistake 1
    values = -1.0 + np.eye(3)
    values[2, 0] = -10.0
    costs = _Costs(classes, values)
    expected = float(np.sum(np.array(estimate(calibrator, p).confusion) * values) / 3000)
    assert estimate(calibrator, p, business=costs).values["business_value"] == pytest.approx(
        expected
    )
    real = realised_metrics(calibrator, np.array(classes)[y], p, business=costs)
    assert real["business_value"] == pytest.approx(values[y, p.argmax(axis=1)].mean())
    with pytest.raises(EstimationError, match="roi \\(odds\\) is for binary"):
        estimate(calibrator, p, business=_Roi(np.full(3000, 2.0)))


def test_an_estimated_verdict_is_stored_capped_with_what_was_judged():
    from mlops_assets.lib.evaluation import capped_estimate

    stored = capped_estimate("critical", "warning")
    assert stored["level"] == "warning"
    assert "judged critical, capped at warning" in stored["note"]
    assert capped_estimate("warning", "warning") == {"level": "warning"}
    assert capped_estimate("ok", "info") == {"level": "ok"}
    assert capped_estimate("critical", "critical") == {"level": "critical"}
    assert capped_estimate("warning", "info")["level"] == "info"
