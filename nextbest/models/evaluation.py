"""Causal evaluation: response-model quality, uplift ranking quality and policy value.

Pure functions over numpy arrays. Conventions:

* ``y`` is the observed outcome (binary 0/1 or continuous such as spend);
* ``treatment`` in the two-arm uplift metrics is 1 for the treated arm and 0 for control;
* ``arms`` in the policy functions are the logged arm labels (any hashable labels, the
  control arm included) and ``policy`` holds the arm label a policy chooses for each row;
* ``propensity`` is the probability with which the logging policy chose the *logged* arm
  (for a randomised campaign with three equal arms, 1/3 for every row).

The uplift curve metrics reproduce scikit-uplift 0.5 (``sklift.metrics``) exactly for
binary outcomes, and extend to continuous outcomes with the same formulas.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import auc, log_loss, roc_auc_score

from nextbest.core.vocabulary import NO_ACTION
from nextbest.models.ope_estimators import DR, IPS, SNIPS

__all__ = [
    "auuc_score",
    "calibration_table",
    "evaluate_policies",
    "expected_calibration_error",
    "qini_auc_score",
    "qini_curve",
    "response_metrics",
    "uplift_at_k",
    "uplift_auc_score",
    "uplift_curve",
    "uplift_metrics",
    "uplift_policy",
]


# --- response models ---------------------------------------------------------------------


def calibration_table(
    y: np.ndarray, p: np.ndarray, n_bins: int = 10, strategy: str = "quantile"
) -> pd.DataFrame:
    """Binned reliability table of predicted probabilities ``p`` against outcomes ``y``.

    Bins are equal-width on [0, 1] (``strategy="uniform"``) or hold equal counts
    (``"quantile"``). Returns one row per non-empty bin with ``bin, n, mean_predicted,
    observed_rate, lower, upper``.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)))
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows = []
    for b in np.unique(idx):
        m = idx == b
        rows.append(
            {
                "bin": int(b),
                "n": int(m.sum()),
                "mean_predicted": float(p[m].mean()),
                "observed_rate": float(y[m].mean()),
                "lower": float(edges[b]),
                "upper": float(edges[min(b + 1, len(edges) - 1)]),
            }
        )
    return pd.DataFrame(rows)


def expected_calibration_error(
    y: np.ndarray, p: np.ndarray, n_bins: int = 10, strategy: str = "quantile"
) -> float:
    """ECE: count-weighted mean of |observed rate - mean predicted| over the bins."""
    table = calibration_table(y, p, n_bins=n_bins, strategy=strategy)
    w = table["n"].to_numpy() / table["n"].sum()
    return float(np.sum(w * np.abs(table["observed_rate"] - table["mean_predicted"])))


def response_metrics(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> dict[str, object]:
    """AUC, log-loss, ECE and the reliability table of one binary response model.

    AUC is NaN when ``y`` has a single class.
    """
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 1e-15, 1 - 1e-15)
    one_class = len(np.unique(y)) < 2
    return {
        "auc": float("nan") if one_class else float(roc_auc_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p, n_bins=n_bins),
        "mean_predicted": float(p.mean()),
        "observed_rate": float(y.mean()),
        "calibration": calibration_table(y, p, n_bins=n_bins),
    }


# --- uplift curves (two arms: treatment 1 vs control 0) -----------------------------------


def _sorted_cumulative(
    y: np.ndarray, uplift: np.ndarray, treatment: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative counts at each distinct score threshold, highest uplift first."""
    y = np.asarray(y, dtype=float)
    uplift = np.asarray(uplift, dtype=float)
    treatment = np.asarray(treatment).astype(int)
    if not (len(y) == len(uplift) == len(treatment)):
        raise ValueError(
            f"y, uplift and treatment differ in length: {len(y)}, {len(uplift)}, {len(treatment)}"
        )
    if not np.isin(treatment, (0, 1)).all():
        raise ValueError("treatment must be 0 (control) or 1 (treated)")
    # mergesort on the reversed order matches sklift's tie handling exactly
    order = np.argsort(uplift, kind="mergesort")[::-1]
    y, uplift, treatment = y[order], uplift[order], treatment[order]
    thresholds = np.r_[np.where(np.diff(uplift))[0], uplift.size - 1]
    num_trmnt = np.cumsum(treatment)[thresholds].astype(float)
    y_trmnt = np.cumsum(y * treatment)[thresholds]
    y_ctrl = np.cumsum(y * (1 - treatment))[thresholds]
    num_all = (thresholds + 1).astype(float)
    return num_all, num_trmnt, num_all - num_trmnt, y_trmnt, y_ctrl


def _prepend_origin(x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.size == 0 or v[0] != 0 or x[0] != 0:
        return np.r_[0.0, x], np.r_[0.0, v]
    return x, v


def qini_curve(
    y: np.ndarray, uplift: np.ndarray, treatment: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Qini curve: for the top ``n`` rows by predicted uplift,
    ``Y_t(n) - Y_c(n) * N_t(n) / N_c(n)`` (incremental responders, counts scaled to the
    treated size). Returns ``(n, value)`` at each distinct score, starting at (0, 0)."""
    n, nt, nc, yt, yc = _sorted_cumulative(y, uplift, treatment)
    v = yt - yc * np.divide(nt, nc, out=np.zeros_like(nt), where=nc != 0)
    return _prepend_origin(n, v)


def uplift_curve(
    y: np.ndarray, uplift: np.ndarray, treatment: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Uplift curve: for the top ``n`` rows, ``(Y_t/N_t - Y_c/N_c) * n`` (the difference
    in mean response among the targeted, times the number targeted)."""
    n, nt, nc, yt, yc = _sorted_cumulative(y, uplift, treatment)
    v = (
        np.divide(yt, nt, out=np.zeros_like(yt), where=nt != 0)
        - np.divide(yc, nc, out=np.zeros_like(yc), where=nc != 0)
    ) * n
    return _prepend_origin(n, v)


def _normalised_area(
    curve: tuple[np.ndarray, np.ndarray], perfect: tuple[np.ndarray, np.ndarray]
) -> float:
    x_p, y_p = perfect
    baseline = auc(np.array([0.0, x_p[-1]]), np.array([0.0, y_p[-1]]))
    return float((auc(*curve) - baseline) / (auc(x_p, y_p) - baseline))


def qini_auc_score(
    y: np.ndarray, uplift: np.ndarray, treatment: np.ndarray, negative_effect: bool = True
) -> float:
    """Qini coefficient: area between the Qini curve and the random-targeting diagonal,
    divided by the same area for the perfect Qini curve.

    The perfect curve ranks treated responders first and control responders last
    (``negative_effect=True``) or only counts the positive effect (``False``). Equals
    ``sklift.metrics.qini_auc_score`` for binary ``y``.
    """
    y = np.asarray(y, dtype=float)
    treatment = np.asarray(treatment).astype(int)
    if negative_effect:
        perfect = qini_curve(y, y * treatment - y * (1 - treatment), treatment)
    else:
        total = y[treatment == 1].sum() - (treatment == 1).sum() * y[treatment == 0].mean()
        perfect = (np.array([0.0, total, len(y)]), np.array([0.0, total, total]))
    return _normalised_area(qini_curve(y, uplift, treatment), perfect)


def uplift_auc_score(y: np.ndarray, uplift: np.ndarray, treatment: np.ndarray) -> float:
    """Normalised area under the uplift curve (AUUC): area between the uplift curve and the
    diagonal divided by that of the perfect uplift curve. Equals
    ``sklift.metrics.uplift_auc_score`` for binary ``y``."""
    y = np.asarray(y, dtype=float)
    treatment = np.asarray(treatment).astype(int)
    control_responders = np.sum((y > 0) & (treatment == 0))
    treated_nonresponders = np.sum((y == 0) & (treatment == 1))
    summand = y if control_responders > treated_nonresponders else treatment
    perfect_score = 2 * (y == treatment) + summand
    perfect = uplift_curve(y, perfect_score, treatment)
    return _normalised_area(uplift_curve(y, uplift, treatment), perfect)


auuc_score = uplift_auc_score


def uplift_at_k(y: np.ndarray, uplift: np.ndarray, treatment: np.ndarray, k: float = 0.3) -> float:
    """Uplift among the top fraction ``k`` of all rows by predicted uplift: mean outcome
    of treated minus mean outcome of control rows in that top slice (sklift's
    ``strategy="overall"``). NaN when the slice holds no treated or no control row."""
    if not 0 < k < 1:
        raise ValueError(f"k must be a fraction in (0, 1), got {k}")
    y = np.asarray(y, dtype=float)
    treatment = np.asarray(treatment).astype(int)
    order = np.argsort(np.asarray(uplift, dtype=float), kind="mergesort")[::-1]
    top = order[: int(len(y) * k)]
    yt, tt = y[top], treatment[top]
    if not (tt == 1).any() or not (tt == 0).any():
        return float("nan")
    return float(yt[tt == 1].mean() - yt[tt == 0].mean())


def uplift_metrics(
    y: np.ndarray,
    arms: np.ndarray,
    uplift: np.ndarray,
    arm_labels: Sequence[Hashable],
    control: Hashable,
    k: float = 0.3,
) -> pd.DataFrame:
    """Qini, AUUC and uplift@k of each treatment arm against control.

    ``uplift`` is ``[n, A]`` with one column per label in ``arm_labels`` (control
    excluded); each arm is scored on the rows logged in that arm or in control.
    """
    y = np.asarray(y, dtype=float)
    arms = np.asarray(arms)
    uplift = np.asarray(uplift, dtype=float).reshape(len(y), -1)
    rows = []
    for j, arm in enumerate(arm_labels):
        m = (arms == arm) | (arms == control)
        t = (arms[m] == arm).astype(int)
        rows.append(
            {
                "arm": arm,
                "n": int(m.sum()),
                "qini": qini_auc_score(y[m], uplift[m, j], t),
                "auuc": uplift_auc_score(y[m], uplift[m, j], t),
                f"uplift_at_{int(round(k * 100))}": uplift_at_k(y[m], uplift[m, j], t, k=k),
            }
        )
    return pd.DataFrame(rows)


# --- policy value ---------------------------------------------------------------------------


def uplift_policy(
    uplift: np.ndarray, arm_labels: Sequence[Hashable], control: Hashable, threshold: float = 0.0
) -> np.ndarray:
    """The policy "best arm by predicted uplift if that uplift > threshold, else control"."""
    uplift = np.asarray(uplift, dtype=float)
    labels = np.asarray(list(arm_labels), dtype=object)
    best = uplift.argmax(axis=1)
    chosen = labels[best]
    out = np.where(uplift[np.arange(len(uplift)), best] > threshold, chosen, control)
    return out


def evaluate_policies(
    arms: np.ndarray,
    y: np.ndarray,
    propensity: np.ndarray | float,
    arm_labels: Sequence[Hashable],
    control: Hashable,
    predicted_outcomes: np.ndarray,
    truth: np.ndarray | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Policy values of the model policy and the baselines, in one tidy table.

    ``arm_labels`` lists the treatment arms (control excluded); ``predicted_outcomes`` is
    ``[n, 1 + A]`` (control then each arm, as ``predict_outcomes`` returns). Policies:

    * ``no_action``: everyone gets control;
    * ``best_single_arm``: everyone gets the treatment arm with the highest IPS value on
      these rows (named in the ``detail`` column);
    * ``random_arm``: a uniformly random arm, control included (seeded);
    * ``response_ranking``: the arm with the highest predicted response under treatment,
      ignoring the control outcome, so everyone is treated (a response model, not uplift);
    * ``model``: the arm with the highest predicted uplift when it is > 0, else control.

    Each row has IPS value and SE, SNIPS value, DR value and SE (direct method = the
    model's predicted outcomes), the share treated; when ``truth`` (``[n, 1 + A]`` true
    expected outcomes, same column order) is given also the true value and the regret
    against the true best policy (``mean(max_k truth) - mean(truth[pi])``).
    """
    arms = np.asarray(arms)
    y = np.asarray(y, dtype=float)
    labels = [control, *arm_labels]
    q = np.asarray(predicted_outcomes, dtype=float)
    if q.shape != (len(y), len(labels)):
        raise ValueError(f"predicted_outcomes must be {(len(y), len(labels))}, got {q.shape}")
    n = len(y)
    label_arr = np.asarray(labels, dtype=object)
    single = {
        a: IPS().evaluate(np.full(n, a, dtype=object), arms, y, propensity).value
        for a in arm_labels
    }
    best_arm = max(single, key=single.__getitem__)
    rng = np.random.default_rng(seed)
    policies: dict[str, tuple[np.ndarray, str]] = {
        NO_ACTION: (np.full(n, control, dtype=object), ""),
        "best_single_arm": (np.full(n, best_arm, dtype=object), str(best_arm)),
        "random_arm": (label_arr[rng.integers(0, len(labels), size=n)], ""),
        "response_ranking": (label_arr[1 + q[:, 1:].argmax(axis=1)], ""),
        "model": (uplift_policy(q[:, 1:] - q[:, [0]], arm_labels, control), ""),
    }
    rows = []
    best_true = None
    if truth is not None:
        truth = np.asarray(truth, dtype=float)
        if truth.shape != q.shape:
            raise ValueError(f"truth must be {q.shape}, got {truth.shape}")
        best_true = float(truth.max(axis=1).mean())
    col = {a: i for i, a in enumerate(labels)}
    for name, (pi, detail) in policies.items():
        ips = IPS().evaluate(pi, arms, y, propensity)
        snips = SNIPS().evaluate(pi, arms, y, propensity)
        dr = DR().evaluate(pi, arms, y, propensity, labels, q)
        row: dict[str, object] = {
            "policy": name,
            "detail": detail,
            "ips": ips.value,
            "ips_se": ips.se,
            "snips": snips.value,
            "dr": dr.value,
            "dr_se": dr.se,
            "share_treated": float(np.mean(pi != control)),
        }
        if truth is not None:
            idx = np.array([col[a] for a in pi.tolist()])
            true_value = float(truth[np.arange(n), idx].mean())
            row["true_value"] = true_value
            row["regret"] = best_true - true_value
        rows.append(row)
    return pd.DataFrame(rows)
