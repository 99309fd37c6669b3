"""Batch scoring across channels: every customer's best action x channel pair.

Each channel is scored by the ordinary batch job (:func:`nextbest.batch.run.score_customers`,
its own rules, the same ledger cut rule and time), into a folder beside ``out``; the pair
is then chosen per customer by the rule ``/decide`` uses
(:func:`nextbest.decisions.channel_choice.best_channels`: the channel whose chosen action
has the highest top expected incremental value, ties to the channel asked first), and
every other channel's reason is kept in a column ``why_<channel>`` (``LOWER_VALUE`` or the
channel's own reason). Quiet hours are not applied: a batch decides for a later send,
which waits for the window (nextbest.decisions.send_windows.next_send_time).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nextbest.core.settings import Settings
from nextbest.decisions.channel_choice import LOWER_VALUE, best_channels

_COLUMNS = ["customer_id", "group", "chosen_action", "propensity", "reason", "rank_1_score"]


def score_across_channels(
    settings: Settings,
    channels: Sequence[str],
    as_of: datetime | None,
    out: Path,
    **options: Any,
) -> pd.DataFrame:
    """Score ``channels`` (in the order asked; ``("any",)``: every catalog channel with
    actions) and write one row per customer to ``out`` (parquet): ``channel``, its
    ``chosen_action``, ``score``, ``group``, ``propensity``, ``reason`` and a
    ``why_<channel>`` column per channel asked. ``options`` go to ``score_customers``."""
    from nextbest.batch.io import BatchInputError
    from nextbest.batch.run import score_customers
    from nextbest.decisions.runtime import load_runtime

    runtime = options.pop("runtime", None) or load_runtime(settings)
    known = [c for c in runtime.catalog.channel_ids if c in runtime.plan.channels]
    asked = known if tuple(channels) == ("any",) else list(channels)
    bad = [c for c in asked if c not in runtime.plan.channels]
    if bad or not asked or len(set(asked)) != len(asked):
        raise BatchInputError(
            f"channels: {', '.join(bad) or 'none or repeated'}: give distinct channels "
            f"among {', '.join(known)}, or 'any'"
        )
    parts = Path(str(out) + ".channels")
    frames = []
    for c in asked:
        score_customers(settings, c, as_of, parts / f"{c}.parquet", runtime=runtime, **options)
        df = pd.read_parquet(parts / f"{c}.parquet", columns=_COLUMNS)
        frames.append(df.set_index("customer_id").sort_index())
    result = choose_rows(frames, asked)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.to_parquet(out, index=False)
    return result


def choose_rows(frames: Sequence[pd.DataFrame], asked: Sequence[str]) -> pd.DataFrame:
    """The best channel per customer of one decisions frame per channel (indexed by
    customer, the same customers), with every channel's reason."""
    ids = frames[0].index
    values = np.column_stack(
        [
            np.where(
                (f["chosen_action"] != "no_action").to_numpy() & (f["group"] == "treatment"),
                f["rank_1_score"].to_numpy(dtype=float),
                np.nan,
            )
            for f in (fr.reindex(ids) for fr in frames)
        ]
    )
    win = best_channels(values)
    rows = np.arange(len(ids))
    pick = lambda col: np.column_stack([f[col].reindex(ids).to_numpy() for f in frames])  # noqa: E731
    out = pd.DataFrame(
        {
            "customer_id": ids,
            "channel": np.asarray(asked, dtype=object)[win],
            "chosen_action": pick("chosen_action")[rows, win],
            "score": values[rows, win],
            "group": pick("group")[rows, win],
            "propensity": pick("propensity")[rows, win],
            "reason": pick("reason")[rows, win],
        }
    )
    reasons = pick("reason")
    for j, c in enumerate(asked):
        why = np.where(~np.isnan(values[:, j]), LOWER_VALUE, reasons[:, j])
        out[f"why_{c}"] = np.where(win == j, "CHOSEN", why)
    return out
