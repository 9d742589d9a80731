"""The static world: product categories, carrier services, channels, payments, markets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Category:
    name: str
    share: float  # of products
    price: float  # median list price, EUR
    weight: float  # median weight, g
    sizes: tuple[str, ...]
    ret: float  # base log-odds of a line being returned
    fragile: float  # log-odds shift of damage


CATEGORIES = (
    Category("apparel", 0.30, 26.0, 350, ("XS", "S", "M", "L", "XL", "XXL"), -3.9, -1.6),
    Category(
        "shoes", 0.10, 52.0, 900, ("38", "39", "40", "41", "42", "43", "44", "45"), -3.7, -1.0
    ),
    Category("accessories", 0.12, 17.0, 120, (), -5.0, -0.4),
    Category("electronics", 0.14, 42.0, 300, (), -4.8, 1.3),
    Category("home", 0.12, 30.0, 1100, (), -5.1, 1.5),
    Category("beauty", 0.08, 14.0, 200, (), -5.6, 0.6),
    Category("toys", 0.07, 21.0, 500, (), -5.4, 0.3),
    Category("sports", 0.07, 33.0, 700, (), -4.8, 0.0),
)
COLORS = ("black", "white", "navy", "grey", "red", "green", "beige", "blue", "pink")
COLOR_CODES = ("BLK", "WHT", "NVY", "GRY", "RED", "GRN", "BGE", "BLU", "PNK")
LISTING_EXTRA_LANGS = ("de", "fr", "es", "it", "nl", "ja", "pt", "pl", "sv", "ko")
LISTING_EXTRA_P = (0.40, 0.35, 0.35, 0.25, 0.15, 0.12, 0.12, 0.08, 0.08, 0.06)

# carrier_id, name, level, tracked, loss log-odds, damage shift, speed factor, long-lane penalty
CARRIERS = (
    ("gp_eco", "GlobalPost Economy", "economy", False, -4.0, 0.30, 1.10, 0.3),
    ("gp_reg", "GlobalPost Registered", "economy", True, -4.7, 0.20, 1.05, 0.3),
    ("yl_eco", "YunLane Economy Line", "economy", True, -4.6, 0.45, 1.00, 1.2),
    ("pb_std", "ParcelBridge Standard", "standard", True, -5.3, -0.10, 0.95, 0.2),
    ("cx_std", "CrossX Standard", "standard", True, -5.0, 0.00, 1.00, 0.4),
    ("ll_std", "LastLeg Standard", "standard", True, -5.2, 0.20, 1.05, 0.3),
    ("sa_exp", "SwiftAir Express", "express", True, -6.2, -0.30, 0.90, 0.1),
    ("nx_exp", "NorthStar Express", "express", True, -6.0, -0.15, 1.00, 0.2),
)
LEVELS = ("economy", "standard", "express")
LEVEL_DAYS = np.array([13.0, 8.0, 4.0])  # median transit days on a zone-2 lane
LEVEL_SIGMA = np.array([0.45, 0.35, 0.28])
ZONE_FACTOR = {1: 0.75, 2: 1.0, 3: 1.45}
REGION_ZONE = {
    "EU": 2,
    "Europe": 2,
    "North America": 2,
    "Latin America": 3,
    "Asia-Pacific": 1,
    "Middle East & Africa": 2,
}
ZONE_OVERRIDE = {"AU": 2, "NZ": 2, "IN": 2, "ZA": 3, "TR": 2}
# share of customers by country (synthetic market mix; unlisted countries get 0.004)
COUNTRY_MIX = {
    "US": 0.22, "GB": 0.11, "DE": 0.10, "FR": 0.06, "IT": 0.035, "ES": 0.035, "NL": 0.025,
    "CA": 0.045, "AU": 0.04, "JP": 0.025, "KR": 0.012, "CH": 0.012, "BR": 0.02, "MX": 0.015,
    "IN": 0.012, "SE": 0.012, "PL": 0.012, "BE": 0.012, "AT": 0.01, "IE": 0.01, "NZ": 0.01,
    "SG": 0.01, "AE": 0.01, "NO": 0.008, "DK": 0.008, "SA": 0.008, "IL": 0.008,
}  # fmt: skip
COD_COUNTRIES = ("IN", "AE", "SA", "TR", "MX", "CO", "CL", "MY", "TH")
CHANNELS = ("amazon", "ebay", "aliexpress", "shopify", "own_site")
CHANNEL_MIX = np.array([0.34, 0.15, 0.10, 0.21, 0.20])
CHANNEL_PRICE = np.array([1.08, 1.00, 0.92, 1.00, 0.97])
CHANNEL_RETURN = np.array([0.35, 0.0, -0.15, 0.05, -0.25])  # easy marketplace returns
CHANNEL_NR = np.array([0.0, 0.35, 0.45, 0.0, -0.2])  # buyer-protection claims
CHANNEL_DISCOUNT = np.array([-0.5, -0.2, 0.3, 0.4, 0.5])
PAYMENTS = ("card", "paypal", "klarna", "apple_pay", "bank_transfer", "cod")
PAYMENT_MIX = np.array([0.46, 0.28, 0.09, 0.15, 0.02, 0.0])
DISCOUNT_RATES = np.array([0.10, 0.15, 0.20, 0.25, 0.30, 0.40, 0.50])
DISCOUNT_P = np.array([0.30, 0.20, 0.20, 0.10, 0.10, 0.06, 0.04])


def carriers_table() -> pd.DataFrame:
    """The carrier services of the synthetic world (contract table ``carriers``)."""
    return pd.DataFrame(
        {
            "carrier_id": pd.array([c[0] for c in CARRIERS], dtype="str"),
            "carrier_name": pd.array([c[1] for c in CARRIERS], dtype="str"),
            "service_level": pd.array([c[2] for c in CARRIERS], dtype="str"),
            "tracked": pd.array([c[3] for c in CARRIERS], dtype="boolean"),
        }
    )
