"""A small randomised experiment with known heterogeneous effects, shared by the tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

CONTROL = "none"
ARMS = ["offer_a", "offer_b"]


def make_experiment(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows with features, a uniformly randomised arm and a binary outcome.

    Returns the frame and the true response probability per arm, ``[n, 3]`` in the order
    control, offer_a, offer_b.
    """
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    region = rng.choice(["north", "south", "west"], size=n)
    base = -1.0 + 0.5 * x1
    logits = np.column_stack(
        [
            base,
            base + 1.2 * (x2 > 0) - 0.4,
            base + 1.0 * (region == "north") - 0.3,
        ]
    )
    p = 1 / (1 + np.exp(-logits))
    arm_idx = rng.integers(0, 3, size=n)
    labels = np.array([CONTROL, *ARMS], dtype=object)
    y = rng.binomial(1, p[np.arange(n), arm_idx])
    df = pd.DataFrame(
        {
            "customer": [f"c{i}" for i in range(n)],
            "x1": x1,
            "x2": x2,
            "region": region,
            "arm": labels[arm_idx],
            "bought": y,
            "revenue": y * (20 + 5 * x1.clip(-2, 2)),
        }
    )
    return df, p
