"""Training sets from Feast: campaign exposures joined point-in-time to customer features.

The features come through the model's FeatureService (the same one serving reads), so a
training row sees exactly what the decision service would have seen at exposure time.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nextbest.core.errors import InputError
from nextbest.core.settings import Settings
from nextbest.core.vocabulary import NO_ACTION
from nextbest.customers.feast_store import FEATURE_SERVICE, historical_features
from nextbest.customers.feature_schema import LINEAGE_SUFFIX, WINDOWS, windowed_features
from nextbest.customers.row_customers import customer_index, report_left_out
from nextbest.customers.sources.files import export_path
from nextbest.models.learners import inverse_propensity_weights

log = logging.getLogger(__name__)


class LeakageError(ValueError):
    """A training row saw feature data from after its exposure time."""


class TimeRangeError(InputError):
    """The training exposures and the feature snapshots do not meet in time: a model
    trained on them would learn from no customer data."""


@dataclass
class TrainingSet:
    """Features, arms and outcomes of the randomised exposures, plus lineage."""

    frame: pd.DataFrame
    feature_names: list[str]
    feature_service: str
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def X(self) -> np.ndarray:  # noqa: N802 - scikit-learn naming
        """Feature matrix in ``feature_names`` order."""
        return self.frame[self.feature_names].to_numpy(dtype=np.float64)

    @property
    def treatment(self) -> np.ndarray:
        """Assigned arm per row (``no_action`` for control)."""
        return self.frame["action_id"].to_numpy()

    @property
    def y(self) -> np.ndarray:
        """Response (0/1) per row."""
        return self.frame["responded"].to_numpy(dtype=np.float64)

    @property
    def revenue(self) -> np.ndarray:
        """Revenue per row (0 without response)."""
        return self.frame["revenue"].to_numpy(dtype=np.float64)

    @property
    def propensity(self) -> np.ndarray:
        """Design probability of the assigned arm."""
        return self.frame["assignment_probability"].to_numpy(dtype=np.float64)

    @property
    def sample_weight(self) -> np.ndarray:
        """Fitting weight per row: the inverse of its own assignment probability (mean 1),
        see :func:`nextbest.models.learners.inverse_propensity_weights`."""
        return inverse_propensity_weights(self.propensity)


def _record_customers(unified_dir: Path) -> pd.Series:
    """Unified customer id by identity record id."""
    identity = pd.read_parquet(
        unified_dir / "identity.parquet", columns=["record_id", "customer_id"]
    )
    return pd.Series(identity["customer_id"].to_numpy(), index=identity["record_id"].to_numpy())


def _entity_df(exposures: pd.DataFrame, customers: np.ndarray) -> pd.DataFrame:
    """Exposures keyed by unified customer (``customers``, one per row; missing: none)
    and exposure time, each with its own assignment probability; exposures without a
    customer are dropped (and counted)."""
    ts = pd.to_datetime(exposures["exposed_at"], utc=True).astype("datetime64[us, UTC]")
    df = pd.DataFrame(
        {
            "exposure_id": exposures["exposure_id"].astype(str).to_numpy(),
            "customer_id": customers,
            "event_timestamp": ts.to_numpy(),
            "request_ts": ts.astype("int64").to_numpy() / 1e6,
            "action_id": exposures["action_id"].astype(str).to_numpy(),
            "assignment_probability": exposures["assignment_probability"].astype(float).to_numpy(),
            "responded": exposures["responded"].astype(int).to_numpy(),
            "revenue": exposures["revenue"].astype(float).to_numpy(),
        }
    )
    missing = df["customer_id"].isna()
    if missing.any():
        log.warning("%d exposures have no resolved customer and are left out", int(missing.sum()))
    df = df.loc[~missing].reset_index(drop=True)
    df["event_timestamp"] = df["event_timestamp"].astype("datetime64[us, UTC]")
    return df


def exposures_entity_df(raw_dir: Path, unified_dir: Path) -> pd.DataFrame:
    """Campaign exposures of the demo export keyed by unified customer and exposure time.

    Exposures whose CRM record did not resolve to a customer are dropped (and counted).
    """
    camp = pd.read_parquet(export_path(raw_dir, "campaign_exposures.parquet"))
    record_ids = "crm:" + camp["crm_id"].astype(str)
    return _entity_df(camp, _record_customers(unified_dir).reindex(record_ids).to_numpy())


def contract_exposures(
    exposures: pd.DataFrame,
    unified_dir: Path,
    *,
    records: pd.DataFrame | None = None,
    salt: str = "",
) -> pd.DataFrame:
    """:func:`exposures_entity_df` of a staged ``campaign_exposures`` contract table.

    Each exposure keeps its own assignment probability (campaigns differ). An exposure
    names its customer by identity record or by identifier (``id_type``, ``id_value``),
    resolved as the feature build resolves them (:mod:`nextbest.customers.row_customers`; that
    needs the staged identity ``records`` and the identifier ``salt``); exposures that
    name no customer are dropped (and counted).
    """
    by_identifier = "id_value" in exposures and exposures["id_value"].notna().any()
    if records is None and by_identifier:
        raise ValueError("exposures name customers by identifier: pass the identity records")
    if records is None:
        customers = _record_customers(unified_dir).reindex(exposures["record_id"]).to_numpy()
        return _entity_df(exposures, customers)
    index = customer_index(records, unified_dir, salt=salt)
    customers, left = index.customer_ids(exposures)
    report_left_out("campaign_exposures", left)
    return _entity_df(exposures, customers)


def training_exposures(settings: Settings) -> pd.DataFrame:
    """The exposures training learns from: the staged contract's when ``settings.sources``
    is set, else the demo generator's export."""
    if settings.sources is None:
        return exposures_entity_df(settings.raw_dir, settings.unified_dir)
    path = settings.contract_dir / "campaign_exposures.parquet"
    if not path.exists():
        raise InputError(
            f"no campaign_exposures in {settings.contract_dir}: training needs the "
            f"campaign_exposures table of {settings.sources}"
        )
    records = pd.read_parquet(settings.contract_dir / "identity_records.parquet")
    return contract_exposures(
        pd.read_parquet(path),
        settings.unified_dir,
        records=records,
        salt=settings.identifier_salt,
    )


def check_point_in_time(frame: pd.DataFrame) -> None:
    """Raise :class:`LeakageError` if any joined view row was built from data after its
    exposure; the ``<view>_as_of_ts`` lineage columns carry each row's data cutoff."""
    exposure = frame["request_ts"].to_numpy(dtype=np.float64)
    for col in [c for c in frame.columns if str(c).endswith(LINEAGE_SUFFIX)]:
        as_of = frame[col].to_numpy(dtype=np.float64)
        bad = np.nan_to_num(as_of, nan=0.0) > exposure + 1e-6
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            view = str(col).removesuffix(LINEAGE_SUFFIX)
            raise LeakageError(
                f"feature view {view!r}: {int(bad.sum())} training rows use data from after "
                f"their exposure (first: exposure {frame['exposure_id'].iloc[i]} at "
                f"{exposure[i]:.0f}, feature data up to {as_of[i]:.0f})"
            )


_NOTHING_DONE = "Nothing was trained or registered."


def _day(t: pd.Timestamp) -> str:
    return f"{t:%Y-%m-%d %H:%M}Z"


def _months_to_cover(first_exposure: pd.Timestamp, as_of: pd.Timestamp) -> int:
    """The ``snapshot_months`` whose first snapshot is at or before ``first_exposure``
    (:func:`nextbest.customers.features.snapshot_times`: the first of each month before
    ``as_of``)."""
    return (as_of.year - first_exposure.year) * 12 + as_of.month - first_exposure.month + 1


def check_exposures_in_snapshots(
    entity_df: pd.DataFrame,
    first: pd.Timestamp,
    last: pd.Timestamp,
    as_of_setting: datetime | None = None,
) -> None:
    """Raise :class:`TimeRangeError` unless every exposure falls between the first and the
    last feature snapshot (``last`` is the as-of time the features were built at;
    ``as_of_setting``: ``NEXTBEST_AS_OF`` when set, named in the message).

    Before the first snapshot an exposure joins no feature row, after the last it joins
    the as-of snapshot, data from before its own time that says nothing of its own: either
    way the model would learn from rows without their customer's data."""
    ts = pd.to_datetime(entity_df["event_timestamp"], utc=True)
    before, after = ts < first, ts > last
    out = int(before.sum() + after.sum())
    if not out:
        return
    fixes = []
    if before.any():
        setting = (
            ""
            if as_of_setting is None
            else f"NEXTBEST_AS_OF (or --as-of) is set to {_day(pd.Timestamp(as_of_setting))}, "
            "unset it to take the data's own end, or "
        )
        fixes.append(
            f"{int(before.sum()):,} before the first snapshot: {setting}"
            f"NEXTBEST_SNAPSHOT_MONTHS={_months_to_cover(ts.min(), last)} or more covers "
            "them, if the event exports reach back that far"
        )
    if after.any():
        fixes.append(
            f"{int(after.sum()):,} after the last, the as-of time: unset NEXTBEST_AS_OF "
            f"(and --as-of) to take the data's own end, or set it after {_day(ts.max())}"
        )
    raise TimeRangeError(
        f"{out:,} of {len(ts):,} training exposures (from {_day(ts.min())} to "
        f"{_day(ts.max())}) fall outside the feature snapshots (from {_day(first)} to "
        f"{_day(last)}, the as-of time of `nextbest features build`): features exist only "
        f"at the snapshots, so the model would learn from rows without customer data. "
        f"Of them, {'; '.join(fixes)}; then run `nextbest features build` again. "
        f"{_NOTHING_DONE}"
    )


def check_windowed_features(frame: pd.DataFrame, feature_names: list[str]) -> None:
    """Raise :class:`TimeRangeError` when every windowed feature (counts and sums over
    the trailing windows) is 0 in every training row, though their tables are present.

    That is what exposures look like whose windows hold no event: exports of events that
    end before the campaigns, or snapshots taken where the data is not. Features of
    absent tables are null, not 0, and do not count."""
    cols = windowed_features(feature_names)
    if not cols or frame.empty:
        return
    values = frame[cols].to_numpy(dtype=np.float64)
    known = ~np.isnan(values)
    if not known.any() or np.any(values[known] != 0):
        return
    ts = pd.to_datetime(frame["event_timestamp"], utc=True)
    raise TimeRangeError(
        f"every windowed feature ({len(cols)}: {', '.join(cols[:4])}...) is 0 in all "
        f"{len(frame):,} training rows: no event of the exports falls in the "
        f"{min(WINDOWS)} to {max(WINDOWS)} days before any exposure (exposures from "
        f"{_day(ts.min())} to {_day(ts.max())}). Check that the event exports cover the "
        f"campaigns' time and that the as-of time (NEXTBEST_AS_OF, default the data's end) "
        f"is the data's. {_NOTHING_DONE}"
    )


#: Exposures per ``get_historical_features`` call (see :func:`build_training_set`).
JOIN_CHUNK_ROWS = 500_000


def build_training_set(
    store: Any,
    entity_df: pd.DataFrame,
    feature_names: list[str],
    service: str = FEATURE_SERVICE,
    chunk_rows: int | None = JOIN_CHUNK_ROWS,
) -> TrainingSet:
    """Join ``entity_df`` point-in-time to the feature service and check for leakage.

    The join runs on ``chunk_rows`` exposures at a time (``None``: all at once). Every
    exposure's row depends only on its own customer and time, so the rows are the same;
    what changes is memory: in one call at 1,000,000 customers (3.1 million exposures
    against 13 snapshots of seven views) DuckDB's join and the result frames took the
    training process past 19 GiB, chunks of 500,000 keep the join's share small.
    """
    frame = historical_features(store, entity_df, service, chunk_rows)
    frame = frame.sort_values("exposure_id", kind="stable").reset_index(drop=True)
    if len(frame) != len(entity_df):
        raise ValueError(f"feature join returned {len(frame)} rows for {len(entity_df)} exposures")
    check_point_in_time(frame)
    missing = [f for f in feature_names if f not in frame]
    if missing:
        raise KeyError(f"feature service {service!r} lacks model features: {missing}")
    frame[feature_names] = frame[feature_names].astype(np.float64)
    data_hash = hashlib.sha256(
        pd.util.hash_pandas_object(frame[["exposure_id", *feature_names, "responded"]], index=False)
        .to_numpy()
        .tobytes()
    ).hexdigest()[:16]
    ts = frame["event_timestamp"]
    lineage = {
        "feature_service": service,
        "data_hash": data_hash,
        "rows": len(frame),
        "time_min": str(ts.min()),
        "time_max": str(ts.max()),
        "arms": sorted(set(frame["action_id"]) - {NO_ACTION}),
    }
    return TrainingSet(
        frame=frame, feature_names=feature_names, feature_service=service, lineage=lineage
    )
