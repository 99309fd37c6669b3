"""Uplift learners side by side: ours (cross-fitted selection) against causalml and sklift.

Run: ``nice -n 5 .venv/bin/python benchmarks/uplift_bench.py`` (``--quick`` for a tiny run).
One process, one file: ``benchmarks/results/uplift.json``.

Datasets: Hillstrom (visit, conversion; the split of ``../shared/data/README.md``),
causalml's ``synthetic_data`` modes 1 to 4 (continuous outcome, one treatment; mode 2 is
randomised, modes 1, 3 and 4 are observational, with the generator's propensity) and causalml's
``make_uplift_classification`` (binary outcome, three treatments and control).

Methods, all on LightGBM with the same parameters (:data:`training.selection.BASE_LGBM`,
one thread):

* ``ours``: what ``nextbest uplift fit`` does, on the training rows only: the S, T and X
  learners cross-fitted, the rule of :data:`training.selection.SELECTION_RULE`, the
  average of the winner's fold models (:data:`training.selection.FOLD_AVERAGE_RULE`);
* causalml's S, T and X learners (pairwise per arm; the X learner gets an LGBM propensity
  on observational data, the design share otherwise);
* scikit-uplift's class transformation (``ClassTransformation`` per arm for a binary
  outcome, ``ClassTransformationReg`` for a continuous one, with the same propensity).

On the test rows: Qini and uplift@30 % per arm (rows of that arm and control), the IPS
value of the policy "best arm if its uplift > 0, else control" and of giving everyone one
arm; standard errors from a paired bootstrap of the test rows (the same draws for every
method). Targets per dataset: our Qini per arm not below the best reference's minus that
reference's bootstrap SE; our policy value not below the best of the references and the
single arms (reported as the gap and its paired bootstrap SE).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import RESULTS, print_table, write_result

REFERENCES = ("causalml S", "causalml T", "causalml X", "sklift CT")
K = 0.3
TEST_SIZE = 0.30
SYNTHETIC_MODES = (1, 2, 3, 4)
#: Extra splits (``--splits``) use seeds ``SPLIT_SEED_BASE + i``; the first split is the
#: dataset's own (Hillstrom's README split, ``seed`` for the generators).
SPLIT_SEED_BASE = 100


@dataclass
class Dataset:
    """One experiment: features, logged arm, outcome and the logged arm's probability."""

    name: str
    X: pd.DataFrame
    t: np.ndarray
    y: np.ndarray
    control: str
    propensity: np.ndarray
    randomised: bool
    train: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=int))
    test: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=int))
    note: str = ""

    @property
    def arms(self) -> list[str]:
        """Treatment arms, sorted, control excluded (the learners' column order)."""
        return sorted({str(a) for a in self.t} - {self.control})

    @property
    def binary(self) -> bool:
        """Whether the outcome is 0/1."""
        return bool(np.isin(self.y, (0.0, 1.0)).all())


def _split(t: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    strat = pd.Series(t.astype(str))
    if np.isin(y, (0.0, 1.0)).all():
        strat = strat + "|" + pd.Series(y.astype(int).astype(str))
    tr, te = train_test_split(
        np.arange(len(t)), test_size=TEST_SIZE, random_state=seed, stratify=strat
    )
    return np.sort(tr), np.sort(te)


def hillstrom(outcome: str, rows: int | None = None) -> Dataset:
    """Hillstrom with the README's split (30 % test, seed 42, stratified on segment|visit);
    ``rows`` subsamples first (smoke runs only)."""
    from training.hillstrom import DESIGN_PROPENSITY, FEATURES, NO_EMAIL, load_hillstrom

    df = load_hillstrom()
    if rows is not None:
        df = df.sample(rows, random_state=0)
    df = df.reset_index(drop=True)
    strat = df["segment"] + "|" + df["visit"].astype(str)
    from sklearn.model_selection import train_test_split

    tr, te = train_test_split(np.arange(len(df)), test_size=0.30, random_state=42, stratify=strat)
    return Dataset(
        name=f"hillstrom_{outcome}",
        X=df[FEATURES],
        t=df["segment"].astype(str).to_numpy(),
        y=df[outcome].to_numpy(dtype=float),
        control=NO_EMAIL,
        propensity=np.full(len(df), DESIGN_PROPENSITY),
        randomised=True,
        train=np.sort(tr),
        test=np.sort(te),
        note=f"{len(df)} rows, 3 arms, design propensity 1/3",
    )


def synthetic(mode: int, n: int, seed: int, p: int = 8) -> Dataset:
    """causalml ``synthetic_data(mode, n, p, sigma=1)``: continuous outcome, one treatment;
    the logged arm's probability is the generator's ``e`` (or ``1 - e`` for control), and
    the data count as randomised only when ``e`` is the same for every row."""
    from causalml.dataset import synthetic_data

    np.random.seed(seed + mode)  # the generator draws from numpy's global state
    y, X, w, _tau, _b, e = synthetic_data(mode=mode, n=n, p=p, sigma=1.0)
    t = np.where(w == 1, "treated", "control").astype(object)
    tr, te = _split(t, y, seed)
    randomised = bool(np.ptp(e) == 0.0)
    return Dataset(
        name=f"synthetic_mode{mode}",
        X=pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]),
        t=t,
        y=np.asarray(y, dtype=float),
        control="control",
        propensity=np.where(w == 1, e, 1.0 - e),
        randomised=randomised,
        train=tr,
        test=te,
        note=f"n={n}, p={p}, sigma=1; " + ("randomised" if randomised else "observational"),
    )


def classification(n_per_arm: int, seed: int) -> Dataset:
    """causalml ``make_uplift_classification``: binary outcome, control and three treatments
    of equal size (design propensity 1/4)."""
    from causalml.dataset import make_uplift_classification

    df, x_names = make_uplift_classification(n_samples=n_per_arm, random_seed=seed)
    t = df["treatment_group_key"].astype(str).to_numpy()
    y = df["conversion"].to_numpy(dtype=float)
    tr, te = _split(t, y, seed)
    return Dataset(
        name="uplift_classification",
        X=df[x_names].reset_index(drop=True),
        t=t,
        y=y,
        control="control",
        propensity=np.full(len(df), 0.25),
        randomised=True,
        train=tr,
        test=te,
        note=f"{len(df)} rows, control + 3 treatments, {len(x_names)} features",
    )


def _numeric(X: pd.DataFrame) -> np.ndarray:
    out = X.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].cat.codes
    return out.to_numpy(dtype=np.float64)


def _lgbm(binary: bool, seed: int) -> Any:
    import lightgbm as lgb

    from training.selection import BASE_LGBM

    cls = lgb.LGBMClassifier if binary else lgb.LGBMRegressor
    return cls(**BASE_LGBM, random_state=seed, n_jobs=1, verbose=-1)


def _pair_propensity(ds: Dataset, arm: str, Xtr: np.ndarray, seed: int) -> Callable[..., Any]:
    """P(arm | x, arm or control): the design share when randomised, else an LGBM
    classifier fitted on the training rows of the pair (returned as a predictor)."""
    t = ds.t[ds.train]
    m = np.isin(t, [arm, ds.control])
    if ds.randomised:
        share = float(np.mean(t[m] == arm))
        return lambda X: np.full(len(X), share)
    model = _lgbm(True, seed).fit(Xtr[m], (t[m] == arm).astype(int))
    return lambda X: np.clip(model.predict_proba(X)[:, 1], 0.01, 0.99)


def reference_uplift(name: str, ds: Dataset, seed: int) -> np.ndarray:
    """``[n_test, A]`` uplift of one reference method fitted on the training rows."""
    from causalml.inference.meta import (
        BaseSClassifier,
        BaseSRegressor,
        BaseTClassifier,
        BaseTRegressor,
        BaseXClassifier,
        BaseXRegressor,
    )

    Xtr, Xte = _numeric(ds.X.iloc[ds.train]), _numeric(ds.X.iloc[ds.test])
    t, y, b = ds.t[ds.train], ds.y[ds.train], ds.binary
    arms = ds.arms
    if name == "sklift CT":
        from sklift.models import ClassTransformation, ClassTransformationReg

        cols = []
        for arm in arms:
            m = np.isin(t, [arm, ds.control])
            w = (t[m] == arm).astype(int)
            if b:
                model = ClassTransformation(estimator=_lgbm(True, seed))
            elif ds.randomised:
                share = float(w.mean())
                model = ClassTransformationReg(estimator=_lgbm(False, seed), propensity_val=share)
            else:
                model = ClassTransformationReg(
                    estimator=_lgbm(False, seed), propensity_estimator=_lgbm(True, seed)
                )
            model.fit(Xtr[m], y[m], w)
            cols.append(np.asarray(model.predict(Xte), dtype=float))
        return np.column_stack(cols)
    if name == "causalml S":
        model = (BaseSClassifier if b else BaseSRegressor)(
            learner=_lgbm(b, seed), control_name=ds.control
        )
        model.fit(Xtr, treatment=t, y=y)
        te = model.predict(Xte)
    elif name == "causalml T":
        model = (BaseTClassifier if b else BaseTRegressor)(
            learner=_lgbm(b, seed), control_name=ds.control
        )
        model.fit(Xtr, treatment=t, y=y)
        te = model.predict(Xte)
    elif name == "causalml X":
        if b:
            model = BaseXClassifier(
                outcome_learner=_lgbm(True, seed),
                effect_learner=_lgbm(False, seed),
                control_name=ds.control,
            )
        else:
            model = BaseXRegressor(learner=_lgbm(False, seed), control_name=ds.control)
        prop = {arm: _pair_propensity(ds, arm, Xtr, seed) for arm in arms}
        model.fit(Xtr, treatment=t, y=y, p={a: f(Xtr) for a, f in prop.items()})
        te = model.predict(Xte, p={a: f(Xte) for a, f in prop.items()})
    else:
        raise ValueError(f"unknown reference {name!r}")
    groups = [str(g) for g in model.t_groups]
    return np.asarray(te, dtype=float)[:, [groups.index(a) for a in arms]]


def our_uplift(
    ds: Dataset,
    seed: int,
    candidates: Mapping[str, Any] | None = None,
    bootstrap: int = 50,
    selection_value: str = "ips",
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``[n_test, A]`` uplift of our selected learner and of its unshrunk base (the same
    array when the winner is not shrunk); selection and fit see the training rows only.
    ``candidates`` defaults to those of ``nextbest uplift fit``."""
    from training.selection import meta_learner_candidates, select_uplift_learner

    if candidates is None:
        candidates = meta_learner_candidates(
            ds.control, seed=seed, propensity="empirical" if ds.randomised else "model"
        )
    Xtr = ds.X.iloc[ds.train]
    chosen = select_uplift_learner(
        candidates,
        Xtr,
        ds.t[ds.train],
        ds.y[ds.train],
        control=ds.control,
        propensity=ds.propensity[ds.train],
        seed=seed,
        bootstrap=bootstrap,
        average_folds=True,
        policy_estimator=selection_value,
    )
    assert chosen.model is not None
    Xte = ds.X.iloc[ds.test]
    uplift = np.asarray(chosen.model.predict_uplift(Xte), dtype=float)
    base = getattr(chosen.model, "learner_", None) if chosen.shrinkage != 1.0 else None
    unshrunk = uplift if base is None else np.asarray(base.predict_uplift(Xte), dtype=float)
    cols = ["learner", "ips_value", "ips_se", "gain_vs_best_arm", "gain_vs_best_arm_se"]
    cols += ["qini_mean", "qini_mean_se", "eligible", "estimator"]
    info = {
        "selected": chosen.name,
        "final_model": "average of the winner's fold models" if chosen.averaged else "refit",
        "reason": chosen.reason,
        "selection_table": chosen.table[cols + ["selected"]].to_dict(orient="records"),
    }
    return uplift, unshrunk, info


def _metrics(
    y: np.ndarray,
    t: np.ndarray,
    p: np.ndarray,
    u: np.ndarray,
    arms: Sequence[str],
    control: str,
) -> dict[str, float]:
    from nextbest.models.evaluation import qini_auc_score, uplift_at_k, uplift_policy
    from nextbest.models.ope_estimators import IPS

    out: dict[str, float] = {}
    for j, arm in enumerate(arms):
        m = (t == arm) | (t == control)
        w = (t[m] == arm).astype(int)
        out[f"qini_{arm}"] = qini_auc_score(y[m], u[m, j], w)
        out[f"uplift_at_30_{arm}"] = uplift_at_k(y[m], u[m, j], w, k=K)
    policy = uplift_policy(u, arms, control)
    out["ips_value"] = IPS().evaluate(policy, t, y, p).value
    out["share_treated"] = float(np.mean(policy != control))
    return out


def _single_arms(
    y: np.ndarray, t: np.ndarray, p: np.ndarray, labels: Sequence[str]
) -> dict[str, float]:
    from nextbest.models.ope_estimators import IPS

    return {a: IPS().evaluate(np.full(len(t), a, dtype=object), t, y, p).value for a in labels}


def score(ds: Dataset, uplifts: Mapping[str, np.ndarray], draws: int, seed: int) -> dict[str, Any]:
    """Point figures on the test rows and paired-bootstrap SEs, per method and per single
    arm, plus the targets (ours against the best reference and the best single arm)."""
    y, t, p = ds.y[ds.test], ds.t[ds.test], ds.propensity[ds.test]
    arms, labels = ds.arms, [ds.control, *ds.arms]
    point = {m: _metrics(y, t, p, u, arms, ds.control) for m, u in uplifts.items()}
    singles = _single_arms(y, t, p, labels)
    rng = np.random.default_rng(seed)
    boot: dict[str, list[dict[str, float]]] = {m: [] for m in uplifts}
    boot_single: list[dict[str, float]] = []
    for _ in range(draws):
        i = rng.integers(0, len(y), len(y))
        for m, u in uplifts.items():
            boot[m].append(_metrics(y[i], t[i], p[i], u[i], arms, ds.control))
        boot_single.append(_single_arms(y[i], t[i], p[i], labels))
    frames = {m: pd.DataFrame(b) for m, b in boot.items()}
    single_frame = pd.DataFrame(boot_single)
    methods: dict[str, dict[str, float]] = {}
    for m, fig in point.items():
        row = dict(fig)
        for k in fig:
            if k != "share_treated":
                row[f"{k}_se"] = float(frames[m][k].std(ddof=1))
        methods[m] = row
    single = {
        a: {"ips_value": v, "ips_value_se": float(single_frame[a].std(ddof=1))}
        for a, v in singles.items()
    }
    refs = [m for m in uplifts if m != "ours"]
    targets: dict[str, Any] = {}
    if "ours" in uplifts and refs:
        for arm in arms:
            k = f"qini_{arm}"
            best = max(refs, key=lambda m: point[m][k])
            gap = point["ours"][k] - point[best][k]
            floor = point[best][k] - methods[best][f"{k}_se"]
            targets[k] = {
                "best_reference": best,
                "best_reference_value": point[best][k],
                "best_reference_se": methods[best][f"{k}_se"],
                "ours": point["ours"][k],
                "gap": gap,
                "gap_paired_se": float((frames["ours"][k] - frames[best][k]).std(ddof=1)),
                "met": bool(point["ours"][k] >= floor),
            }
        best_ref = max(refs, key=lambda m: point[m]["ips_value"])
        best_arm = max(singles, key=singles.__getitem__)
        if point[best_ref]["ips_value"] >= singles[best_arm]:
            bar, bar_name, bar_boot = (
                point[best_ref]["ips_value"],
                best_ref,
                frames[best_ref]["ips_value"],
            )
        else:
            bar, bar_name, bar_boot = (
                singles[best_arm],
                f"everyone {best_arm}",
                single_frame[best_arm],
            )
        gap = point["ours"]["ips_value"] - bar
        gap_se = float((frames["ours"]["ips_value"] - bar_boot).std(ddof=1))
        targets["policy_value"] = {
            "bar": bar_name,
            "bar_value": bar,
            "best_reference": best_ref,
            "best_single_arm": best_arm,
            "ours": point["ours"]["ips_value"],
            "gap": gap,
            "gap_paired_se": gap_se,
            "met": bool(gap >= 0.0),
            "met_within_se": bool(gap >= -gap_se),
        }
        targets["qini_met_every_arm"] = all(targets[f"qini_{a}"]["met"] for a in arms)
    return {"methods": methods, "single_arms": single, "targets": targets}


def evaluate(
    ds: Dataset,
    seed: int = 0,
    draws: int = 200,
    candidates: Mapping[str, Any] | None = None,
    references: Sequence[str] = REFERENCES,
    selection_bootstrap: int = 50,
    selection_value: str = "ips",
) -> dict[str, Any]:
    """Fit ours and every reference on ``ds.train``, score all of them on ``ds.test``;
    ``selection_value`` is how our rule values policies (``ips`` or ``dr``)."""
    uplifts: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    uplifts["ours"], unshrunk, info = our_uplift(
        ds, seed, candidates, selection_bootstrap, selection_value
    )
    seconds["ours"] = time.perf_counter() - t0
    for ref in references:
        t0 = time.perf_counter()
        uplifts[ref] = reference_uplift(ref, ds, seed)
        seconds[ref] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scored = score(ds, uplifts, draws, seed)
    for m, s in seconds.items():
        scored["methods"][m]["seconds"] = round(s, 2)
    diagnostics = _shrinkage_check(ds, info, unshrunk, scored)
    return {
        "note": ds.note,
        "rows": len(ds.t),
        "train_rows": len(ds.train),
        "test_rows": len(ds.test),
        "arms": ds.arms,
        "control": ds.control,
        "randomised": ds.randomised,
        "outcome": "binary" if ds.binary else "continuous",
        "ours": info,
        **scored,
        "shrinkage_check": diagnostics,
        "verdict": verdict(scored["targets"]),
        "scoring_seconds": round(time.perf_counter() - t0, 2),
    }


def resplit(ds: Dataset, seed: int) -> Dataset:
    """The same rows split again (stratified on arm, and outcome when binary) by ``seed``."""
    tr, te = _split(ds.t, ds.y, seed)
    return replace(ds, train=tr, test=te)


def point_figures(
    ds: Dataset,
    seed: int = 0,
    references: Sequence[str] = REFERENCES,
    selection_value: str = "ips",
) -> dict[str, Any]:
    """Ours and every reference fitted on ``ds.train`` and scored on ``ds.test``: point
    figures only (no bootstrap), the single arms and what ours selected."""
    ours, _, info = our_uplift(ds, seed, selection_value=selection_value)
    uplifts = {"ours": ours}
    for ref in references:
        uplifts[ref] = reference_uplift(ref, ds, seed)
    y, t, p = ds.y[ds.test], ds.t[ds.test], ds.propensity[ds.test]
    return {
        "methods": {m: _metrics(y, t, p, u, ds.arms, ds.control) for m, u in uplifts.items()},
        "single_arms": _single_arms(y, t, p, [ds.control, *ds.arms]),
        "selected": info["selected"],
    }


def candidate_values(ds: Dataset, seed: int) -> dict[str, float]:
    """Diagnostic: each of our candidates unshrunk, refitted on all training rows, and the
    test IPS value of its policy (what always using that one learner would have given)."""
    from sklearn.base import clone

    from nextbest.models.evaluation import uplift_policy
    from nextbest.models.ope_estimators import IPS
    from training.selection import meta_learner_candidates

    candidates = meta_learner_candidates(
        ds.control, seed=seed, propensity="empirical" if ds.randomised else "model"
    )
    Xtr, Xte = ds.X.iloc[ds.train], ds.X.iloc[ds.test]
    y, t, p = ds.y[ds.test], ds.t[ds.test], ds.propensity[ds.test]
    out = {}
    for name, est in candidates.items():
        model = clone(est).fit(Xtr, ds.t[ds.train], ds.y[ds.train])
        policy = uplift_policy(np.asarray(model.predict_uplift(Xte)), ds.arms, ds.control)
        out[name] = IPS().evaluate(policy, t, y, p).value
    return out


def repeated(
    ds: Dataset,
    first: Mapping[str, Any],
    splits: int,
    seed: int,
    selection_value: str = "ips",
) -> dict[str, Any]:
    """``first`` (the dataset's own split, already evaluated) and ``splits - 1`` more random
    splits of the same rows: per split the point figures, over splits the targets."""
    runs = [
        {
            "split_seed": None,
            "selected": first["ours"]["selected"],
            "methods": {
                m: {k: v for k, v in r.items() if not k.endswith(("_se", "seconds"))}
                for m, r in first["methods"].items()
            },
            "single_arms": {a: v["ips_value"] for a, v in first["single_arms"].items()},
        }
    ]
    runs[0]["candidates_refit"] = candidate_values(ds, seed)
    for i in range(1, splits):
        split_seed = SPLIT_SEED_BASE + i
        again = resplit(ds, split_seed)
        figures = point_figures(again, seed, selection_value=selection_value)
        runs.append({"split_seed": split_seed, **figures})
        runs[-1]["candidates_refit"] = candidate_values(again, seed)
    targets = repeated_targets(runs, ds.arms)
    fixed = {
        name: _mean_se([r["candidates_refit"][name] for r in runs])
        for name in runs[0]["candidates_refit"]
    }
    return {
        "per_split": runs,
        "targets": targets,
        "verdict": repeated_verdict(targets),
        "candidates_refit_mean_se": fixed,
    }


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else 0.0


def repeated_targets(splits: Sequence[Mapping[str, Any]], arms: Sequence[str]) -> dict[str, Any]:
    """The targets on the mean over splits: per arm, ours against the reference with the
    highest mean Qini (met when ours is not below its mean minus the SE of that mean);
    policy value against the higher of the best reference's and the best single arm's
    mean. Gaps are paired per split (mean and SE over splits)."""
    refs = [m for m in splits[0]["methods"] if m != "ours"]

    def series(method: str, key: str) -> np.ndarray:
        return np.array([s["methods"][method][key] for s in splits], dtype=float)

    out: dict[str, Any] = {"splits": len(splits)}
    for arm in arms:
        k = f"qini_{arm}"
        best = max(refs, key=lambda m: series(m, k).mean())
        best_mean, best_se = _mean_se(series(best, k))
        ours_mean, _ = _mean_se(series("ours", k))
        gap, gap_se = _mean_se(series("ours", k) - series(best, k))
        out[k] = {
            "best_reference": best,
            "best_reference_mean": best_mean,
            "best_reference_se": best_se,
            "ours_mean": ours_mean,
            "gap": gap,
            "gap_se": gap_se,
            "met": bool(ours_mean >= best_mean - best_se),
        }
    best_ref = max(refs, key=lambda m: series(m, "ips_value").mean())
    arm_names = list(splits[0]["single_arms"])
    arm_series = {
        a: np.array([s["single_arms"][a] for s in splits], dtype=float) for a in arm_names
    }
    best_arm = max(arm_names, key=lambda a: arm_series[a].mean())
    if series(best_ref, "ips_value").mean() >= arm_series[best_arm].mean():
        bar_name, bar = best_ref, series(best_ref, "ips_value")
    else:
        bar_name, bar = f"everyone {best_arm}", arm_series[best_arm]
    ours = series("ours", "ips_value")
    gap, gap_se = _mean_se(ours - bar)
    ref_gap, ref_gap_se = _mean_se(ours - series(best_ref, "ips_value"))
    arm_gap, arm_gap_se = _mean_se(ours - arm_series[best_arm])
    out["policy_value"] = {
        "bar": bar_name,
        "bar_mean": float(bar.mean()),
        "best_reference": best_ref,
        "best_single_arm": best_arm,
        "ours_mean": float(ours.mean()),
        "gap": gap,
        "gap_se": gap_se,
        "gap_vs_best_reference": ref_gap,
        "gap_vs_best_reference_se": ref_gap_se,
        "gap_vs_best_single_arm": arm_gap,
        "gap_vs_best_single_arm_se": arm_gap_se,
        "met": bool(gap >= 0.0),
        "met_within_se": bool(gap >= -gap_se),
    }
    out["qini_met_every_arm"] = all(out[f"qini_{a}"]["met"] for a in arms)
    return out


def repeated_verdict(targets: Mapping[str, Any]) -> str:
    """One line: each target on the mean over splits, with the paired gap and its SE."""
    qini = _qini_states(
        targets, lambda v: f"{v['gap']:+.4f} ± {v['gap_se']:.4f} vs {v['best_reference']}"
    )
    pv = targets["policy_value"]
    return (
        f"Over {targets['splits']} splits, Qini per arm: {qini}. Policy value "
        f"{_value_state(pv)}: {pv['gap']:+.4f} ± {pv['gap_se']:.4f} vs {pv['bar']} "
        f"({pv['gap_vs_best_reference']:+.4f} ± {pv['gap_vs_best_reference_se']:.4f} vs "
        f"{pv['best_reference']}, {pv['gap_vs_best_single_arm']:+.4f} ± "
        f"{pv['gap_vs_best_single_arm_se']:.4f} vs everyone {pv['best_single_arm']})."
    )


def _shrinkage_check(
    ds: Dataset, info: Mapping[str, Any], unshrunk: np.ndarray, scored: Mapping[str, Any]
) -> dict[str, Any]:
    """What the selection's own policy choice cost or gained: the unshrunk base learner's
    policy against the best single arm, cross-fitted on the training rows (as the rule saw
    it) and on the test rows (point figure; not a method, not part of the targets)."""
    from nextbest.models.evaluation import uplift_policy
    from nextbest.models.ope_estimators import IPS

    table = {r["learner"]: r for r in info["selection_table"]}
    base = str(info["selected"]).split("@", 1)[0]
    y, t, p = ds.y[ds.test], ds.t[ds.test], ds.propensity[ds.test]
    policy = uplift_policy(unshrunk, ds.arms, ds.control)
    singles = scored["single_arms"]
    best_arm = max(singles, key=lambda a: singles[a]["ips_value"])
    test_value = IPS().evaluate(policy, t, y, p).value
    return {
        "base": base,
        "cv_gain_vs_best_arm": table[base]["gain_vs_best_arm"],
        "cv_gain_vs_best_arm_se": table[base]["gain_vs_best_arm_se"],
        "test_ips_value": test_value,
        "test_gain_vs_best_arm": test_value - singles[best_arm]["ips_value"],
    }


def _qini_states(targets: Mapping[str, Any], detail: Callable[[Mapping[str, Any]], str]) -> str:
    return "; ".join(
        f"{k[5:]} {'met' if v['met'] else 'MISSED'} ({detail(v)})"
        for k, v in targets.items()
        if k.startswith("qini_") and isinstance(v, dict)
    )


def _value_state(pv: Mapping[str, Any]) -> str:
    return "met" if pv["met"] else "met within its SE" if pv["met_within_se"] else "MISSED"


def verdict(targets: Mapping[str, Any]) -> str:
    """One line per dataset: each target met or missed, with the gap and its paired SE."""
    qini = _qini_states(
        targets,
        lambda v: (
            f"{v['gap']:+.4f} vs {v['best_reference']}, "
            f"floor {v['best_reference_value'] - v['best_reference_se']:.4f}"
        ),
    )
    pv = targets["policy_value"]
    return (
        f"Qini per arm: {qini}. Policy value {_value_state(pv)}: {pv['ours']:.4f} vs "
        f"{pv['bar']} {pv['bar_value']:.4f}, gap {pv['gap']:+.4f} ± {pv['gap_paired_se']:.4f}."
    )


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in ("causalml", "scikit-uplift", "lightgbm", "scikit-learn"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def datasets(
    synthetic_n: int = 20_000,
    classification_per_arm: int = 5_000,
    hillstrom_outcomes: Sequence[str] = ("visit", "conversion"),
    hillstrom_rows: int | None = None,
    modes: Sequence[int] = SYNTHETIC_MODES,
    seed: int = 0,
) -> list[Callable[[], Dataset]]:
    """Lazy builders of the benchmark's datasets (each loaded only when its turn comes)."""
    out: list[Callable[[], Dataset]] = [
        (lambda o=o: hillstrom(o, hillstrom_rows)) for o in hillstrom_outcomes
    ]
    out += [(lambda m=m: synthetic(m, synthetic_n, seed)) for m in modes]
    if classification_per_arm:
        out.append(lambda: classification(classification_per_arm, seed))
    return out


def run(
    builders: Sequence[Callable[[], Dataset]],
    seed: int = 0,
    draws: int = 200,
    results_dir: Path = RESULTS,
    on_step: Callable[[str], None] = print,
    splits: int = 1,
    selection_value: str = "ips",
) -> dict[str, Any]:
    """Evaluate every dataset in one process and write ``<results_dir>/uplift.json``; with
    ``splits`` > 1, each dataset is also re-split ``splits - 1`` times and the targets are
    checked on the means over splits as well (``repeated``)."""
    from training.selection import BASE_LGBM, FOLD_AVERAGE_RULE, SELECTION_RULE

    started = time.perf_counter()
    out: dict[str, Any] = {}
    for build in builders:
        ds = build()
        on_step(f"{ds.name}: {len(ds.train)} training rows, {len(ds.test)} test rows")
        t0 = time.perf_counter()
        out[ds.name] = evaluate(ds, seed=seed, draws=draws, selection_value=selection_value)
        if splits > 1:
            out[ds.name]["repeated"] = repeated(ds, out[ds.name], splits, seed, selection_value)
            on_step(f"{ds.name}: {out[ds.name]['repeated']['verdict']}")
        out[ds.name]["seconds"] = round(time.perf_counter() - t0, 1)
    payload = {
        "what": "ours (cross-fitted selection on the training rows) vs causalml S/T/X and "
        "sklift class transformation, same LightGBM parameters; test-row figures with "
        "paired-bootstrap SEs",
        "selection_rule": SELECTION_RULE,
        "final_model": FOLD_AVERAGE_RULE,
        "base_lgbm": {**BASE_LGBM, "n_jobs": 1},
        "bootstrap_draws": draws,
        "k": K,
        "test_size": TEST_SIZE,
        "seed": seed,
        "splits": splits,
        "selection_value": selection_value,
        "library_versions": _versions(),
        "seconds": round(time.perf_counter() - started, 1),
        "datasets": out,
    }
    path = write_result("uplift", payload, results_dir)
    on_step(f"wrote {path}")
    return payload


def table_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """One printed row per dataset and method."""
    rows = []
    for name, d in result["datasets"].items():
        for m, r in d["methods"].items():
            qini = " / ".join(f"{r[f'qini_{a}']:.4f}±{r[f'qini_{a}_se']:.4f}" for a in d["arms"])
            u30 = " / ".join(f"{r[f'uplift_at_30_{a}']:.4f}" for a in d["arms"])
            label = f"ours ({d['ours']['selected']})" if m == "ours" else m
            rows.append(
                (
                    name,
                    label,
                    qini,
                    u30,
                    f"{r['ips_value']:.4f}±{r['ips_value_se']:.4f}",
                    f"{r['seconds']:.1f}",
                )
            )
        best = max(d["single_arms"], key=lambda a: d["single_arms"][a]["ips_value"])
        s = d["single_arms"][best]
        rows.append(
            (name, f"everyone {best}", "", "", f"{s['ips_value']:.4f}±{s['ips_value_se']:.4f}", "")
        )
    return rows


def markdown(result: dict[str, Any]) -> str:
    """The README's short table: per dataset, ours against the best reference and arm."""
    lines = [
        "| dataset | ours (selected) | Qini per arm: ours / best ref ± its SE | "
        "uplift@30 % ours / best ref | IPS value: ours / best ref / best arm | targets |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in result["datasets"].items():
        ours, tg = d["methods"]["ours"], d["targets"]
        qini, u30 = [], []
        for a in d["arms"]:
            q = tg[f"qini_{a}"]
            ref = d["methods"][q["best_reference"]]
            qini.append(
                f"{q['ours']:.3f} / {q['best_reference_value']:.3f} ± "
                f"{q['best_reference_se']:.3f} ({q['best_reference']})"
            )
            u30.append(f"{ours[f'uplift_at_30_{a}']:.3f} / {ref[f'uplift_at_30_{a}']:.3f}")
        pv = tg["policy_value"]
        ref_v = d["methods"][pv["best_reference"]]["ips_value"]
        arm_v = d["single_arms"][pv["best_single_arm"]]["ips_value"]
        verdict = (
            f"Qini {'met' if tg['qini_met_every_arm'] else 'missed'}, value "
            + ("met" if pv["met"] else "within SE" if pv["met_within_se"] else "missed")
            + f" ({pv['gap']:+.4f} ± {pv['gap_paired_se']:.4f})"
        )
        lines.append(
            f"| {name} | {d['ours']['selected']} | {'<br>'.join(qini)} | {'<br>'.join(u30)} "
            f"| {ours['ips_value']:.4f} / {ref_v:.4f} ({pv['best_reference']}) / {arm_v:.4f} "
            f"| {verdict} |"
        )
    return "\n".join(lines)


def markdown_repeated(result: dict[str, Any]) -> str:
    """The README's table over repeated splits: per dataset, the mean gaps to the bars."""
    lines = [
        "| dataset | ours selected (per split) | Qini gap per arm, mean ± SE (vs best ref by "
        "mean) | IPS value gap, mean ± SE (bar) | targets on the means |",
        "|---|---|---|---|---|",
    ]
    for name, d in result["datasets"].items():
        if "repeated" not in d:
            continue
        tg = d["repeated"]["targets"]
        picks = ", ".join(str(r["selected"]) for r in d["repeated"]["per_split"])
        qini = "<br>".join(
            f"{tg[f'qini_{a}']['gap']:+.4f} ± {tg[f'qini_{a}']['gap_se']:.4f} "
            f"({tg[f'qini_{a}']['best_reference']})"
            for a in d["arms"]
        )
        pv = tg["policy_value"]
        state = "met" if pv["met"] else "within SE" if pv["met_within_se"] else "missed"
        lines.append(
            f"| {name} | {picks} | {qini} | {pv['gap']:+.4f} ± {pv['gap_se']:.4f} ({pv['bar']}) "
            f"| Qini {'met' if tg['qini_met_every_arm'] else 'missed'}, value {state} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run (full or ``--quick``), print the table and the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--draws", type=int, default=200, help="bootstrap draws on test rows")
    parser.add_argument("--synthetic-n", type=int, default=20_000)
    parser.add_argument("--classification-per-arm", type=int, default=5_000)
    parser.add_argument(
        "--splits", type=int, default=1, help="random train/test splits per dataset (1: its own)"
    )
    parser.add_argument(
        "--selection-value",
        choices=("ips", "dr"),
        default="ips",
        help="how our rule values policies (dr: doubly robust, one common reward model)",
    )
    args = parser.parse_args(argv)
    if args.splits < 1:
        parser.error(f"--splits must be at least 1, got {args.splits}")
    if args.quick:
        builders = datasets(2_000, 500, ("visit",), hillstrom_rows=6_000)
        draws = 30
    else:
        builders = datasets(args.synthetic_n, args.classification_per_arm)
        draws = args.draws
    result = run(builders, draws=draws, splits=args.splits, selection_value=args.selection_value)
    header = ("dataset", "method", "Qini per arm ± SE", "uplift@30 per arm", "IPS value ± SE", "s")
    print_table("uplift learners on the test rows", table_rows(result), header)
    print(markdown(result))
    if args.splits > 1:
        print(markdown_repeated(result))
    for name, d in result["datasets"].items():
        print(f"{name}: {d['verdict']}")
        if "repeated" in d:
            print(f"{name}: {d['repeated']['verdict']}")


if __name__ == "__main__":
    main()
