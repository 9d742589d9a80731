"""Benchmark batch screening and the HTTP service; prints JSON.

Setup (not timed as a goal): a synthetic world of ``--orders`` orders whose last ``--new-days``
days are the new orders; the first ``--batch`` of those are screened. A model is trained on the
history's mature orders (``RiskModel``, in memory, saved as a pickle for the server process).

1. **batch**: ``ScoringState.score`` on the new orders with reasons for the top 5 %, history
   already loaded (``load_tables`` + state built before the clock starts). Goal <= 10 s. Then
   the what-if actions of the flagged orders (``with_actions``, what ``score`` adds by
   default): with them over without (the second run), goal <= 2.
2. **service**: the app runs in its own process (``uvicorn``, one worker, loopback) on the same
   history; the load generator is this process, a single asyncio loop speaking raw HTTP/1.1
   keep-alive on the same 2-core machine (both compete for the CPUs: said in the JSON).
   - single-order requests (half at the orders' own times, half placed after the export);
     open loop: sent on a fixed schedule at ``--rate`` req/s for
     ``--seconds`` s, each on a free keep-alive connection (a new one if none is free), whatever
     the answers do; latency counts from the scheduled send time (no coordinated omission);
     goal p50 <= 5 ms, p99 <= 25 ms at 200 req/s.
   - closed loop: ``--clients`` clients each sending one request after the other for
     ``--seconds`` s: the highest throughput, with the error count.

Usage: python benchmarks/bench_serve.py [--orders 300000] [--new-days 180] [--batch 100000]
       [--rate 200] [--seconds 10] [--clients 50] [--skip-service]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCORE_PATH = "/v1/score"  # + "?actions=..." with --actions (default: the service's, flagged)

SERVER = """
import sys, warnings
warnings.simplefilter("ignore")
import uvicorn
from returnrisk.contract import load_tables
from returnrisk.serve.app import ServeConfig, create_app
from returnrisk.serve.policy import PolicyConfig
from returnrisk.serve.scoring import ScoringState
from returnrisk.train.pyfunc import read_risk_model

class Loaded:
    def __init__(self, rm):
        self.risk_model, self.version, self.uri = rm, "bench", "file"
        self.run_id, self.metrics, self.data_window = "", {}, {}

state = ScoringState(load_tables(sys.argv[1]), Loaded(read_risk_model(sys.argv[2])))
app = create_app(ServeConfig(policy=PolicyConfig(flag_above=0.3)), state=state)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="error", access_log=False)
"""


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(tmp: Path, n_orders: int, new_days: int, n_batch: int, seed: int) -> dict:
    """World on disk (history + new), a trained model pickled; returns paths and figures."""
    import pandas as pd

    from returnrisk.contract import load_tables
    from returnrisk.features import FEATURE_SPECS, build_features
    from returnrisk.synth import SynthConfig, generate_world, write_world
    from returnrisk.train.model import RiskModel
    from returnrisk.train.pyfunc import save_risk_model

    t0 = time.perf_counter()
    world = generate_world(SynthConfig(n_orders=n_orders, seed=seed, new_days=new_days))
    new = world.new
    keep = new["orders"].sort_values(["order_ts", "order_id"]).head(n_batch)
    world.new = {
        **new,
        "orders": keep,
        "order_lines": new["order_lines"].loc[
            new["order_lines"]["order_id"].isin(keep["order_id"])
        ],
    }
    write_world(world, tmp / "world")
    tables = load_tables(tmp / "world")
    feats = build_features(tables)
    mature = feats.loc[feats["mature"]]
    cut = int(len(mature) * 0.85)
    names = list(FEATURE_SPECS)
    model = RiskModel(n_estimators=300, early_stopping_rounds=30, seed=seed).fit(
        mature[names].iloc[:cut],
        mature["label"].iloc[:cut],
        mature[names].iloc[cut:],
        mature["label"].iloc[cut:],
    )
    save_risk_model(model, tmp / "model")
    return {
        "history_orders": len(tables.orders),
        "new_orders": len(keep),
        "setup_seconds": round(time.perf_counter() - t0, 1),
        "as_of": str(pd.Timestamp(tables.as_of())),
    }


def bench_batch(tmp: Path) -> dict:
    from returnrisk.contract import load_tables
    from returnrisk.serve.policy import PolicyConfig
    from returnrisk.serve.scoring import ScoreConfig, ScoringState, read_new_orders
    from returnrisk.train.pyfunc import read_risk_model

    class Loaded:
        def __init__(self, rm):
            self.risk_model, self.version, self.uri = rm, "bench", "file"
            self.run_id, self.metrics, self.data_window = "", {}, {}

    tables = load_tables(tmp / "world")
    raw = read_new_orders(tmp / "world" / "new")
    t0 = time.perf_counter()
    state = ScoringState(tables, Loaded(read_risk_model(tmp / "model" / "risk_model.pkl")))
    state_s = time.perf_counter() - t0
    cfg = ScoreConfig(policy=PolicyConfig(flag_top=5), explain="flagged")
    t0 = time.perf_counter()
    result = state.score(raw, cfg)
    seconds = time.perf_counter() - t0
    # a second run: the same bytes (deterministic) and the steady-state time
    t0 = time.perf_counter()
    again = state.score(raw, cfg)
    seconds2 = time.perf_counter() - t0
    same = result.results.equals(again.results)
    # what `score` adds by default (--actions flagged): the what-if actions of the flagged 5 %
    from returnrisk.costs import resolve_costs
    from returnrisk.serve.decisions import with_actions

    costs = resolve_costs(None, tables.after_sales_cases)
    t0 = time.perf_counter()
    with_actions(state, raw, again, costs, "flagged")
    actions_s = time.perf_counter() - t0
    return {
        "orders": len(raw["orders"]),
        "scored": result.n_scored,
        "refused": result.n_refused,
        "flagged_with_reasons": result.n_flagged,
        "seconds": round(seconds, 2),
        "seconds_second_run": round(seconds2, 2),
        "state_build_seconds": round(state_s, 2),
        "actions_flagged_seconds": round(actions_s, 2),
        "with_actions_over_without": round((seconds2 + actions_s) / seconds2, 2),
        "deterministic": bool(same),
        "goal_seconds": 10,
        "peak_rss_mb": round(_peak_mb()),
    }


# ---------------------------------------------------------------------------------------------
# a minimal HTTP/1.1 keep-alive client (the load generator)


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes) -> int:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


async def open_loop(
    port: int, bodies: list[bytes], rate: float, seconds: float, max_conns: int = 256
) -> dict:
    n = int(rate * seconds)
    idle: asyncio.Queue[Conn] = asyncio.Queue()
    lat: list[float] = []
    errors = {"status": 0, "exception": 0, "timeout": 0}
    opened = 0
    t0 = time.perf_counter() + 0.1

    async def one(i: int) -> None:
        nonlocal opened
        scheduled = t0 + i / rate
        conn = None
        try:
            if idle.empty() and opened < max_conns:
                opened += 1
                conn = await Conn.open(port)
            else:  # at the connection cap: wait for a free one (the wait counts as latency)
                conn = await idle.get()
            status = await asyncio.wait_for(conn.post(SCORE_PATH, bodies[i % len(bodies)]), 120)
            lat.append(time.perf_counter() - scheduled)
            if status != 200:
                errors["status"] += 1
            idle.put_nowait(conn)
        except TimeoutError:
            errors["timeout"] += 1
            if conn is not None:
                conn.close()
                idle.put_nowait(await Conn.open(port))
        except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError):
            errors["exception"] += 1
            if conn is not None:
                conn.close()
                idle.put_nowait(await Conn.open(port))

    tasks = []
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    send_end = time.perf_counter()
    await asyncio.gather(*tasks)
    drained = time.perf_counter()
    while not idle.empty():
        idle.get_nowait().close()
    ms = np.asarray(lat) * 1000
    return {
        "offered_rps": rate,
        "requests": n,
        "schedule_rps": round(n / (send_end - t0), 1),
        "completed": len(lat),
        "answered_rps": round(len(lat) / (drained - t0), 1),
        "errors": errors,
        "connections_opened": opened,
        "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
        "p90_ms": round(float(np.percentile(ms, 90)), 2) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
        "max_ms": round(float(ms.max()), 2) if len(ms) else None,
        "goal": "p50 <= 5 ms, p99 <= 25 ms",
    }


async def closed_loop(port: int, bodies: list[bytes], clients: int, seconds: float) -> dict:
    lat: list[float] = []
    errors = {"status": 0, "exception": 0}
    stop = time.perf_counter() + seconds

    async def client(k: int) -> None:
        conn = await Conn.open(port)
        i = k
        while time.perf_counter() < stop:
            start = time.perf_counter()
            try:
                status = await conn.post(SCORE_PATH, bodies[i % len(bodies)])
                lat.append(time.perf_counter() - start)
                if status != 200:
                    errors["status"] += 1
            except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError):
                errors["exception"] += 1
                conn.close()
                conn = await Conn.open(port)
            i += clients
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - t0
    ms = np.asarray(lat) * 1000
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "completed": len(lat),
        "throughput_rps": round(len(lat) / elapsed, 1),
        "errors": errors,
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
    }


def _single_order_bodies(new_dir: Path, as_of: str) -> tuple[list[bytes], int]:
    """Up to 500 single-order request bodies, each carrying only the static rows it needs, and
    how many are placed before the export: half at their own time (the day's orders, mostly
    before the export's last event), half placed in the hour after the export."""
    import pandas as pd

    from returnrisk.contract import read_frames
    from returnrisk.serve.app import orders_to_json
    from returnrisk.serve.scoring import NEW_TABLES

    frames, _ = read_frames(new_dir, NEW_TABLES, required=())
    first = frames["orders"].head(500)
    lines = frames["order_lines"]
    frames = {
        **frames,
        "orders": first,
        "order_lines": lines.loc[lines["order_id"].isin(first["order_id"])],
    }
    body = orders_to_json(frames)
    extra = {k: v for k, v in body.items() if k != "orders"}
    skus = {s["sku_id"]: s for s in extra.get("skus", [])}
    customers = {c["customer_id"]: c for c in extra.get("customers", [])}
    bodies = []
    start = pd.Timestamp(as_of) + pd.Timedelta(hours=1)
    before_export = 0
    for i, order in enumerate(body["orders"][:500]):
        if i % 2:
            order = {**order, "order_ts": (start + pd.Timedelta(seconds=i)).isoformat()}
        before_export += pd.Timestamp(order["order_ts"]) <= pd.Timestamp(as_of)
        b = {"orders": [order]}
        sk = [skus[ln["sku_id"]] for ln in order["lines"] if ln["sku_id"] in skus]
        if sk:
            b["skus"] = sk
        if order["customer_id"] in customers:
            b["customers"] = [customers[order["customer_id"]]]
        bodies.append(json.dumps(b).encode())
    return bodies, before_export


def _wait_ready(port: int) -> None:
    import httpx

    for _ in range(1200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet: poll again
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def _sequential(port: int, bodies: list[bytes]) -> dict:
    """Latency at no load: one client, one request at a time (the first two are warm-up)."""
    import httpx

    seq = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
        for b in bodies:
            t = time.perf_counter()
            r = c.post(SCORE_PATH, content=b, headers={"content-type": "application/json"})
            assert r.status_code == 200, r.text[:300]
            seq.append(time.perf_counter() - t)
    seq_ms = np.asarray(seq[2:]) * 1000
    return {
        "requests": len(seq_ms),
        "p50_ms": round(float(np.percentile(seq_ms, 50)), 1),
        "p99_ms": round(float(np.percentile(seq_ms, 99)), 1),
    }


def _scoring_paths(port: int) -> dict[str, int]:
    """Requests per scoring path, from the server's /metrics."""
    import httpx

    paths = {}
    for ln in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
        if ln.startswith("returnrisk_score_requests_total{"):
            paths[ln.split('path="')[1].split('"')[0]] = int(float(ln.split()[-1]))
    return paths


def _rss_mb(pid: int) -> int:
    rss = Path(f"/proc/{pid}/status").read_text()
    return round(
        int(next(ln for ln in rss.splitlines() if ln.startswith("VmRSS")).split()[1]) / 1024
    )


def bench_service(
    tmp: Path,
    as_of: str,
    rate: float,
    seconds: float,
    clients: int,
    *,
    sequential_only: bool = False,
) -> dict:
    bodies, before_export = _single_order_bodies(tmp / "world" / "new", as_of)
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVER,
            str(tmp / "world"),
            str(tmp / "model" / "risk_model.pkl"),
            str(port),
        ],
        env=env,
    )
    try:
        _wait_ready(port)
        n_seq = 12 if sequential_only else 50
        out = {"sequential_one_client": _sequential(port, bodies[:n_seq])}
        if not sequential_only:
            out["open_loop"] = asyncio.run(open_loop(port, bodies, rate, seconds))
            out["closed_loop"] = asyncio.run(closed_loop(port, bodies, clients, seconds))
        out["requests_by_scoring_path"] = _scoring_paths(port)  # online: fast path; batch: fallback
        out["bodies_before_export"] = f"{before_export} of {len(bodies)}"
        out["server_rss_mb"] = _rss_mb(proc.pid)
        out["load_generator"] = (
            "same 2-core machine, one asyncio process speaking raw HTTP/1.1 keep-alive; "
            "server: uvicorn, 1 worker, separate process"
        )
        return out
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=300_000)
    p.add_argument("--new-days", type=int, default=180)
    p.add_argument("--batch", type=int, default=100_000)
    p.add_argument("--service-orders", type=int, default=20_000)
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-service", action="store_true")
    p.add_argument("--skip-batch", action="store_true")
    p.add_argument(
        "--actions", choices=["none", "flagged", "all"], default=None,
        help="the service's ?actions= (default: its own, flagged: what-ifs for flagged orders)",
    )  # fmt: skip
    args = p.parse_args()
    global SCORE_PATH
    if args.actions is not None:
        SCORE_PATH = f"/v1/score?actions={args.actions}"
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import warnings

    warnings.simplefilter("ignore")
    out: dict = {"benchmark": "serve", "cpus": os.cpu_count(), "score_path": SCORE_PATH}
    if not args.skip_batch:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            out["batch_setup"] = setup(tmp, args.orders, args.new_days, args.batch, args.seed)
            out["batch"] = bench_batch(tmp)
            if not args.skip_service:
                out["service_big_history"] = bench_service(
                    tmp, out["batch_setup"]["as_of"], 0, 0, 0, sequential_only=True
                )
    if not args.skip_service:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            out["service_setup"] = setup(tmp, args.service_orders, 30, 2_000, args.seed)
            out["service"] = bench_service(
                tmp, out["service_setup"]["as_of"], args.rate, args.seconds, args.clients
            )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
