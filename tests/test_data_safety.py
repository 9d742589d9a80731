"""Trust: data is never lost or silently wrong, and bad input never gives a traceback.

Outputs never overwrite inputs; every numeric value is finite; timestamps lie between
2000-01-01 and the (injectable) clock, so a refused row can never move ``as_of``; ids hold no
control characters; each ``score`` run's refused rows are that run's only; ``score`` exits 3
when nothing could be scored; unreadable values, files and output paths give one line.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from returnrisk.cli import app
from returnrisk.contract import (
    EARLIEST_TS,
    SCHEMAS,
    TABLE_NAMES,
    ContractError,
    check_frames,
    coerce_tables,
    contract_markdown,
    latest_ts,
    load_tables,
    row_problems,
    write_tables,
)
from returnrisk.paths import CONTRACT_FILES, OutputPathError, check_output_path
from tests.test_contract import _GOOD_ROWS, tiny_frames

runner = CliRunner()

FLOAT_COLUMNS = [(t, c.name) for t, s in SCHEMAS.items() for c in s.columns if c.kind == "float"]
TS_COLUMNS = [(t, c.name) for t, s in SCHEMAS.items() for c in s.columns if c.kind == "timestamp"]
# the duty rules' dates may be announced ahead: the only timestamps allowed after now
FUTURE_OK = {(t, c.name) for t, s in SCHEMAS.items() for c in s.columns if c.future}
ID_COLUMNS = [(t, c.name) for t, s in SCHEMAS.items() for c in s.columns if c.no_control]
NOW = pd.Timestamp("2024-03-01", tz="UTC")  # the injected clock: later than every tiny row


def _digest(path: Path) -> dict[str, str]:
    """File name -> sha256 of every file under ``path`` (to prove nothing was touched)."""
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _one_line_error(res, *words: str) -> None:
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.output
    for word in words:
        assert word in errors[0], (word, res.output)


def _problems(frames: dict[str, pd.DataFrame], now: pd.Timestamp = NOW) -> list:
    return check_frames(frames, now=now)[1]


# ---------------------------------------------------------------------------------------------
# fixtures: a small model on the session's synthetic world, for the score command


@pytest.fixture
def scoring_env(registry, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = registry[0]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    return uri


def _new_orders(synth_world: Path, out: Path, change=None, fmt: str = "parquet") -> Path:
    """A copy of the world's new orders (optionally changed: ``change(orders, lines)``)."""
    frames = {p.stem: pd.read_parquet(p) for p in (synth_world / "new").glob("*.parquet")}
    if change is not None:
        frames["orders"], frames["order_lines"] = change(
            frames["orders"].copy(), frames["order_lines"].copy()
        )
    write_tables(frames, out, fmt=fmt)
    return out


def _score(history: Path, orders: Path, out: Path):
    return runner.invoke(
        app, ["score", str(history), "--orders", str(orders), "--out", str(out), "-q"]
    )


# ---------------------------------------------------------------------------------------------
# 1. an output never overwrites an input


@pytest.mark.parametrize("name", sorted(CONTRACT_FILES))
def test_output_path_refuses_every_contract_table_name_of_an_input_directory(
    tmp_path: Path, name: str
) -> None:
    data = tmp_path / "hist"
    data.mkdir()
    with pytest.raises(OutputPathError, match="would replace that table"):
        check_output_path(data / name, [data])
    with pytest.raises(OutputPathError, match="would replace that table"):
        check_output_path(data / "new" / name.upper(), [data])  # deeper, other case
    check_output_path(data / f"scored_{name}", [data])  # another name is fine
    check_output_path(tmp_path / name, [data])  # outside the input directory is fine


def test_output_path_refuses_an_input_itself_and_a_directory_holding_one(tmp_path: Path) -> None:
    data, raw = tmp_path / "hist", tmp_path / "raw.csv"
    data.mkdir()
    raw.write_text("x\n")
    with pytest.raises(OutputPathError, match="is the input"):
        check_output_path(data, [data], directory=True)
    with pytest.raises(OutputPathError, match="is the input"):
        check_output_path(tmp_path / "." / "raw.csv", [raw])
    with pytest.raises(OutputPathError, match="contains the input"):
        check_output_path(tmp_path, [raw], directory=True)
    link = tmp_path / "link.csv"
    link.symlink_to(raw)
    with pytest.raises(OutputPathError, match="is the input"):
        check_output_path(link, [raw])
    check_output_path(data / "refused", [data], directory=True)  # a new sub-directory is fine


def test_score_refuses_to_overwrite_the_history_before_reading(
    synth_world: Path, tmp_path: Path
) -> None:
    """The reported bug: `score HIST --orders NEW --out HIST/orders.parquet` exited 0."""
    hist = tmp_path / "hist"
    shutil.copytree(synth_world, hist)
    before = _digest(hist)
    # no model registry is configured: the command must stop before loading anything
    for out in (hist / "orders.parquet", hist / "new" / "order_lines.csv", hist / "skus.csv"):
        res = _score(hist, hist / "new", out)
        _one_line_error(res, "--out", "would replace that table")
    assert _digest(hist) == before


def test_score_refuses_when_its_refused_directory_is_the_input(
    synth_world: Path, tmp_path: Path
) -> None:
    """Resending fixed refused orders from `s_refused/` with `--out s.csv` would clear them."""
    refused = _new_orders(synth_world, tmp_path / "s_refused", fmt="csv")
    before = _digest(refused)
    res = _score(synth_world, refused, tmp_path / "s.csv")
    _one_line_error(res, "refused-rows directory", "is the input")
    assert _digest(refused) == before


@pytest.mark.parametrize(
    "args",
    [
        ["features", "{h}", "--out", "{h}/orders.parquet"],
        ["features", "{h}", "--out", "{h}/customers.csv"],
        ["validate", "{h}", "--refused-out", "{h}"],
        ["report", "skus", "{h}", "--out", "{h}/skus.csv"],
        ["synth", "--out", "{h}/orders.csv"],
        ["synth", "--out", "{h}", "--orders", "100"],  # a directory synth did not write
        ["import", "online-retail", "{h}/raw.csv", "--out", "{h}"],
        ["import", "online-retail", "{h}/raw.csv", "--out", "{h}/raw.csv"],
        ["import", "superstore", "{h}/raw.csv", "{h}/returns.csv", "--out", "{h}"],
        ["score", "{h}", "--orders", "{h}/new", "--out", "{h}/new/orders.parquet"],
    ],
)
def test_every_writing_command_refuses_to_overwrite_an_input(
    tiny_dir: Path, args: list[str]
) -> None:
    before = _digest(tiny_dir)
    res = runner.invoke(app, [a.format(h=tiny_dir) for a in args])
    _one_line_error(res, "--")
    assert _digest(tiny_dir) == before


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    """A valid merchant directory (CSV) with a new/ sub-directory and two raw export files."""
    data = tmp_path / "hist"
    write_tables(tiny_frames(), data, fmt="csv")
    write_tables({k: tiny_frames()[k] for k in ("orders", "order_lines")}, data / "new")
    (data / "raw.csv").write_text("Invoice,StockCode\n1,A\n")
    (data / "returns.csv").write_text("Returned,Order ID,Market\n")
    return data


def test_demo_workdir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    workdir.write_text("not a directory")
    res = runner.invoke(app, ["demo", "--workdir", str(workdir), "--orders", "100", "-q"])
    _one_line_error(res, "--out", "is a file")
    assert workdir.read_text() == "not a directory"


# ---------------------------------------------------------------------------------------------
# 2. every numeric value is finite


@pytest.mark.parametrize(("table", "column"), FLOAT_COLUMNS)
@pytest.mark.parametrize("text", ["inf", "-inf", "1e309", "Infinity"])
def test_every_float_column_must_be_finite(table: str, column: str, text: str) -> None:
    frames = tiny_frames()
    df = frames[table].astype({column: object})
    df.loc[df.index[0], column] = text
    frames[table] = df
    found = [p for p in _problems(frames) if (p.table, p.column) == (table, column)]
    assert any(p.rule.startswith("finite") for p in found), found
    key = SCHEMAS[table].key
    assert str(df[key].iloc[0]) in {k for p in found for k in p.keys}
    # the service's one-row screen flags it too (a typed row: the float itself)
    row = {**_GOOD_ROWS.get(table, {}), column: float(text)}
    assert f"{column}: finite" in row_problems(table, row, latest=latest_ts(NOW))


@pytest.mark.parametrize(
    ("table", "column"),
    [(t, c.name) for t, s in SCHEMAS.items() for c in s.columns if c.kind == "float"],
)
def test_nan_in_a_float_column_is_a_missing_value(table: str, column: str) -> None:
    frames = tiny_frames()
    frames[table] = frames[table].assign(**{column: np.nan})
    nullable = next(c for c in SCHEMAS[table].columns if c.name == column).nullable
    found = [p for p in _problems(frames) if (p.table, p.column) == (table, column)]
    assert bool(found) == (not nullable)
    row = {**_GOOD_ROWS.get(table, {}), column: float("nan")}
    assert (f"{column}: not null" in row_problems(table, row)) == (not nullable)


def test_validate_refuses_infinite_money_from_csv(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["orders"] = frames["orders"].assign(order_value=["inf", "40.0"])
    frames["order_lines"] = frames["order_lines"].assign(unit_price=["60", "1e309", "40"])
    write_tables(frames, tmp_path / "d", fmt="csv")
    res = runner.invoke(app, ["validate", str(tmp_path / "d"), "-q"])
    assert res.exit_code == 1
    assert "orders.order_value: finite" in res.output
    assert "order_lines.unit_price: finite" in res.output
    assert "Traceback" not in res.output


def test_score_refuses_infinite_order_value(
    synth_world: Path, tmp_path: Path, scoring_env: str
) -> None:
    """The reported bug: an `inf` order_value was scored ("inf above the duty-free limit")."""

    def change(orders, lines):
        orders.loc[orders.index[0], "order_value"] = np.inf
        return orders, lines

    new = _new_orders(synth_world, tmp_path / "new", change)
    out = tmp_path / "s.csv"
    res = _score(synth_world, new, out)
    assert res.exit_code == 0, res.output
    scored = pd.read_csv(out, dtype={"order_id": str}).set_index("order_id")
    first = pd.read_parquet(new / "orders.parquet")["order_id"].iloc[0]
    assert scored.loc[first, "status"] == "refused"
    assert "order_value: finite" in scored.loc[first, "refused_reason"]
    assert not scored["reason_1"].fillna("").str.contains("inf").any()


# ---------------------------------------------------------------------------------------------
# 3. timestamps lie between 2000-01-01 and the clock: a refused row never moves as_of


@pytest.mark.parametrize(("table", "column"), TS_COLUMNS)
@pytest.mark.parametrize("when", ["2100-01-01", "1700-06-01", "1999-12-31 23:59:59"])
def test_every_timestamp_column_is_refused_outside_the_range(
    table: str, column: str, when: str
) -> None:
    frames = tiny_frames()
    df = frames[table].astype({column: object})
    df.loc[df.index[0], column] = when
    frames[table] = df
    found = [p for p in _problems(frames) if (p.table, p.column) == (table, column)]
    rule = "not in the future" if when > "2000" else "not before 2000-01-01"
    ts = pd.Timestamp(when, tz="UTC").to_pydatetime()
    row = {**_GOOD_ROWS.get(table, {}), column: ts}
    one = row_problems(table, row, latest=latest_ts(NOW))
    if rule == "not in the future" and (table, column) in FUTURE_OK:
        assert found == []
        assert f"{column}: {rule}" not in one
        return
    assert any(p.rule.startswith(rule) for p in found), found
    assert f"{column}: {rule}" in one


def test_the_clock_is_injectable() -> None:
    """The tiny world's last event is a case opened 2024-01-20 09:00."""
    frames = tiny_frames()
    late = [p for p in _problems(frames, pd.Timestamp("2024-01-20 08:00", tz="UTC"))]
    assert [(p.table, p.column, p.keys) for p in late] == [
        ("after_sales_cases", "opened_ts", ("k1",))
    ]
    assert _problems(frames, pd.Timestamp("2024-01-20 09:00", tz="UTC")) == []
    with pytest.raises(ContractError, match="not in the future"):
        coerce_tables(frames, now=pd.Timestamp("2024-01-15", tz="UTC"))
    assert coerce_tables(frames, now=NOW).as_of() == pd.Timestamp("2024-01-20 09:00", tz="UTC")


def test_a_future_first_seen_ts_cannot_move_as_of(tmp_path: Path) -> None:
    """The reported bug: one first_seen_ts in 2100 passed validate and moved as_of, turning
    orders of unknown outcome into mature training negatives."""
    frames = tiny_frames()
    frames["customers"] = frames["customers"].assign(first_seen_ts=["2100-01-01", None])
    write_tables(frames, tmp_path / "d", fmt="csv")
    with pytest.raises(ContractError) as info:
        load_tables(tmp_path / "d")
    assert [(p.table, p.column, p.keys) for p in info.value.problems] == [
        ("customers", "first_seen_ts", ("c1",))
    ]
    refused = info.value.refused["customers"]
    assert refused["customer_id"].tolist() == ["c1"]
    assert refused["problem"].str.contains("not in the future").all()
    for args in (["validate", "{d}"], ["features", "{d}", "--out", "{t}/f.csv"]):
        res = runner.invoke(app, [a.format(d=tmp_path / "d", t=tmp_path) for a in args])
        assert res.exit_code == 1
        assert "customers.first_seen_ts: not in the future" in res.output
    assert not (tmp_path / "f.csv").exists()


def test_as_of_option_after_the_clock_is_refused(tiny_dir: Path, tmp_path: Path) -> None:
    for cmd in ("features", "train"):
        args = [cmd, str(tiny_dir), "--as-of", "2100-01-01"]
        args += ["--out", str(tmp_path / "f.csv")] if cmd == "features" else []
        _one_line_error(runner.invoke(app, args), "--as-of", "after the current time")


def test_contract_states_the_timestamp_range() -> None:
    text = contract_markdown()
    for table, column in TS_COLUMNS:
        row = next(line for line in text.splitlines() if line.startswith(f"| {column} |"))
        if (table, column) in FUTURE_OK:
            assert f"not before {EARLIEST_TS:%Y-%m-%d} (may be in the future)" in row, row
        else:
            assert f"{EARLIEST_TS:%Y-%m-%d} .. now" in row, (table, row)
    assert "2000-01-01 .. now" in runner.invoke(app, ["contract"]).output
    docs = (Path(__file__).parents[1] / "docs" / "data-contract.md").read_text()
    assert "2000-01-01 .. now" in docs
    assert "finite" in docs
    assert "control characters" in docs


def test_new_orders_in_the_future_are_refused_by_the_scorer(synth_world: Path) -> None:
    from returnrisk.features import prepare_history
    from returnrisk.serve.scoring import HistoryIndex, read_new_orders, validate_new

    tables = load_tables(synth_world)
    history = HistoryIndex(prepare_history(tables).ids)
    raw = read_new_orders(synth_world / "new")
    first = raw["orders"]["order_id"].iloc[0]
    orders = raw["orders"].copy()
    orders.loc[orders.index[0], "order_ts"] = pd.Timestamp("2100-01-01", tz="UTC")
    v = validate_new({**raw, "orders": orders}, history)
    assert list(v.reasons.index) == [first]
    assert "orders.order_ts: not in the future" in v.reasons[first]
    assert first not in set(v.orders["order_id"])  # its time can never become the as_of
    # with the clock injected before the world's new orders, every one of them is refused
    early = validate_new(raw, history, now=tables.as_of() - pd.Timedelta(days=1))
    assert len(early.orders) == 0
    assert len(early.reasons) == len(raw["orders"])


@pytest.mark.parametrize(("start", "days"), [("2090-01-01", "540"), ("1999-06-01", "30")])
def test_synth_refuses_a_world_outside_the_timestamp_range(
    tmp_path: Path, start: str, days: str
) -> None:
    args = ["synth", "--out", str(tmp_path / "w"), "--orders", "100"]
    res = runner.invoke(app, [*args, "--start", start, "--days", days])
    _one_line_error(res, "--start", "2000-01-01 to now")
    assert not (tmp_path / "w").exists()


# ---------------------------------------------------------------------------------------------
# 4. and 5. each score run's refusals are its own; exit 3 when nothing could be scored


def test_a_clean_score_run_removes_the_previous_runs_refusals(
    synth_world: Path, tmp_path: Path, scoring_env: str
) -> None:
    def one_bad(orders, lines):
        orders.loc[orders.index[0], "destination_country"] = "ZZ"
        return orders, lines

    def other_bad(orders, lines):
        orders.loc[orders.index[1], "order_value"] = -1.0
        return orders, lines

    out, refused = tmp_path / "s.csv", tmp_path / "s_refused"
    ids = pd.read_parquet(synth_world / "new" / "orders.parquet")["order_id"].tolist()
    assert (
        _score(synth_world, _new_orders(synth_world, tmp_path / "a", one_bad), out).exit_code == 0
    )
    assert pd.read_csv(refused / "orders.csv")["order_id"].tolist() == [ids[0]]
    # a run with other refusals: only its own rows are in s_refused/
    assert (
        _score(synth_world, _new_orders(synth_world, tmp_path / "b", other_bad), out).exit_code == 0
    )
    assert pd.read_csv(refused / "orders.csv")["order_id"].tolist() == [ids[1]]
    # a clean run: no refused directory at all
    res = _score(synth_world, synth_world / "new", out)
    assert res.exit_code == 0
    assert "refused orders written" not in res.output
    assert not refused.exists()
    # a parquet run never leaves the csv files of an earlier run
    _score(synth_world, _new_orders(synth_world, tmp_path / "c", one_bad), out)
    _score(synth_world, _new_orders(synth_world, tmp_path / "d", other_bad), tmp_path / "s.parquet")
    assert sorted(p.name for p in refused.iterdir()) == ["order_lines.parquet", "orders.parquet"]


def test_score_exits_3_when_every_order_is_refused(
    synth_world: Path, tmp_path: Path, scoring_env: str
) -> None:
    def all_bad(orders, lines):
        return orders.assign(destination_country="ZZ"), lines

    out = tmp_path / "s.csv"
    res = _score(synth_world, _new_orders(synth_world, tmp_path / "new", all_bad), out)
    assert res.exit_code == 3, res.output
    assert "every order was refused" in res.output
    assert "Traceback" not in res.output
    results = pd.read_csv(out)
    assert len(results) > 0
    assert (results["status"] == "refused").all()
    assert (tmp_path / "s_refused" / "orders.csv").is_file()
    res = _score(synth_world, _new_orders(synth_world, tmp_path / "one", None), out)
    assert res.exit_code == 0, res.output


def test_score_help_lists_the_exit_codes() -> None:
    res = runner.invoke(app, ["score", "--help"])
    text = " ".join(res.output.split())
    assert "Exit codes" in text
    assert "3 every order was refused" in text
    for doc in ("README.md", "docs/operations.md"):
        body = (Path(__file__).parents[1] / doc).read_text()
        assert "every order was refused" in body, doc
        assert "3" in body, doc


# ---------------------------------------------------------------------------------------------
# 6. no control characters in ids


@pytest.mark.parametrize(("table", "column"), ID_COLUMNS)
@pytest.mark.parametrize("bad", ["\x00", "\n", "\t", "\x1b[31m", "\x7f", "\x85"])
def test_control_characters_in_ids_are_refused(table: str, column: str, bad: str) -> None:
    frames = tiny_frames()
    df = frames[table].astype({column: object})
    value = f"x{bad}y"
    df.loc[df.index[0], column] = value
    frames[table] = df
    found = [p for p in _problems(frames) if (p.table, p.column) == (table, column)]
    assert any(p.rule.startswith("no control characters") for p in found), found
    assert all(bad not in str(p) for p in found)  # the message stays one printable line
    row = {**_GOOD_ROWS.get(table, {}), column: value}
    assert f"{column}: no control characters" in row_problems(table, row)


def test_id_rule_covers_the_keys_and_references() -> None:
    names = {c for _, c in ID_COLUMNS}
    assert {"order_id", "sku_id", "customer_id", "carrier_id", "case_id"} <= names
    assert row_problems("orders", _GOOD_ROWS["orders"]) == []


def test_nul_in_a_csv_order_id_is_refused_by_validate(tmp_path: Path) -> None:
    frames = tiny_frames()
    frames["orders"] = frames["orders"].assign(order_id=["o1", "o2\x00"])
    write_tables(frames, tmp_path / "d", fmt="csv")
    res = runner.invoke(app, ["validate", str(tmp_path / "d"), "-q"])
    assert res.exit_code == 1
    assert "orders.order_id: no control characters" in res.output
    assert "\x00" not in res.output


# ---------------------------------------------------------------------------------------------
# 7. one line, never a traceback


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_integer_that_does_not_fit_is_a_wrong_value(tmp_path: Path, fmt: str) -> None:
    frames = tiny_frames()
    frames["order_lines"] = frames["order_lines"].assign(quantity=[1.0, 1e20, 2.0])
    write_tables(frames, tmp_path / "d", fmt=fmt)
    res = runner.invoke(app, ["validate", str(tmp_path / "d"), "-q"])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output, res.output
    assert "order_lines.quantity: wrong type: expected int" in res.output
    # already-typed int64 beyond 2**53, and a float code beyond int64 in a string column
    frames = tiny_frames()
    frames["order_lines"] = frames["order_lines"].assign(quantity=np.array([1, 2**60, 1]))
    frames["skus"] = frames["skus"].assign(supplier_id=[1e20, None])
    found = {(p.table, p.column, p.rule.split(":")[0]) for p in _problems(frames)}
    assert ("order_lines", "quantity", "wrong type") in found
    assert coerce_tables(
        {**tiny_frames(), "skus": tiny_frames()["skus"].assign(supplier_id=[1e20, None])}, now=NOW
    ).skus["supplier_id"].iloc[0] == str(1e20)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_score_refuses_an_integer_that_does_not_fit(
    synth_world: Path, tmp_path: Path, scoring_env: str, fmt: str
) -> None:
    def huge(orders, lines):
        lines = lines.astype({"quantity": "float64"})
        lines.loc[lines.index[0], "quantity"] = 1e20
        return orders, lines

    new = _new_orders(synth_world, tmp_path / "new", huge, fmt=fmt)
    res = _score(synth_world, new, tmp_path / "s.csv")
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output, res.output
    scored = pd.read_csv(tmp_path / "s.csv")
    reasons = scored["refused_reason"].dropna()
    assert len(reasons) == 1
    assert "quantity: wrong type: expected int" in reasons.iloc[0]


def test_a_semicolon_csv_names_its_delimiter(tmp_path: Path) -> None:
    write_tables(tiny_frames(), tmp_path / "d", fmt="csv")
    tiny_frames()["orders"].to_csv(tmp_path / "d" / "orders.csv", index=False, sep=";")
    res = runner.invoke(app, ["validate", str(tmp_path / "d"), "-q"])
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    line = next(x for x in res.output.splitlines() if "orders.csv" in x)
    assert "one column" in line
    assert "';'" in line
    assert "rows" not in line


def test_score_with_a_semicolon_csv_is_one_line(synth_world: Path, tmp_path: Path) -> None:
    new = _new_orders(synth_world, tmp_path / "new", fmt="csv")
    pd.read_csv(new / "orders.csv").to_csv(new / "orders.csv", index=False, sep=";")
    res = _score(synth_world, new, tmp_path / "s.csv")
    _one_line_error(res, "orders.csv", "';'")


@pytest.mark.parametrize(
    "args",
    [
        ["score", "{w}", "--orders", "{w}/new", "--out", "{f}/s.csv"],
        ["features", "{w}", "--out", "{f}/f.parquet"],
        ["features", "{w}", "--out", "{f}/deeper/f.csv"],
        ["synth", "--out", "{f}/world", "--orders", "100"],
        ["validate", "{w}", "--refused-out", "{f}/r"],
        ["report", "skus", "{w}", "--out", "{f}/r.html"],
        ["import", "superstore", "{w}/a.csv", "{w}/b.csv", "--out", "{f}/ss"],
    ],
)
def test_an_output_under_a_file_is_one_line(synth_world: Path, tmp_path: Path, args) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(app, [a.format(w=synth_world, f=blocker) for a in args])
    _one_line_error(res, "is a file")
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
@pytest.mark.parametrize("cmd", ["score", "features", "synth"])
def test_an_output_in_a_read_only_directory_is_one_line(
    synth_world: Path, tmp_path: Path, cmd: str
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        args = {
            "score": ["score", str(synth_world), "--orders", str(synth_world / "new")],
            "features": ["features", str(synth_world)],
            "synth": ["synth", "--orders", "100"],
        }[cmd] + ["--out", str(locked / ("w" if cmd == "synth" else "s.csv"))]
        _one_line_error(runner.invoke(app, args), "not writable")
    finally:
        locked.chmod(0o755)


def test_a_failing_write_is_one_line(
    synth_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scoring_env: str
) -> None:
    """What the permission check cannot see (a read-only mount, a full disk, root squash)."""

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "out" / "x"))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", refuse)
    monkeypatch.setattr(pd.DataFrame, "to_csv", refuse)
    for args in (
        ["features", str(synth_world), "--out", str(tmp_path / "out" / "f.parquet"), "-q"],
        ["synth", "--out", str(tmp_path / "out" / "w"), "--orders", "100", "-q"],
        ["score", str(synth_world), "--orders", str(synth_world / "new")]
        + ["--out", str(tmp_path / "out" / "s.csv"), "-q"],
    ):
        _one_line_error(runner.invoke(app, args), "cannot write", "Permission denied")


def test_every_table_file_name_is_guarded() -> None:
    assert {f"{t}.parquet" for t in TABLE_NAMES} | {f"{t}.csv" for t in TABLE_NAMES} == (
        CONTRACT_FILES
    )


@pytest.fixture(scope="module")
def service(synth_world: Path, registry):
    """(a test client of the service on the module's @champion, a one-order body of new/)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette prefers httpx2 at import
        from fastapi.testclient import TestClient

    from returnrisk.serve.app import ServeConfig, create_app, orders_to_json
    from returnrisk.serve.scoring import ScoringState, read_new_orders
    from returnrisk.train.registry import load_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", registry[0])
        mp.setenv("MLFLOW_REGISTRY_URI", registry[0])
        state = ScoringState(load_tables(synth_world), load_model())
    body = orders_to_json(read_new_orders(synth_world / "new"))
    with TestClient(create_app(ServeConfig(), state=state)) as client:
        yield client, {**body, "orders": body["orders"][:1]}


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("order_ts", "2100-01-01T00:00:00Z", "orders.order_ts: not in the future"),
        ("order_ts", "1700-01-01T00:00:00Z", "orders.order_ts: not before 2000-01-01"),
        ("order_id", "A-1\u0000", "orders.order_id: no control characters"),
        ("customer_id", "C\u001b[31m", "orders.customer_id: no control characters"),
    ],
)
def test_the_service_refuses_what_validate_refuses(service, column: str, value: str, rule: str):
    """One order over HTTP (the online fast path screens it with row_problems, the full path
    words the refusal) gets the same rule as `validate` and `score`."""
    client, body = service
    clean = client.post("/v1/score", json=body)
    assert clean.json()["results"][0]["status"] == "scored", clean.text
    resp = client.post("/v1/score", json={**body, "orders": [{**body["orders"][0], column: value}]})
    assert resp.status_code == 200, resp.text
    result = resp.json()["results"][0]
    assert result["status"] == "refused", result
    assert rule in result["reason"], result
