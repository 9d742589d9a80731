"""A synthetic cross-border world: the built-in demo data and the test bed.

A seller ships from a hub outside all its destination markets (think Hong Kong) to 40
countries through several carrier services. Every cause of after-sales cases a cross-border
seller fights is simulated, and each one is observable only the way it is in real life:

* carrier x lane reliability (lost, damaged, late) -> through the history of shipments/cases;
* duties: DDU orders above the destination's de-minimis -> duty disputes and refused parcels;
* SKU quality / description mismatch (latent) -> partly visible as few images, no size chart,
  listings not in the buyer's language, and through the SKU's case history;
* size and fit for apparel and shoes, with bracketing (one product in 2+ sizes in one order);
* customers with a latent propensity to open cases (serial returners), only seen in history;
* price, discount, channel and payment effects; Zipf-like SKU popularity; repeat customers.

``truth`` holds, per order, the probability of at least one case within 90 days exactly as the
generator draws it (and the per-cause components), so models can be checked against the truth.
Everything is vectorised numpy with one seeded generator: same config, same bytes.
"""

from returnrisk.labels import LABEL_WINDOW_DAYS
from returnrisk.synth.config import (
    CASE_CAUSES,
    DAY,
    NEW_TABLES,
    SynthConfig,
    World,
)
from returnrisk.synth.static import carriers_table
from returnrisk.synth.world import generate_world, write_world

__all__ = [
    "CASE_CAUSES",
    "DAY",
    "LABEL_WINDOW_DAYS",
    "NEW_TABLES",
    "SynthConfig",
    "World",
    "carriers_table",
    "generate_world",
    "write_world",
]
