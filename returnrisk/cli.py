"""The one entry point: ``returnrisk COMMAND``. MLproject and the Makefile call it.

Each command parses its options into typed config objects here and passes them down.
Heavy libraries (lightgbm, mlflow) are imported inside the commands that use them,
so ``returnrisk validate`` starts fast.

Why one file over ~700 lines: it is the one entry point, a thin typed wrapper per command (options,
the output-path guard, errors to one line and an exit code); the work lives in the stages.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, cast

import typer

from returnrisk.errors import ReturnriskError
from returnrisk.labels import LABEL_WINDOW_DAYS
from returnrisk.progress import StepLog, library_logs
from returnrisk.train.names import CHAMPION, CHAMPION_URI, MODEL_NAME

app = typer.Typer(
    help="Pre-shipment after-sales risk scoring for cross-border e-commerce sellers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
import_app = typer.Typer(help="Import a real merchant export into a data directory.")
app.add_typer(import_app, name="import")
report_app = typer.Typer(help="Reports for people.")
app.add_typer(report_app, name="report")

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print no progress.")]
DataDir = Annotated[
    Path, typer.Argument(help="Merchant data directory (see `returnrisk contract`).")
]


def _print_version(value: bool) -> None:
    if value:
        from returnrisk import __version__

        typer.echo(f"returnrisk {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Pre-shipment after-sales risk scoring for cross-border e-commerce sellers."""


EXIT_NONE_SCORED = 3  # `score`: every order refused (cron jobs tell it from 0 and 1)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _check_out(out: Path, inputs: tuple[Path, ...] = (), *, code: int = 1, **kw: Any) -> None:
    """Refuse an output path that would overwrite an input or cannot be written (before any
    reading; see ``returnrisk.paths.check_output_path``)."""
    from returnrisk.paths import OutputPathError, check_output_path

    try:
        check_output_path(out, inputs, **kw)
    except OutputPathError as err:
        _fail(str(err), code)


def _write_failed(err: OSError, option: str = "--out") -> None:
    from returnrisk.paths import write_error

    _fail(write_error(err, option))


def _as_of_utc(text: str, example: str, code: int = 1) -> Any:  # a pd.Timestamp
    """``--as-of`` as a UTC timestamp, refused when unreadable or after the current time (labels
    read in the future would count orders of unknown outcome as mature negatives)."""
    import pandas as pd

    from returnrisk.arrays import to_utc
    from returnrisk.contract import latest_ts

    try:
        ts = pd.Timestamp(text)
    except ValueError:
        _fail(f"--as-of: cannot read {text!r} as a timestamp (e.g. {example})", code)
    ts = to_utc(ts)
    if ts > latest_ts():
        _fail(f"--as-of {text}: after the current time; outcomes are not known in the future", code)
    return ts


def _quiet_environment() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")


@app.command()
def contract() -> None:
    """Print the data contract, generated from the schemas the code enforces."""
    from returnrisk.contract import contract_markdown

    typer.echo(contract_markdown())


@app.command()
def validate(
    data: DataDir,
    refused_out: Annotated[
        Path | None,
        typer.Option(help="Write the rows that break a rule here, one CSV per table, to fix."),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Check a data directory against the contract; exit 0 when valid, 1 when not."""
    from returnrisk.contract import ContractError, load_tables

    if refused_out is not None:
        _check_out(refused_out, (data,), option="--refused-out", directory=True)
    log = StepLog(quiet)
    try:
        tables = load_tables(data, log=log)
    except ContractError as err:
        typer.echo(err.report(), err=True)
        if refused_out is not None and err.refused:
            try:
                refused_out.mkdir(parents=True, exist_ok=True)
                for name, rows in err.refused.items():
                    rows.to_csv(refused_out / f"{name}.refused.csv", index=False)
            except OSError as os_err:
                _write_failed(os_err, "--refused-out")
            typer.echo(f"refused rows written to {refused_out}", err=True)
        raise typer.Exit(1) from None
    typer.echo(tables.summary())
    typer.echo(f"{data}: valid")


# --- synth (owner: synth) ---


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the world into.")],
    orders: Annotated[
        int, typer.Option("--orders", min=10, help="Orders to generate (history + new).")
    ] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same bytes.")] = 0,
    new_days: Annotated[
        int,
        typer.Option("--new-days", min=0, help="Last D days of orders go to DIR/new/ (0: none)."),
    ] = 1,
    start: Annotated[
        str, typer.Option("--start", help="First day of the world, YYYY-MM-DD.")
    ] = "2024-01-01",
    days: Annotated[int, typer.Option("--days", min=2, help="Length of the world in days.")] = 540,
    scenario: Annotated[
        str,
        typer.Option(
            "--scenario",
            help="A change of the hidden causes: stationary (none), lane_collapse, "
            "de_minimis_drop, new_market, quality_drop (docs/synthetic-world.md).",
        ),
    ] = "stationary",
    scenario_start: Annotated[
        str | None,
        typer.Option(
            "--scenario-start", help="First day of the change, YYYY-MM-DD (default: 60 % in)."
        ),
    ] = None,
    truth_actions_days: Annotated[
        int,
        typer.Option(
            "--truth-actions-days",
            min=0,
            help="truth_actions.parquet also for the history orders of a backtest window of "
            "up to D days ending at the last mature day (default: backtest's 12 weeks); 0: "
            "new orders only.",
        ),
    ] = 84,
    quiet: Quiet = False,
) -> None:
    """Generate a synthetic cross-border world: every contract table + truth.parquet + new/."""
    from datetime import UTC, date, datetime, time, timedelta

    from returnrisk.synth import SynthConfig, generate_world, write_world
    from returnrisk.synth.scenarios import ScenarioError

    def day(option: str, text: str) -> date:
        try:
            return date.fromisoformat(text)
        except ValueError:
            _fail(f"{option}: not a date in YYYY-MM-DD form: {text!r}")

    first_day = day("--start", start)
    change_day = None if scenario_start is None else day("--scenario-start", scenario_start)
    try:
        cfg = SynthConfig(
            n_orders=orders,
            seed=seed,
            start=first_day,
            days=days,
            new_days=new_days,
            scenario=scenario,
            scenario_start=change_day,
            truth_actions_days=truth_actions_days,
        )
    except ValueError as err:
        field, _, rest = str(err).partition(": ")
        option = {"scenario": "--scenario", "scenario_start": "--scenario-start"}.get(field)
        _fail(f"{option}: {rest}" if option else str(err))
    from returnrisk.contract import EARLIEST_TS, latest_ts
    from returnrisk.paths import CONTRACT_FILES

    end = datetime.combine(cfg.start, time(), UTC) + timedelta(days=cfg.days)
    if cfg.start < EARLIEST_TS.date() or end > latest_ts():
        _fail(
            f"--start {start} --days {days}: the world would run to {end:%Y-%m-%d}; the contract "
            f"accepts timestamps from {EARLIEST_TS:%Y-%m-%d} to now"
        )
    _check_out(out, directory=True)
    if not (out / "truth.parquet").is_file() and any((out / f).is_file() for f in CONTRACT_FILES):
        _fail(f"--out {out}: holds a data directory synth did not write; choose a new directory")
    log = StepLog(quiet)
    try:
        world = generate_world(cfg, log=log)
    except ScenarioError as err:
        _fail(f"--scenario {scenario}: {str(err).removeprefix('scenario: ')}")
    try:
        write_world(world, out, log=log)
    except OSError as err:
        _write_failed(err)
    n_hist = len(world.tables["orders"])
    n_new = len(world.new.get("orders", ()))
    n_cases = len(world.tables["after_sales_cases"])
    typer.echo(
        f"wrote {out}: {n_hist:,} orders ({n_new:,} more in {out / 'new'}), {n_cases:,} cases"
    )
    if world.scenario is not None:
        typer.echo(f"scenario: {world.scenario} (also in {out / 'scenario.json'})")


# --- import (owner: importers) ---


def _run_import(
    run: Callable[..., Any], cfg: object, out: Path, quiet: bool, inputs: tuple[Path, ...]
) -> None:
    """Call an importer; turn its errors into messages; print its summary."""
    from returnrisk.contract import ContractError
    from returnrisk.importers import ImporterError

    _check_out(out, inputs, directory=True)
    log = StepLog(quiet)
    try:
        result = run(cfg, log=log)
    except ImporterError as err:
        _fail(str(err))
    except OSError as err:
        _write_failed(err)
    except ContractError as err:
        _fail("the imported tables break the contract (importer bug):\n" + err.report())
    typer.echo(result.report())
    typer.echo(f"wrote {out} (refused rows with their reason in {out / 'refused'})")


@import_app.command("online-retail")
def import_online_retail_cmd(
    files: Annotated[
        list[Path],
        typer.Argument(help="Online Retail (I or II) files: .parquet, .csv or .xlsx; merged."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Data directory to write.")],
    quiet: Quiet = False,
) -> None:
    """Import the UCI Online Retail / Online Retail II export (UK shop, one carrier unknown).

    Example: returnrisk import online-retail online_retail_II_2009_2010.parquet --out data/or
    """
    from returnrisk.importers import OnlineRetailConfig, import_online_retail

    cfg = OnlineRetailConfig(files=tuple(files), out=out)
    _run_import(import_online_retail, cfg, out, quiet, tuple(files))


@import_app.command("superstore")
def import_superstore_cmd(
    orders_csv: Annotated[
        Path, typer.Argument(help="Global Superstore order lines (CSV or .csv.zip, latin-1).")
    ],
    returns_csv: Annotated[Path, typer.Argument(help="Returns.csv (Returned, Order ID, Market).")],
    out: Annotated[Path, typer.Option("--out", help="Data directory to write.")],
    all_markets: Annotated[
        bool,
        typer.Option(
            "--all-markets",
            help="Keep markets that record no returns (there, 'no return' is unknown).",
        ),
    ] = False,
    return_lag_days: Annotated[
        int,
        typer.Option(min=0, help="Assumed days from ship date to a return's opened_ts."),
    ] = 14,
    quiet: Quiet = False,
) -> None:
    """Import Tableau's Global Superstore sample (returns joined on Order ID and Market).

    Example: returnrisk import superstore Global_Superstore2.csv.zip Returns.csv --out data/ss
    """
    from returnrisk.importers import SuperstoreConfig, import_superstore

    cfg = SuperstoreConfig(
        orders_csv=orders_csv,
        returns_csv=returns_csv,
        out=out,
        all_markets=all_markets,
        return_lag_days=return_lag_days,
    )
    _run_import(import_superstore, cfg, out, quiet, (orders_csv, returns_csv))


Salt = Annotated[
    str | None,
    typer.Option(
        "--salt",
        help="Secret for the customer key (a keyed hash of the buyer's e-mail / id); default: "
        "$RETURNRISK_SALT. Keep it the same for every import of the shop; never written down.",
        show_default=False,
    ),
]
Currency = Annotated[
    str | None,
    typer.Option(
        "--currency",
        help="Reporting currency; orders in another one are refused (default: the most "
        "frequent currency in the export).",
    ),
]
ShopCountry = Annotated[
    str | None,
    typer.Option("--shop-country", help="The seller's home country (ISO alpha-2): domestic."),
]


@import_app.command("shopify")
def import_shopify_cmd(
    files: Annotated[
        list[Path],
        typer.Argument(help="Shopify admin order exports (CSV); several are merged."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Data directory to write.")],
    salt: Salt = None,
    currency: Currency = None,
    shop_country: ShopCountry = None,
    refund_lag_days: Annotated[
        int,
        typer.Option(
            min=0,
            help="Assumed days from fulfilment (or the order, when unfulfilled) to a refund's "
            "opened_ts: the export has no refund time.",
        ),
    ] = 14,
    quiet: Quiet = False,
) -> None:
    """Import Shopify's "Export orders" CSV (one row per line item).

    Example: RETURNRISK_SALT=... returnrisk import shopify orders_export_1.csv --out data/shop
    """
    from returnrisk.importers import ShopifyConfig, import_shopify

    cfg = ShopifyConfig(
        files=tuple(files),
        out=out,
        salt=salt,
        currency=currency,
        shop_country=shop_country,
        refund_lag_days=refund_lag_days,
    )
    _run_import(import_shopify, cfg, out, quiet, tuple(files))


@import_app.command("amazon")
def import_amazon_cmd(
    orders: Annotated[
        list[Path],
        typer.Option("--orders", help="All Orders report (tab-separated); repeat to merge."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Data directory to write.")],
    fba_returns: Annotated[
        Path | None, typer.Option("--fba-returns", help="FBA customer returns report.")
    ] = None,
    mfn_returns: Annotated[
        Path | None,
        typer.Option("--mfn-returns", help="Merchant-fulfilled returns report (by return date)."),
    ] = None,
    salt: Salt = None,
    currency: Currency = None,
    shop_country: ShopCountry = None,
    quiet: Quiet = False,
) -> None:
    """Import Amazon Seller Central's All Orders and returns reports.

    Example: returnrisk import amazon --orders all_orders.txt --fba-returns fba.txt --out data/amz
    """
    from returnrisk.importers import AmazonConfig, import_amazon

    cfg = AmazonConfig(
        orders=tuple(orders),
        out=out,
        fba_returns=fba_returns,
        mfn_returns=mfn_returns,
        salt=salt,
        currency=currency,
        shop_country=shop_country,
    )
    inputs = tuple(f for f in (*orders, fba_returns, mfn_returns) if f is not None)
    _run_import(import_amazon, cfg, out, quiet, inputs)


@import_app.command("tracking")
def import_tracking_cmd(
    file: Annotated[Path, typer.Argument(help="Tracking export (CSV), per event or per shipment.")],
    into: Annotated[Path, typer.Option("--into", help="Data directory to add shipments to.")],
    quiet: Quiet = False,
) -> None:
    """Add shipments and carrier-side cases (lost, refused, damaged) from tracking events.

    Example: returnrisk import tracking aftership_export.csv --into data/shop
    """
    from returnrisk.importers import TrackingConfig, import_tracking
    from returnrisk.paths import CONTRACT_FILES

    # --into is updated in place by design (shipments, after_sales_cases): the export read must
    # not be one of its tables
    if file.resolve().parent == into.resolve() and file.name.lower() in CONTRACT_FILES:
        _fail(f"FILE {file}: is a table of --into {into}; importing it would overwrite it")
    _run_import(import_tracking, TrackingConfig(file=file, into=into), into, quiet, ())


# --- features (owner: features) ---


@app.command()
def features(
    data: DataDir,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file: .parquet or .csv.")],
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Export time (UTC); default: latest timestamp in DATA."),
    ] = None,
    label_window_days: Annotated[
        int, typer.Option("--label-window-days", min=1, help="Days after the order for a case.")
    ] = LABEL_WINDOW_DAYS,
    quiet: Quiet = False,
) -> None:
    """Build the point-in-time feature table (one row per order, with label and maturity)."""
    from returnrisk.contract import ContractError, load_tables
    from returnrisk.features import FeatureConfig, build_features
    from returnrisk.features.build import write_features

    if out.suffix.lower() not in (".parquet", ".csv"):
        _fail(f"--out must end in .parquet or .csv, got {out.name!r}")
    _check_out(out, (data,))
    as_of_ts = None if as_of is None else _as_of_utc(as_of, "2024-06-30T00:00:00Z")
    config = FeatureConfig(label_window_days=label_window_days)
    log = StepLog(quiet)
    try:
        tables = load_tables(data, log=log)
    except ContractError as err:
        typer.echo(err.report(), err=True)
        raise typer.Exit(1) from None
    try:
        frame = build_features(tables, as_of=as_of_ts, config=config, log=log)
    except ValueError as err:
        _fail(str(err))
    try:
        with log.step(f"writing {out}"):
            write_features(frame, out)
    except OSError as err:
        _write_failed(err)
    n_mature = int(frame["mature"].sum())
    rate = frame["label"].mean() if n_mature else float("nan")
    typer.echo(
        f"{out}: {len(frame):,d} orders, {n_mature:,d} mature (case rate {rate:.3f}), "
        f"{frame.shape[1]:,d} columns"
    )


# --- train / retrain / promote / rollback (owner: train) ---
TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking + registry store (default: $MLFLOW_TRACKING_URI, else "
        "sqlite:///mlflow.db in the working directory).",
    ),
]
AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of", help="Export time (UTC) labels are read at; default: latest timestamp."
    ),
]
TuneTrials = Annotated[
    int, typer.Option("--tune-trials", min=0, help="Optuna trials (0 = default parameters).")
]
Seed = Annotated[int, typer.Option("--seed", help="Seed of every random choice.")]
TestDays = Annotated[
    int | None,
    typer.Option("--test-days", min=1, help="Test slice = last N days of mature orders."),
]
LOCKED_EXIT = 75  # EX_TEMPFAIL: another retrain holds the store's lock; try again later


def _train_config(
    data: Path, as_of: str | None, tune_trials: int, seed: int, test_days: int | None
):  # lazy import of the config type
    from returnrisk.train.pipeline import SplitConfig, TrainConfig

    ts = None if as_of is None else _as_of_utc(as_of, "2026-01-31T00:00:00")
    split = SplitConfig(test_days=test_days) if test_days else SplitConfig()
    return TrainConfig(data=data, as_of=ts, seed=seed, tune_trials=tune_trials, split=split)


def _train_env() -> None:
    _quiet_environment()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # LightGBM's OpenMP threads sleep instead of spinning at barriers: on a shared 2-core
    # machine spinning makes training several times slower (must be set before import).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@contextmanager
def _mlflow_command(
    quiet: bool, tracking_uri: str | None, *, must_exist: bool, code: int = 1
) -> Iterator[Any]:
    """The entry of every command that touches MLflow: one StepLog (one clock) for the
    command, library logs routed through it, and the tracking store chosen and set once.
    ``must_exist``: the command only reads the registry, so a missing store is an error
    (never created; exit ``code``). Yields (log, store)."""
    _train_env()
    import mlflow  # noqa: F401  (MLflow sets up its loggers on import; they are routed next)

    from returnrisk.train.registry import RegistryError, open_store

    log = StepLog(quiet)
    with library_logs(log):
        try:
            store = open_store(tracking_uri, must_exist=must_exist)
        except RegistryError as err:
            _fail(str(err), code)
        yield log, store


def _interrupted(what: str, err: BaseException) -> None:
    from returnrisk.train.pipeline import Terminated

    sigterm = isinstance(err, Terminated)
    _fail(
        f"{what} interrupted ({'SIGTERM' if sigterm else 'Ctrl-C'}); its MLflow run was ended "
        "KILLED and nothing was promoted after that point",
        143 if sigterm else 130,
    )


@app.command()
def train(
    data: DataDir,
    as_of: AsOf = None,
    tune_trials: TuneTrials = 0,
    seed: Seed = 0,
    test_days: TestDays = None,
    tracking_uri: TrackingUri = None,
    quiet: Quiet = False,
) -> None:
    """Train a model on the mature orders (time split), log it to MLflow, register it
    as `return-risk` with alias @challenger."""
    from dataclasses import replace

    cfg = _train_config(data, as_of, tune_trials, seed, test_days)
    with _mlflow_command(quiet, tracking_uri, must_exist=False) as (log, store):
        from returnrisk.train.pipeline import sigterm_as_interrupt
        from returnrisk.train.pipeline import train as run_train

        log.info(f"tracking store {store.describe()}")
        try:
            with sigterm_as_interrupt():
                result = run_train(replace(cfg, tracking_uri=store.uri), log)
        except ReturnriskError as err:
            _fail(err.report())
        except FileNotFoundError as err:
            _fail(str(err))
        except KeyboardInterrupt as err:
            _interrupted("train", err)
    m = result.metrics
    typer.echo(
        f"{MODEL_NAME} v{result.version} @challenger (run {result.run_id}): test AUC "
        f"{m['auc']:.4f} AP {m['ap']:.4f} ECE {m['ece']:.4f} lift@5% {m['lift_at_5pct']:.2f}"
    )
    for name, b in result.baseline_metrics.items():
        typer.echo(f"  baseline {name:10s} AUC {b['auc']:.4f} AP {b['ap']:.4f} ECE {b['ece']:.4f}")


@app.command()
def retrain(
    data: DataDir,
    as_of: AsOf = None,
    tune_trials: TuneTrials = 0,
    seed: Seed = 0,
    test_days: TestDays = None,
    ap_margin: Annotated[
        float, typer.Option(help="Challenger AP may be at most this much below the champion's.")
    ] = 0.005,
    auc_margin: Annotated[
        float, typer.Option(help="Challenger AUC may be at most this much below the champion's.")
    ] = 0.005,
    max_ece: Annotated[
        float, typer.Option(help="Limit on the challenger's expected calibration error.")
    ] = 0.05,
    min_auc: Annotated[float, typer.Option(help="Absolute AUC gate (no champion yet).")] = 0.6,
    min_ap_lift: Annotated[
        float, typer.Option(help="Absolute gate (no champion): AP >= this x base rate.")
    ] = 1.2,
    tracking_uri: TrackingUri = None,
    quiet: Quiet = False,
) -> None:
    """Weekly job: train a challenger, compare it with @champion on the latest mature window,
    promote it only when every gate passes and @champion is still the version compared with.
    Exit 0 either way (the decision is printed); 75 when another retrain holds the store."""
    from dataclasses import replace

    cfg = _train_config(data, as_of, tune_trials, seed, test_days)
    with _mlflow_command(quiet, tracking_uri, must_exist=False) as (log, store):
        from returnrisk.train.pipeline import RetrainConfig, sigterm_as_interrupt
        from returnrisk.train.pipeline import retrain as run_retrain
        from returnrisk.train.registry import GateConfig, StoreLockedError, store_lock

        gate = GateConfig(
            ap_margin=ap_margin,
            auc_margin=auc_margin,
            max_ece=max_ece,
            min_auc=min_auc,
            min_ap_lift=min_ap_lift,
        )
        log.info(f"tracking store {store.describe()}")
        config = RetrainConfig(train=replace(cfg, tracking_uri=store.uri), gate=gate)
        try:
            with store_lock(store, log=log), sigterm_as_interrupt():
                result = run_retrain(config, log)
        except StoreLockedError as err:
            _fail(str(err), LOCKED_EXIT)
        except ReturnriskError as err:
            _fail(err.report())
        except FileNotFoundError as err:
            _fail(str(err))
        except KeyboardInterrupt as err:
            _interrupted("retrain", err)
    typer.echo(result.decision.summary)


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Registered version of return-risk.")],
    tracking_uri: TrackingUri = None,
    quiet: Quiet = False,
) -> None:
    """Point return-risk@champion at VERSION (by hand)."""
    with _mlflow_command(quiet, tracking_uri, must_exist=True) as (log, _store):
        from returnrisk.train.registry import RegistryError
        from returnrisk.train.registry import promote as do_promote

        try:
            previous = do_promote(version, reason="manual", log=log)
        except RegistryError as err:
            _fail(str(err))
    typer.echo(f"{MODEL_NAME}@{CHAMPION} -> v{version} (was {previous or 'none'})")


@app.command()
def rollback(tracking_uri: TrackingUri = None, quiet: Quiet = False) -> None:
    """Move return-risk@champion back to the previous champion."""
    with _mlflow_command(quiet, tracking_uri, must_exist=True) as (log, _store):
        from returnrisk.train.registry import RegistryError
        from returnrisk.train.registry import rollback as do_rollback

        try:
            current, target = do_rollback(log=log)
        except RegistryError as err:
            _fail(str(err))
    typer.echo(f"{MODEL_NAME}@{CHAMPION}: v{current} -> v{target}")


# --- score / serve (owner: serve) ---

ModelUri = Annotated[
    str, typer.Option("--model", help="Model URI (models:/NAME@ALIAS or models:/NAME/VERSION).")
]
FlagTop = Annotated[
    float | None,
    typer.Option("--flag-top", help="Flag the top PCT % of the batch (screening capacity)."),
]
FlagAbove = Annotated[
    float | None, typer.Option("--flag-above", help="Flag orders with probability >= P.")
]
CaseCost = Annotated[
    float | None,
    typer.Option("--case-cost", help="Cost of a case; flag when p x case cost > action cost."),
]
ActionCost = Annotated[
    float | None, typer.Option("--action-cost", help="Cost of acting on one flagged order.")
]
Levels = Annotated[
    str,
    typer.Option("--levels", help="Risk-score cut points (0-100) for elevated,highest."),
]


def _policy(
    flag_top: float | None,
    flag_above: float | None,
    case_cost: float | None,
    action_cost: float | None,
    levels: str,
    default_top: bool = True,
):
    from returnrisk.serve.policy import PolicyConfig, PolicyError

    try:
        lo, hi = (float(x) for x in levels.split(","))
    except ValueError:
        _fail(f"--levels must be two numbers like 20,40, got {levels!r}")
    try:
        if not default_top and flag_top is None and case_cost is None and action_cost is None:
            # the service's default: flag what reaches the "highest" level
            flag_above = hi / 100.0 if flag_above is None else flag_above
        return PolicyConfig(flag_top, flag_above, case_cost, action_cost, (lo, hi))
    except PolicyError as err:
        _fail(str(err))


@app.command()
def score(
    data: DataDir,
    orders: Annotated[
        Path, typer.Option("--orders", help="Directory of new orders (orders, order_lines, ...).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output file: .parquet or .csv.")],
    model: ModelUri = CHAMPION_URI,
    flag_top: FlagTop = None,
    flag_above: FlagAbove = None,
    case_cost: CaseCost = None,
    action_cost: ActionCost = None,
    levels: Levels = "20,40",
    explain: Annotated[
        str, typer.Option("--explain", help="Which orders get reasons: flagged, all or none.")
    ] = "flagged",
    show: Annotated[int, typer.Option("--show", help="Flagged orders to print.")] = 10,
    actions: Annotated[
        str,
        typer.Option(
            "--actions",
            help="What-if actions: flagged (the default, as the service's: recommended_action + "
            "expected_saving for the flagged orders), all (every scored order, + FILE_actions: "
            "the whole table) or none.",
        ),
    ] = "flagged",
    costs: Annotated[
        Path | None, typer.Option("--costs", help="Cost model YAML file (with --actions).")
    ] = None,
    tracking_uri: TrackingUri = None,
    quiet: Quiet = False,
) -> None:
    """Screen new orders before shipment: one output row per input order (scored or refused).

    Exit codes: 0 orders scored (some may be refused: see OUT_refused/); 1 bad input, option
    or model (nothing written); 2 usage error; 3 every order was refused, none scored (OUT and
    OUT_refused/ are written).
    """
    _quiet_environment()
    if out.suffix.lower() not in (".parquet", ".csv"):
        _fail(f"--out must end in .parquet or .csv, got {out.name}")
    _check_out(out, (data, orders))
    refused_next = out.with_name(f"{out.stem}_refused")
    _check_out(
        refused_next,
        (data, orders),
        directory=True,
        label=f"--out {out}: its refused-rows directory {refused_next}",
    )
    if explain not in ("flagged", "all", "none"):
        _fail(f"--explain must be flagged, all or none, got {explain!r}")
    policy = _policy(flag_top, flag_above, case_cost, action_cost, levels)
    if actions not in ("none", "flagged", "all"):
        _fail(f"--actions must be none, flagged or all, got {actions!r}")
    if costs is not None:  # a bad cost file: refused before any work
        from returnrisk.costs import CostFileError, read_cost_file

        try:
            read_cost_file(costs)
        except CostFileError as err:
            _fail(str(err))
    from returnrisk.contract import ContractError
    from returnrisk.serve.scoring import (
        BatchConfig,
        Explain,
        ScoreConfig,
        format_flagged,
        run_batch,
    )

    mode = cast(Explain, explain)  # one of Explain's values: checked above
    score_cfg = ScoreConfig(policy=policy, explain=mode)
    cfg = BatchConfig(data, orders, out, model, score_cfg, show, actions=actions, costs=costs)
    # the store must exist, but bad input is reported first: load_model checks it
    with _mlflow_command(quiet, tracking_uri, must_exist=False) as (log, _store):
        try:
            result, written, refused_dir = run_batch(cfg, log=log)
        except ContractError as err:
            typer.echo(err.report(), err=True)
            raise typer.Exit(1) from None
        except ReturnriskError as err:
            _fail(err.report())
        except OSError as err:
            _write_failed(err)
    typer.echo(format_flagged(result, show))  # the result, not progress: printed even if quiet
    typer.echo(f"wrote {written} ({len(result.results):,d} rows)")
    if refused_dir is not None:
        typer.echo(f"refused orders written to {refused_dir}/ for fixing and resending")
    if result.n_scored == 0 and result.n_refused > 0:
        _fail(f"--orders {orders}: every order was refused, none scored", code=EXIT_NONE_SCORED)


@app.command()
def serve(
    data: Annotated[Path, typer.Option("--data", help="History data directory.")],
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    model: ModelUri = CHAMPION_URI,
    flag_top: FlagTop = None,
    flag_above: FlagAbove = None,
    case_cost: CaseCost = None,
    action_cost: ActionCost = None,
    levels: Levels = "20,40",
    max_body: Annotated[
        int, typer.Option("--max-body", help="Request body limit in bytes (413 above).")
    ] = 1_000_000,
    watch_window: Annotated[
        int,
        typer.Option(
            "--watch-window", min=1, help="Orders in the rolling window of the watch gauges."
        ),
    ] = 5_000,
    watch_min_orders: Annotated[
        int,
        typer.Option(
            "--watch-min-orders",
            min=1,
            help="Orders in the window before a watch gauge (score PSI, rates) is reported.",
        ),
    ] = 300,
    costs: Annotated[
        Path | None,
        typer.Option(
            "--costs",
            help="Cost model YAML file of the what-if actions (default: the documented "
            "assumptions, case costs from the history).",
        ),
    ] = None,
    tracking_uri: TrackingUri = None,
    quiet: Quiet = False,
) -> None:
    """Serve POST /v1/score and friends (set RETURNRISK_API_KEY to require a bearer key)."""
    _quiet_environment()
    # the model and its monitoring reference are downloaded at start and on every reload
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not data.is_dir():
        _fail(f"--data: not a directory: {data}")
    policy = _policy(flag_top, flag_above, case_cost, action_cost, levels, default_top=False)
    if watch_min_orders > watch_window:
        _fail(
            f"--watch-min-orders {watch_min_orders} > --watch-window {watch_window}: "
            "the window could never report; lower it or widen the window"
        )
    from returnrisk.costs import CostFileError, read_cost_file

    try:  # a bad cost file: refused before anything is loaded
        overrides = read_cost_file(costs) if costs is not None else {}
    except CostFileError as err:
        _fail(str(err))
    import uvicorn

    from returnrisk.serve.app import ServeConfig, create_app, make_loader

    cfg = ServeConfig(
        data=data,
        model_uri=model,
        policy=policy,
        max_body_bytes=max_body,
        api_key=os.environ.get("RETURNRISK_API_KEY") or None,
        watch_window=watch_window,
        watch_min_orders=watch_min_orders,
        costs=overrides,
        costs_source=str(costs) if costs is not None else "defaults",
    )
    with _mlflow_command(quiet, tracking_uri, must_exist=True) as (log, store):
        app_ = create_app(cfg, loader=make_loader(data, model, log=log))
        log.info(f"model {model} from {store.describe()}")
        log.info(f"serving on http://{host}:{port} (ready when GET /readyz answers 200)")
        uvicorn.run(app_, host=host, port=port, log_level="warning" if quiet else "info")


# --- report skus (owner: report) ---


@report_app.command("skus")
def report_skus(
    data: DataDir,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="HTML file to write (self-contained page).")
    ] = Path("sku_report.html"),
    window: Annotated[
        str, typer.Option("--window", help="Recent orders to review, e.g. 28d or 4w.")
    ] = "28d",
    model: ModelUri = CHAMPION_URI,
    tracking_uri: TrackingUri = None,
    quiet: Quiet = False,
) -> None:
    """Merchandiser SKU risk review: one HTML page ranking SKUs by expected after-sales cases."""
    _quiet_environment()
    _check_out(out, (data,))
    from mlflow.exceptions import MlflowException

    from returnrisk.contract import ContractError
    from returnrisk.serve.report_skus import ReportConfig, parse_window, write_report
    from returnrisk.train.registry import RegistryError

    try:
        config = ReportConfig(window_days=parse_window(window))
    except ReturnriskError as err:
        _fail(err.report())
    with _mlflow_command(quiet, tracking_uri, must_exist=False) as (log, _store):
        try:  # load_model refuses a missing store (never creates one), after the input checks
            path = write_report(data, out, config=config, model_uri=model, log=log)
        except ContractError as err:
            typer.echo(err.report(), err=True)
            raise typer.Exit(1) from None
        except RegistryError as err:
            _fail(f"cannot load model: {err.report()}")
        except ReturnriskError as err:
            _fail(err.report())
        except (FileNotFoundError, NotADirectoryError) as err:
            _fail(str(err))
        except MlflowException as err:
            _fail(f"cannot load model {model}: {err.message.splitlines()[0]}")
        except OSError as err:
            _write_failed(err)
    typer.echo(str(path))


# --- monitor (owner: monitor) ---


@app.command()
def monitor(
    data: DataDir,
    out: Annotated[Path, typer.Option("--out", help="Directory for monitor.json + monitor.html.")],
    model: ModelUri = CHAMPION_URI,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Monitor as of this time (UTC); nothing later is read."),
    ] = None,
    days: Annotated[
        int | None,
        typer.Option("--days", min=1, help="Drift window: orders of the last N days [config: 7]."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Alert thresholds etc., YAML or JSON (docs/operations.md)."),
    ] = None,
    tracking_uri: TrackingUri = None,
    quiet: Quiet = False,
) -> None:
    """Watch the champion before its labels arrive: drift, expected and early-realised cases,
    realised metrics of mature cohorts, alerts. Exit 0 no alert, 1 an alert fired, 2 bad input."""
    import dataclasses

    from returnrisk.serve.monitor import load_config

    try:
        cfg = load_config(config)
        if days is not None:
            cfg = dataclasses.replace(cfg, days=days)
    except ReturnriskError as err:
        _fail(err.report(), 2)
    _check_out(out, (data,), code=2, directory=True)
    ts = None if as_of is None else _as_of_utc(as_of, "2026-01-31T00:00:00", code=2)
    # reads the registry (never creates a store) and logs a monitoring run into that store
    with _mlflow_command(quiet, tracking_uri, must_exist=True, code=2) as (log, _store):
        from mlflow.exceptions import MlflowException

        from returnrisk.contract import ContractError
        from returnrisk.serve.monitor import run_monitor
        from returnrisk.train.registry import RegistryError

        try:
            result, paths, run_id = run_monitor(
                data, out, model_uri=model, as_of=ts, config=cfg, log=log
            )
        except ContractError as err:
            typer.echo(err.report(), err=True)
            raise typer.Exit(2) from None
        except RegistryError as err:
            _fail(f"cannot load model: {err.report()}", 2)
        except ReturnriskError as err:
            _fail(err.report(), 2)
        except (FileNotFoundError, NotADirectoryError) as err:
            _fail(str(err), 2)
        except MlflowException as err:
            _fail(f"cannot load model {model}: {err.message.splitlines()[0]}", 2)
        except OSError as err:
            _fail(f"--out: cannot write {err.filename or out}: {err.strerror or err}", 2)
    alerts = result.alerts
    for a in alerts:
        typer.echo(f"ALERT {a['metric']}: {a['message']} (threshold {a['threshold']})")
    typer.echo(
        f"monitor v{result.report['model']['version']} as of {result.report['as_of'][:16]}: "
        f"{len(alerts)} alert(s); wrote {paths[0]} and {paths[1]} (MLflow run {run_id})"
    )
    raise typer.Exit(1 if alerts else 0)


# --- backtest (owner: decisions; code in serve/backtest.py) ---


@app.command()
def backtest(
    data: DataDir,
    out: Annotated[Path, typer.Option("--out", help="Directory for backtest.json + .html.")],
    policy: Annotated[
        list[Path] | None,
        typer.Option("--policy", help="Policy YAML file (repeatable; default: top 5 %/day)."),
    ] = None,
    costs: Annotated[
        Path | None, typer.Option("--costs", help="Cost model YAML file (default: assumptions).")
    ] = None,
    date_from: Annotated[
        str | None, typer.Option("--from", help="First day, YYYY-MM-DD (default: 12 weeks).")
    ] = None,
    date_to: Annotated[
        str | None, typer.Option("--to", help="Last day, YYYY-MM-DD (default: last mature).")
    ] = None,
    weeks: Annotated[
        int,
        typer.Option("--weeks", min=1, help="Window length without --from, in weeks."),
    ] = 12,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Replay a registered model (default: train one as of --from)."
        ),
    ] = None,
    tracking_uri: TrackingUri = None,
    quiet: Quiet = False,
) -> None:
    """Replay screening policies over a past window of mature orders: what would they have saved?"""
    inputs = (data, *(policy or ()), *((costs,) if costs else ()))
    _check_out(out, inputs, directory=True)
    # a replayed model is read from the registry (never creating a store); else none is touched
    with _mlflow_command(quiet, tracking_uri, must_exist=model is not None) as (log, _store):
        from returnrisk.contract import ContractError
        from returnrisk.serve.backtest import backtest_dir

        try:
            result, j, h = backtest_dir(
                data, out, policy_files=policy or (), costs_file=costs, date_from=date_from,
                date_to=date_to, weeks=weeks, model_uri=model, log=log,
            )  # fmt: skip
        except ContractError as err:
            typer.echo(err.report(), err=True)
            raise typer.Exit(1) from None
        except ReturnriskError as err:
            _fail(err.report())
        except OSError as err:
            _write_failed(err)
    w = result.report["window"]
    typer.echo(
        f"backtest {w['from']} .. {w['to']}: {w['orders']:,} mature orders, model "
        f"{result.report['model']}"
    )
    for name, pol in result.report["policies"].items():
        lo, hi = pol["net_saving_ci90"]
        typer.echo(
            f"{name}: net saving {pol['net_saving']:,.0f} EUR (90 % interval {lo:,.0f} .. "
            f"{hi:,.0f}), {pol['flagged']:,} orders flagged"
        )
    typer.echo(f"{j}\n{h}")


# --- demo (owner: integrator) ---


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--workdir", help="Where the demo world goes.")] = Path(
        "demo"
    ),
    orders: Annotated[int, typer.Option("--orders", help="Orders in the demo world.")] = 30_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the demo world.")] = 42,
    tracking_uri: TrackingUri = None,
    quiet: Quiet = False,
) -> None:
    """The whole journey on built-in demo data: synth, validate, retrain (champion gate),
    screen a day of new orders, write the merchandiser SKU report, backtest the default
    screening policy in money."""
    _quiet_environment()
    data = workdir / "data"
    steps = [
        ("generate a synthetic cross-border world", lambda: synth(data, orders, seed, quiet=quiet)),
        ("validate it against the data contract", lambda: validate(data, quiet=quiet)),
        (
            "weekly retrain: challenger vs champion",
            lambda: retrain(data, tracking_uri=tracking_uri, quiet=quiet),
        ),
        (
            "screen today's new orders (top 5 % flagged)",
            lambda: score(
                data,
                data / "new",
                workdir / "screened.csv",
                flag_top=5.0,
                show=10,
                tracking_uri=tracking_uri,
                quiet=quiet,
            ),
        ),
        (
            "write the merchandiser SKU report",
            lambda: report_skus(
                data, workdir / "sku_report.html", tracking_uri=tracking_uri, quiet=quiet
            ),
        ),
        (
            # the last mature week (a model trained as of its start): short, so the demo stays
            # quick; `returnrisk backtest` replays 12 weeks by default
            "backtest the default policy (top 5 % a day, recommended action) on the last "
            "mature week",
            lambda: backtest(
                data, workdir / "backtest", weeks=1, tracking_uri=tracking_uri, quiet=quiet
            ),
        ),
    ]
    for i, (title, run) in enumerate(steps, 1):
        typer.secho(f"\n== {i}/{len(steps)} {title}", bold=True)
        run()
    typer.secho(f"\nSKU report: {(workdir / 'sku_report.html').resolve()}", bold=True)
    typer.secho(f"Backtest: {(workdir / 'backtest' / 'backtest.html').resolve()}", bold=True)


if __name__ == "__main__":  # `python -m returnrisk.cli ...` (what MLproject runs)
    app()
