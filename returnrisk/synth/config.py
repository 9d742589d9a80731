"""What world to generate, and what comes out: ``SynthConfig`` and ``World``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pandas as pd

from returnrisk.labels import LABEL_WINDOW_DAYS

NEW_TABLES = ("orders", "order_lines", "skus", "customers")
DAY = 86_400
CASE_CAUSES = (
    "return",
    "not_as_described",
    "damaged",
    "wrong_item",
    "not_received",
    "duty_dispute",
    "refund",
    "other",
)
SCENARIOS = ("stationary", "lane_collapse", "de_minimis_drop", "new_market", "quality_drop")
SCENARIO_DEFAULT_AT = 0.6  # default start of a scenario's change: 60 % into the world


@dataclass(frozen=True)
class SynthConfig:
    """What world to generate. ``n_orders`` counts history and new orders together."""

    n_orders: int = 20_000
    seed: int = 0
    start: date = date(2024, 1, 1)
    days: int = 540
    new_days: int = 1
    customers_per_order: float = 1.0
    serial_share: float = 0.08
    b2b_share: float = 0.05
    scenario: str = "stationary"
    scenario_start: date | None = None  # None: 60 % into the world
    # truth for actions also for the history orders a backtest window needs: the last
    # ``truth_actions_days`` days of mature orders and everything after (0: new orders only)
    truth_actions_days: int = 84
    # the dated duty rules of the reference (returnrisk/reference/duty_rules.csv) in force during
    # the window apply, and are written as ``duty_rules``; False: every destination keeps its
    # countries-table figures throughout (only a de_minimis_drop scenario writes a rule)
    duty_changes: bool = True

    def __post_init__(self) -> None:
        if self.n_orders < 10:
            raise ValueError(f"n_orders must be >= 10, got {self.n_orders}")
        if self.days < 2:
            raise ValueError(f"days must be >= 2, got {self.days}")
        if not 0 <= self.new_days < self.days:
            raise ValueError(f"new_days must be in [0, days={self.days}), got {self.new_days}")
        if self.truth_actions_days < 0:
            raise ValueError(f"truth_actions_days: must be >= 0, got {self.truth_actions_days}")
        if self.customers_per_order <= 0:
            raise ValueError("customers_per_order must be > 0")
        if self.scenario not in SCENARIOS:
            raise ValueError(
                f"scenario: unknown scenario {self.scenario!r}; "
                f"choose one of {', '.join(SCENARIOS)}"
            )
        if not 1 <= self.scenario_day < self.days:
            first, last = self.start + timedelta(days=1), self.start + timedelta(self.days - 1)
            raise ValueError(
                f"scenario_start: {self.scenario_start} is outside the world's window "
                f"({first} .. {last}: the change must start after the first day)"
            )

    @property
    def truth_actions_days_range(self) -> tuple[int, int]:
        """The days [first, end) (0 = ``start``) whose history orders get truth for actions:
        every window of up to ``truth_actions_days`` days of mature orders ending at the
        history's last mature day (the history's events run to the world's end; outcomes are
        known 90 days on; one day's margin for where the export's last event falls), as
        ``returnrisk backtest`` chooses its default window; empty when ``truth_actions_days``
        is 0."""
        end = self.days - LABEL_WINDOW_DAYS
        if self.truth_actions_days == 0 or end <= 0:
            return (0, 0)
        return (max(0, end - self.truth_actions_days - 1), end)

    @property
    def scenario_day(self) -> int:
        """The day (0 = ``start``) the scenario's change begins."""
        if self.scenario_start is None:
            return round(SCENARIO_DEFAULT_AT * self.days)
        return (self.scenario_start - self.start).days


@dataclass
class World:
    """The generated world: contract tables (history), truth, and new orders to screen."""

    tables: dict[str, pd.DataFrame]
    truth: pd.DataFrame
    new: dict[str, pd.DataFrame] = field(default_factory=dict)
    config: SynthConfig | None = None
    scenario: dict[str, Any] | None = None  # what a non-stationary scenario chose
    # the generator's truth for actions on the new orders (``synth.actions.action_truth``)
    truth_actions: pd.DataFrame | None = None
