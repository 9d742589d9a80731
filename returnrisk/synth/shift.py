"""``Shift``: how a scenario changes the generator's hidden causes (see ``scenarios``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from returnrisk.synth.setting import Duties


@dataclass(frozen=True)
class Shift:
    """How a scenario changes the hidden causes; ``None`` leaves a cause as it is."""

    loss: np.ndarray | None = None  # per order: added log-odds of loss
    transit: np.ndarray | None = None  # per order: factor on the median transit
    duties: Duties | None = None  # the world's duty rules with the scenario's change
    refuse: np.ndarray | None = None  # per order: share of duty disputes refused
    quality: np.ndarray | None = None  # per line: added hidden quality problem
    mismatch: np.ndarray | None = None  # per line: added description mismatch
    affected: np.ndarray | None = None  # per order: in the scenario's slice
    info: dict[str, Any] = field(default_factory=dict)  # what was chosen (scenario.json)
