"""Small vectorised helpers shared by the generation stages."""

from __future__ import annotations

import numpy as np
import pandas as pd


def choice_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probs`` (rows need not be normalised)."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), probs.shape[1] - 1)


def prefix_sample(
    rng: np.random.Generator, cum_weight: np.ndarray, n_avail: np.ndarray
) -> np.ndarray:
    """Sample index i < n_avail[k] with probability proportional to weight, per draw k."""
    total = cum_weight[n_avail - 1]
    idx = np.searchsorted(cum_weight, rng.random(len(n_avail)) * total, side="right")
    return np.minimum(idx, n_avail - 1)


def group_any_prob(group: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
    """P(at least one event) per group from independent per-row probabilities."""
    return -np.expm1(np.bincount(group, weights=np.log1p(-np.clip(p, 0, 0.999999)), minlength=n))


def pick_row(rng: np.random.Generator, group: np.ndarray, weight: np.ndarray, n: int) -> np.ndarray:
    """Per group, one row index drawn with probability proportional to ``weight`` (Gumbel max).

    ``group`` must be sorted ascending. Groups without rows get -1.
    """
    key = np.log(np.maximum(weight, 1e-300)) + rng.gumbel(size=len(weight))
    order = np.lexsort((key, group))
    g_sorted = group[order]
    last = np.flatnonzero(np.r_[g_sorted[1:] != g_sorted[:-1], True])
    out = np.full(n, -1, dtype=np.int64)
    out[g_sorted[last]] = order[last]
    return out


def ids(prefix: str, n: int, width: int) -> pd.Series:
    """``prefix`` + zero-padded running number, as a "str" Series."""
    return prefix + pd.Series(np.arange(n)).astype("str").str.zfill(width)


def take(s: pd.Series, idx: np.ndarray, mask: np.ndarray | None = None) -> pd.Series:
    """``s`` at positions ``idx`` (a cheap Arrow take), missing where ``mask``."""
    out = s.iloc[idx].reset_index(drop=True)
    return out.where(~mask) if mask is not None else out


def ts(seconds: np.ndarray) -> pd.Series | pd.DatetimeIndex:
    """Integer epoch seconds (float NaN = missing) -> tz-aware UTC timestamps, ns unit."""
    s = pd.to_datetime(pd.Series(seconds), unit="s", utc=True)
    return s.astype("datetime64[ns, UTC]")


def str_series(values: np.ndarray, mask: np.ndarray | None = None) -> pd.Series:
    """``values`` as a "str" Series, missing where ``mask``."""
    s = pd.Series(values, dtype="str")
    if mask is not None:
        s = s.where(~mask)
    return s
