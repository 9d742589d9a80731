"""Stage "catalogue": products with hidden quality, mismatch and fit, and their SKUs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from returnrisk.synth.config import SynthConfig
from returnrisk.synth.setting import Geography
from returnrisk.synth.static import CATEGORIES, COLORS, LISTING_EXTRA_LANGS, LISTING_EXTRA_P


def category_arrays() -> dict[str, np.ndarray]:
    """Per-category constants as arrays indexed by category number."""
    return {
        "share": np.array([c.share for c in CATEGORIES]),
        "price": np.array([c.price for c in CATEGORIES]),
        "weight": np.array([c.weight for c in CATEGORIES]),
        "nsizes": np.array([max(len(c.sizes), 1) for c in CATEGORIES]),
        "sized": np.array([len(c.sizes) > 0 for c in CATEGORIES]),
        "ret": np.array([c.ret for c in CATEGORIES]),
        "fragile": np.array([c.fragile for c in CATEGORIES]),
    }


@dataclass(frozen=True)
class Products:
    """Products in launch order (``p_*``, one entry per product) and their suppliers."""

    n_prod: int
    p_cat: np.ndarray
    launch: np.ndarray  # launch day (negative: before the world starts)
    p_sized: np.ndarray
    n_sup: int
    p_sup: np.ndarray
    p_q: np.ndarray  # hidden quality problem
    p_m: np.ndarray  # hidden description mismatch
    p_fit: np.ndarray  # hidden fit bias (runs small / large)
    p_price: np.ndarray
    p_weight: np.ndarray
    p_nimg: np.ndarray
    p_chart: np.ndarray  # 1 size chart, 0 none, -1 not sized
    p_lang: np.ndarray  # listing languages, bit mask


@dataclass(frozen=True)
class Catalog:
    """Products, their SKUs (``s_*``), popularity and the hidden per-SKU deviations."""

    products: Products
    p_ncol: np.ndarray
    p_col0: np.ndarray
    p_nsz: np.ndarray
    p_sku0: np.ndarray  # first SKU index of each product
    n_sku: int
    s_prod: np.ndarray
    s_col: np.ndarray
    s_size: np.ndarray
    pop_cum: np.ndarray  # cumulative popularity over products in launch order
    p_avail: np.ndarray  # per day: products launched so far
    s_q: np.ndarray
    s_m: np.ndarray
    p_bad: np.ndarray  # hit by a two-month bad batch
    p_bad_from: np.ndarray


def _products(rng: np.random.Generator, cfg: SynthConfig, geo: Geography) -> Products:
    cat = category_arrays()
    n_prod = int(np.clip(round(3.0 * cfg.n_orders**0.6), 40, 40_000))
    p_cat = rng.choice(len(CATEGORIES), size=n_prod, p=cat["share"] / cat["share"].sum())
    launch = np.where(
        rng.random(n_prod) < 0.65,
        -rng.integers(1, 400, n_prod),
        rng.integers(0, cfg.days, n_prod),
    )
    order_p = np.argsort(launch, kind="stable")  # product index = launch order
    p_cat, launch = p_cat[order_p], launch[order_p]
    p_sized = cat["sized"][p_cat]
    n_sup = max(8, n_prod // 60)
    sup_q = rng.normal(0.0, 0.6, n_sup)
    p_sup = rng.integers(0, n_sup, n_prod)
    p_q = sup_q[p_sup] + rng.normal(0.0, 0.8, n_prod)
    p_m = rng.normal(0.0, 1.0, n_prod)
    p_fit = rng.normal(0.0, 1.0, n_prod) * np.where(p_cat == 1, 0.8, 1.0)
    p_price = np.round(cat["price"][p_cat] * np.exp(rng.normal(0, 0.55, n_prod)), 0) - 0.01
    p_weight = np.round(cat["weight"][p_cat] * np.exp(rng.normal(0, 0.4, n_prod)), 0)
    p_nimg = np.clip(rng.poisson(np.exp(1.65 - 0.35 * p_m)), 1, 15)
    # sellers with sloppy listings skip the size chart more often
    chart_p = expit(0.4 - 0.7 * p_m - 0.3 * np.abs(p_fit))
    p_chart = np.where(p_sized, (rng.random(n_prod) < chart_p).astype(np.int8), -1)
    p_lang = np.full(n_prod, geo.lang_bit["en"], dtype=np.uint64)
    lang_p = np.array(LISTING_EXTRA_P)[None, :] * expit(0.5 - 0.5 * p_m)[:, None] * 2
    has_lang = rng.random((n_prod, len(LISTING_EXTRA_LANGS))) < lang_p
    for j, lg in enumerate(LISTING_EXTRA_LANGS):  # 10 languages, vectorised over products
        p_lang |= np.where(has_lang[:, j], geo.lang_bit[lg], np.uint64(0))
    return Products(
        n_prod=n_prod,
        p_cat=p_cat,
        launch=launch,
        p_sized=p_sized,
        n_sup=n_sup,
        p_sup=p_sup,
        p_q=p_q,
        p_m=p_m,
        p_fit=p_fit,
        p_price=np.maximum(p_price, 1.99),
        p_weight=p_weight,
        p_nimg=p_nimg,
        p_chart=p_chart,
        p_lang=p_lang,
    )


def make_catalog(rng: np.random.Generator, cfg: SynthConfig, geo: Geography) -> Catalog:
    """Products, then SKUs (colours x sizes), Zipf popularity and hidden defects."""
    prod = _products(rng, cfg, geo)
    n_prod = prod.n_prod
    p_ncol = np.where(rng.random(n_prod) < 0.3, 1, rng.integers(1, 5, n_prod))
    p_col0 = rng.integers(0, len(COLORS), n_prod)
    p_nsz = category_arrays()["nsizes"][prod.p_cat]
    p_nsku = p_ncol * p_nsz
    p_sku0 = np.r_[0, np.cumsum(p_nsku)[:-1]]
    n_sku = int(p_nsku.sum())
    s_prod = np.repeat(np.arange(n_prod), p_nsku)
    within = np.arange(n_sku) - p_sku0[s_prod]
    rank = rng.permutation(n_prod)
    pop = 1.0 / (rank + 6.0) ** 1.1  # Zipf-Mandelbrot: top 20% of products ~75% of sales
    p_avail = np.searchsorted(prod.launch, np.arange(cfg.days), side="right")
    # per-SKU deviations (one colour's photos are off, one size is cut badly) and a few
    # products hit by a bad production batch for ~2 months: visible only in case history
    s_q = prod.p_q[s_prod] + rng.normal(0.0, 0.35, n_sku)
    s_m = prod.p_m[s_prod] + rng.normal(0.0, 0.35, n_sku)
    p_bad = rng.random(n_prod) < 0.03
    return Catalog(
        products=prod,
        p_ncol=p_ncol,
        p_col0=p_col0,
        p_nsz=p_nsz,
        p_sku0=p_sku0,
        n_sku=n_sku,
        s_prod=s_prod,
        s_col=within // p_nsz[s_prod],
        s_size=within % p_nsz[s_prod],
        pop_cum=np.cumsum(pop),
        p_avail=np.maximum(p_avail, 1),
        s_q=s_q,
        s_m=s_m,
        p_bad=p_bad,
        p_bad_from=rng.integers(0, cfg.days, n_prod),
    )
