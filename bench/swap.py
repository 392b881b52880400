#!/usr/bin/env python3
"""The hot-reload benchmark: hotserve under steady load while its model is swapped N times.

    bench/swap.sh [--swaps 6] [--concurrency 16] ...        (or .venv/bin/python bench/swap.py)

What it does, all on 127.0.0.1, every wait bounded:

1. `scripts/setup.sh test` (MLflow into .venv) and
   `cargo build --release --bin hotserve --example loadgen`.
2. A throwaway `mlflow server` (temporary directory, SQLite backend, proxied artifacts, free
   port). `tests/it/support/register.py` registers `tests/fixtures/sentiment` as version 1 and
   `tests/fixtures/sentiment_v2` as version 2 of `sentiment`; alias `champion` -> 1.
3. Start-to-ready times (registry up): `--starts` cold starts (each with an empty cache
   directory: resolve, download, validate) and `--starts` warm starts (restarts with the cache
   of the first cold start: resolve, cached copy, validate).
4. The swap run: `hotserve serve --model-uri models:/sentiment@champion --poll-interval 500ms`
   with a fresh cache; `target/release/examples/loadgen` (closed loop, `--concurrency`
   connections, one CSV row per request); `--steady` seconds of steady state; then `--swaps`
   times: move `champion` to the other version (MLflow's REST API, the same call
   `MlflowClient.set_registered_model_alias` makes, so that no Python start-up competes for the
   CPU inside the window), poll `/health` until the new version is live, wait `--settle` s.
5. Analysis of the CSV: requests, failures (any non-200 or no response), stale answers (a
   request that started after `/health` showed the new version but was answered by the old
   one), latency inside swap windows (alias move -> new version live + `--window-tail`) versus
   steady state (everything else after the first second), alias-move-to-live per swap.

The report is printed and written to `bench/results/swap-<timestamp>.md`, the raw data (CSV,
loadgen summary, server logs, events) to `bench/results/swap-<timestamp>.logs/`. The exit
status is 1 if any request failed, any answer was stale or any swap did not complete. Every
process it starts (MLflow, hotserve, loadgen) is stopped on exit, Ctrl-C included.

Runs with any Python 3.9+ (standard library only); MLflow itself runs from .venv.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
MODEL_NAME = "sentiment"
ALIAS = "champion"
V1_DIR = "tests/fixtures/sentiment"
V2_DIR = "tests/fixtures/sentiment_v2"

# Hard bounds on every wait.
MLFLOW_STARTUP_TIMEOUT = 120.0
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0


def log(msg: str) -> None:
    print(f"swap: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes: every child gets its own process group (so a terminal Ctrl-C reaches only us and we
# stop them in order) and PR_SET_PDEATHSIG (so they die with us even if we are SIGKILLed).
# ---------------------------------------------------------------------------------------------

_children: list[tuple[str, subprocess.Popen, int]] = []


def _child_setup() -> None:
    os.setpgid(0, 0)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(name: str, argv: list[str], log_path: Path, env: dict[str, str],
          stop_signal: int = signal.SIGTERM) -> subprocess.Popen:
    out = open(log_path, "ab")
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT, preexec_fn=_child_setup)
    out.close()
    _children.append((name, proc, stop_signal))
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT):
    """Signals the child's process group, waits, then kills the group; returns the exit code."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"pid {proc.pid} did not stop within {timeout:.0f} s; killing it")
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group (MLflow's uvicorn worker)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        return proc.wait(5)
    except subprocess.TimeoutExpired:
        return None


def stop_all() -> None:
    while _children:
        name, proc, sig = _children.pop()
        if proc.poll() is None:
            log(f"stopping {name} (pid {proc.pid})")
        stop(proc, sig)


def forget(proc: subprocess.Popen) -> None:
    _children[:] = [c for c in _children if c[1] is not proc]


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------------------------------------
# HTTP helpers (loopback only)
# ---------------------------------------------------------------------------------------------

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method: str, url: str, body: dict | None = None, timeout: float = 5.0):
    """(status, parsed JSON or text); status 0 when nothing answered."""
    assert url.startswith("http://127.0.0.1:"), url
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with _no_proxy.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    except (urllib.error.URLError, OSError):
        return 0, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, interval: float, what: str, proc=None, log_path=None):
    """Calls check() until it returns a true value (returned) or `timeout` passes (raises)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited ({proc.returncode}); "
                               f"see {log_path}:\n{tail(log_path)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not done within {timeout:.0f} s"
                               + (f"; see {log_path}:\n{tail(log_path)}" if log_path else ""))
        time.sleep(interval)


def tail(path, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# MLflow
# ---------------------------------------------------------------------------------------------

def clean_env() -> dict[str, str]:
    """The caller's environment without MLflow / hotserve settings that could change the run."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "HOTSERVE_")) and k != "MODEL_URI"}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", NO_PROXY="127.0.0.1",
               no_proxy="127.0.0.1")
    return env


def start_mlflow(tmp: Path, logs: Path) -> str:
    port = free_port()
    env = clean_env()
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    argv = [str(VENV / "bin/mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db",
            "--artifacts-destination", str(tmp / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    proc = spawn("mlflow", argv, logs / "mlflow.log", env)
    url = f"http://127.0.0.1:{port}"
    t = time.monotonic()
    wait_until(lambda: http("GET", f"{url}/health")[0] == 200, MLFLOW_STARTUP_TIMEOUT, 0.25,
               "the MLflow server", proc, logs / "mlflow.log")
    log(f"MLflow server on {url} (healthy after {time.monotonic() - t:.1f} s)")
    return url


def register(tracking_uri: str, commands: list[dict], logs: Path) -> list[dict]:
    env = clean_env()
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    with open(logs / "register.log", "ab") as err:
        out = subprocess.run([str(VENV / "bin/python"), "tests/it/support/register.py",
                              json.dumps(commands)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=err, stdin=subprocess.DEVNULL, timeout=300, check=True)
    return json.loads(out.stdout)


def set_alias(tracking_uri: str, version: str) -> None:
    status, body = http("POST", f"{tracking_uri}/api/2.0/mlflow/registered-models/alias",
                        {"name": MODEL_NAME, "alias": ALIAS, "version": version}, timeout=30)
    if status != 200:
        raise RuntimeError(f"moving {ALIAS} to version {version} failed: {status} {body}")


# ---------------------------------------------------------------------------------------------
# hotserve
# ---------------------------------------------------------------------------------------------

class Hotserve:
    def __init__(self, binary: Path, tracking_uri: str, cache: Path, log_path: Path,
                 poll_interval: str, extra: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = clean_env()
        env["MLFLOW_TRACKING_URI"] = tracking_uri
        argv = [str(binary), "serve", "--model-uri", f"models:/{MODEL_NAME}@{ALIAS}",
                "--listen", f"127.0.0.1:{self.port}", "--poll-interval", poll_interval,
                "--cache-dir", str(cache), "--log-format", "json", *extra]
        self.started = time.monotonic()
        self.proc = spawn("hotserve", argv, log_path, env)

    def wait_ready(self) -> float:
        """Seconds from spawn to the first 200 from /health/ready."""
        wait_until(lambda: http("GET", f"{self.url}/health/ready", timeout=2)[0] == 200,
                   READY_TIMEOUT, 0.01, "hotserve readiness", self.proc, self.log_path)
        return time.monotonic() - self.started

    def health(self) -> dict:
        status, body = http("GET", f"{self.url}/health", timeout=5)
        return body if status == 200 and isinstance(body, dict) else {}

    def version(self) -> str | None:
        return ((self.health().get("model") or {}).get("version"))

    def memory_kb(self) -> dict:
        out = {}
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                key = line.split(":")[0]
                if key in ("VmRSS", "VmHWM", "Threads"):
                    out[key] = int(line.split()[1])
        except OSError:
            pass
        return out

    def stop(self):
        code = stop(self.proc, signal.SIGTERM)
        forget(self.proc)
        return code


# ---------------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------------

def pct(sorted_values: list[int], p: float) -> float:
    """Nearest-rank percentile, in ms, of sorted microsecond values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-p * len(sorted_values) // 100))))
    return sorted_values[rank - 1] / 1000.0


def latency_stats(rows: list[tuple], seconds: float) -> dict:
    lat = sorted(r[1] for r in rows)
    return {
        "requests": len(rows),
        "rps": len(rows) / seconds if seconds > 0 else float("nan"),
        "p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99),
        "max": lat[-1] / 1000.0 if lat else float("nan"),
        "failed": sum(1 for r in rows if r[2] != 200),
    }


def read_csv(path: Path) -> list[tuple]:
    rows = []
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            rows.append((int(rec["start_us"]), int(rec["latency_us"]), int(rec["status"]),
                         rec["model_version"], rec["error"]))
    return rows


def analyse(rows: list[tuple], swaps: list[dict], t0_us: int, window_tail: float,
            warmup: float) -> dict:
    """Splits requests by start time into swap windows and steady state (times in s since the
    load generator's t0)."""
    def off(unix_s: float) -> float:
        return unix_s - t0_us / 1e6

    windows = []
    for s in swaps:
        if s.get("live_at") is None:
            continue
        windows.append((off(s["move_started_at"]), off(s["live_at"]) + window_tail))
    end = max((r[0] + r[1] for r in rows), default=0) / 1e6

    def in_window(start_s: float) -> bool:
        return any(a <= start_s < b for a, b in windows)

    swap_rows, steady_rows = [], []
    for r in rows:
        start_s = r[0] / 1e6
        if in_window(start_s):
            swap_rows.append(r)
        elif start_s >= warmup:
            steady_rows.append(r)
    window_seconds = sum(min(b, end) - a for a, b in windows)
    steady_seconds = max(0.0, end - warmup - window_seconds)

    per_swap = []
    for s in swaps:
        if s.get("live_at") is None:
            per_swap.append({**s, "stats": None})
            continue
        a, b = off(s["move_started_at"]), off(s["live_at"]) + window_tail
        live = off(s["live_at"])
        moved = off(s["moved_at"])
        in_it = [r for r in rows if a <= r[0] / 1e6 < b]
        first_new = min((r[0] + r[1] for r in rows
                         if r[3] == s["to"] and r[0] / 1e6 >= a), default=None)
        # Until the next alias move, nothing that started after /health showed the new
        # version may be answered by the old one.
        following = [off(t["move_started_at"]) for t in swaps if t["index"] == s["index"] + 1]
        until = following[0] if following else float("inf")
        stale = [r for r in rows if live < r[0] / 1e6 < until and r[3] == s["from"]]
        per_swap.append({**s, "stats": latency_stats(in_it, b - a),
                         "first_new_response_s": (first_new / 1e6 - moved) if first_new else None,
                         "stale": len(stale)})
    failures = [r for r in rows if r[2] != 200]
    by_kind: dict[str, int] = {}
    for r in failures:
        kind = f"{r[2]} {r[4]}".strip() if r[2] == 0 else str(r[2])
        by_kind[kind] = by_kind.get(kind, 0) + 1
    versions: dict[str, int] = {}
    for r in rows:
        versions[r[3] or "(none)"] = versions.get(r[3] or "(none)", 0) + 1
    return {
        "total": latency_stats(rows, end),
        "steady": latency_stats(steady_rows, steady_seconds),
        "swap": latency_stats(swap_rows, window_seconds),
        "per_swap": per_swap,
        "failures": len(failures),
        "failure_kinds": by_kind,
        "failure_offsets": [round(r[0] / 1e6, 3) for r in failures[:20]],
        "stale": sum(p.get("stale") or 0 for p in per_swap),
        "versions": versions,
        "duration_s": end,
        "window_seconds": window_seconds,
        "steady_seconds": steady_seconds,
    }


def fmt(x, digits=2) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    return f"{x:.{digits}f}"


def summary_row(label: str, s: dict) -> str:
    return (f"| {label} | {s['requests']} | {fmt(s['rps'], 0)} | {s['failed']} | {fmt(s['p50'])} "
            f"| {fmt(s['p90'])} | {fmt(s['p99'])} | {fmt(s['max'])} |")


def start_table(name: str, values: list[dict]) -> str:
    secs = [v["seconds"] for v in values]
    detail = ", ".join(f"{v['seconds']:.2f} s" + (" (from cache)" if v.get("from_cache") else "")
                       for v in values)
    return (f"| {name} | {len(secs)} | {fmt(min(secs))} | {fmt(statistics.median(secs))} "
            f"| {fmt(max(secs))} | {detail} |")


def report(meta: dict, result: dict, starts: dict, mem: dict) -> str:
    out = [f"# Hot-reload benchmark, {meta['date']}", ""]
    out.append(f"Machine: {meta['machine']}. Load average at start: {meta['load_start']}, at "
               f"end: {meta['load_end']}. hotserve {meta['git']}.")
    out.append(f"Settings: `--swaps {meta['swaps']} --concurrency {meta['concurrency']} "
               f"--poll-interval {meta['poll_interval']} --steady {meta['steady']} "
               f"--settle {meta['settle']} --window-tail {meta['window_tail']}`; loadgen "
               f"threads {meta['loadgen_threads']}; model `{MODEL_NAME}` v1 "
               f"(`{meta['v1_dir']}`) <-> v2 (`{meta['v2_dir']}`) behind `@{ALIAS}`; MLflow "
               f"{meta['mlflow']} "
               "(SQLite, proxied artifacts) on loopback; `POST /predict`, one review sentence "
               "per request (cycling through bench/data).")
    out.append("")
    ok = result["failures"] == 0 and result["stale"] == 0 and meta["swaps_done"] == meta["swaps"]
    out.append(f"**Result: {result['total']['requests']} requests in "
               f"{fmt(result['duration_s'], 1)} s, {result['failures']} failed, "
               f"{result['stale']} stale, {meta['swaps_done']}/{meta['swaps']} swaps completed "
               f"— {'PASS' if ok else 'FAIL'}.**")
    out.append("")
    out += ["## Latency: swap windows vs steady state", "",
            "Requests are grouped by start time. A swap window runs from the alias move to the "
            f"moment `/health` showed the new version, plus {meta['window_tail']} s; steady "
            f"state is everything else after the first {meta['warmup']} s. Latencies in ms.", "",
            "| requests | count | req/s | failed | p50 | p90 | p99 | max |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            summary_row("steady state", result["steady"]),
            summary_row("during swaps", result["swap"]),
            summary_row("all", result["total"]), ""]
    out += ["## Swaps", "",
            "alias -> live: from the alias move (REST call returned) until `/health` showed the "
            "new version; first answer: until the first response from the new version "
            "arrived; reload: hotserve's own `last_reload.duration_ms` (resolve, cached copy or "
            "download, validation, swap). Stale: requests started after `/health` showed the new "
            "version but answered by the old one (must be 0).", "",
            "RSS: hotserve's resident memory at the end of the settle time after the swap.", "",
            "| # | from -> to | alias -> live (s) | first answer (s) | reload (ms) | trigger "
            "| window requests | window p99 (ms) | window max (ms) | failed | stale | RSS (MiB) |",
            "| ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in result["per_swap"]:
        st = p["stats"]
        if st is None:
            out.append(f"| {p['index']} | v{p['from']} -> v{p['to']} | timed out | | | | | | | | | |")
            continue
        rl = p.get("last_reload") or {}
        out.append(f"| {p['index']} | v{p['from']} -> v{p['to']} | {fmt(p['live_s'])} "
                   f"| {fmt(p['first_new_response_s'])} | {rl.get('duration_ms', '–')} "
                   f"| {rl.get('trigger', '–')} | {st['requests']} | {fmt(st['p99'])} "
                   f"| {fmt(st['max'])} | {st['failed']} | {p['stale']} "
                   f"| {fmt(p.get('rss_kb', 0) / 1024, 1)} |")
    lives = [p["live_s"] for p in result["per_swap"] if p.get("live_s") is not None]
    if lives:
        out += ["", f"alias -> live: min {fmt(min(lives))} s, median "
                f"{fmt(statistics.median(lives))} s, max {fmt(max(lives))} s "
                f"(poll interval {meta['poll_interval']} with hotserve's default jitter)."]
    out += ["", "## Start to ready (registry up)", "",
            "From spawning `hotserve serve` to the first 200 from `/health/ready`. Cold: empty "
            "cache directory (resolve, download, validate). Warm: restart with the cache of an "
            "earlier run (resolve, cached copy, validate).", "",
            "| start | runs | min (s) | median (s) | max (s) | each |",
            "| --- | ---: | ---: | ---: | ---: | --- |"]
    for name in ("cold", "warm"):
        if starts.get(name):
            out.append(start_table(name, starts[name]))
    out += ["", "## Other observations", ""]
    out.append(f"- X-Model-Version counts: "
               + ", ".join(f"{k}: {v}" for k, v in sorted(result["versions"].items())))
    if result["failures"]:
        out.append(f"- Failures by kind: {json.dumps(result['failure_kinds'])}; first at (s): "
                   f"{result['failure_offsets']}")
    if mem:
        out.append(f"- hotserve memory: RSS {mem.get('before_rss', 0) // 1024} MiB before the "
                   f"first swap, {mem.get('after_rss', 0) // 1024} MiB after the last; peak "
                   f"(VmHWM) {mem.get('hwm', 0) // 1024} MiB.")
    if meta.get("reload_log"):
        r = meta["reload_log"]
        out.append(f"- hotserve's log of the swap run: {r['succeeded']} reloads succeeded "
                   f"(startup included), {r['cached']} of them from the cached copy (no "
                   f"download), {r['failed']} failed; {r['warnings']} warnings, {r['errors']} "
                   "errors.")
    out.append(f"- hotserve exit code after SIGTERM at the end: {meta.get('exit_code')}.")
    out.append(f"- Raw data: `{meta['logs']}` (loadgen.csv, loadgen.json, events.json, "
               "hotserve-*.log, mlflow.log).")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def display_path(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def reload_log(path: Path) -> dict:
    """Counts of hotserve's reload outcomes and warnings in its JSON log."""
    counts = {"succeeded": 0, "cached": 0, "failed": 0, "warnings": 0, "errors": 0}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return counts
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = (entry.get("fields") or {}).get("message", "")
        level = entry.get("level")
        counts["succeeded"] += message.startswith("reload succeeded")
        counts["cached"] += message.startswith("using the cached copy")
        counts["failed"] += message.startswith("reload failed")
        counts["warnings"] += level == "WARN"
        counts["errors"] += level == "ERROR"
    return counts


def text_bodies(path: Path) -> None:
    lines = []
    for name in ("heldout.tsv", "train.tsv"):
        with open(ROOT / "bench/data" / name, encoding="utf-8") as f:
            next(f)
            for line in f:
                if "\t" in line.strip():
                    lines.append(json.dumps({"text": line.rstrip("\n").split("\t", 1)[1]}))
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--swaps", type=int, default=6, help="alias moves (default 6)")
    ap.add_argument("--v1-dir", default=V1_DIR, help=f"model directory of version 1 ({V1_DIR})")
    ap.add_argument("--v2-dir", default=V2_DIR, help=f"model directory of version 2 ({V2_DIR})")
    ap.add_argument("--concurrency", type=int, default=16, help="loadgen connections (16)")
    ap.add_argument("--poll-interval", default="500ms", help="hotserve --poll-interval (500ms)")
    ap.add_argument("--steady", type=float, default=5.0,
                    help="seconds of load before the first swap (5)")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds between a swap window's end and the next alias move (3)")
    ap.add_argument("--window-tail", type=float, default=1.0,
                    help="seconds after the new version is live still counted as the swap (1)")
    ap.add_argument("--swap-timeout", type=float, default=60.0,
                    help="give up on a swap after this many seconds (60)")
    ap.add_argument("--starts", type=int, default=3, help="cold and warm starts measured (3 each)")
    ap.add_argument("--loadgen-threads", type=int, default=1, help="loadgen runtime threads (1)")
    ap.add_argument("--hotserve-arg", action="append", default=[],
                    help="extra argument for hotserve serve (repeatable), e.g. --set=max_batch_delay=1ms")
    ap.add_argument("--skip-setup", action="store_true", help="do not run scripts/setup.sh test")
    ap.add_argument("--skip-build", action="store_true", help="do not run cargo build --release")
    ap.add_argument("--hotserve-bin", help="use this hotserve binary (no build)")
    ap.add_argument("--loadgen-bin", help="use this loadgen binary (no build)")
    ap.add_argument("--out", help="report path (default bench/results/swap-<timestamp>.md)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    if not 1 <= args.swaps <= 100 or not 1 <= args.concurrency <= 1024:
        ap.error("--swaps must be 1..100 and --concurrency 1..1024")

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_md = Path(args.out) if args.out else ROOT / f"bench/results/swap-{stamp}.md"
    logs = out_md.with_suffix(".logs")
    logs.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="hotserve-swap-"))
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    try:
        return run(args, out_md, logs, tmp)
    except KeyboardInterrupt as err:
        log(f"interrupted ({err}); cleaning up")
        return 130
    except (RuntimeError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        log(f"error: {err}")
        return 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all()
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args, out_md: Path, logs: Path, tmp: Path) -> int:
    load_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    if not args.skip_setup:
        log("scripts/setup.sh test")
        subprocess.run(["scripts/setup.sh", "test"], cwd=ROOT, check=True, timeout=1800)
    hotserve_bin = Path(args.hotserve_bin or ROOT / "target/release/hotserve")
    loadgen_bin = Path(args.loadgen_bin or ROOT / "target/release/examples/loadgen")
    if not args.skip_build and not (args.hotserve_bin and args.loadgen_bin):
        log("cargo build --release --bin hotserve --example loadgen (log: build.log)")
        with open(logs / "build.log", "wb") as f:
            subprocess.run(["cargo", "build", "--release", "--bin", "hotserve", "--example",
                            "loadgen"], cwd=ROOT, check=True, stdout=f, stderr=subprocess.STDOUT,
                           timeout=3600)
    for b in (hotserve_bin, loadgen_bin):
        if not b.is_file():
            raise RuntimeError(f"{b} is missing; build it (cargo build --release --bin hotserve "
                               "--example loadgen) or drop --skip-build")

    tracking_uri = start_mlflow(tmp, logs)
    log("registering v1 and v2 of sentiment (tests/it/support/register.py)")
    reg = register(tracking_uri, [
        {"op": "register", "dir": args.v1_dir, "name": MODEL_NAME, "aliases": [ALIAS]},
        {"op": "register", "dir": args.v2_dir, "name": MODEL_NAME},
    ], logs)
    v1, v2 = reg[0]["version"], reg[1]["version"]
    log(f"registered v{v1} and v{v2}; {ALIAS} -> v{v1}")

    # Start-to-ready, cold then warm (the warm starts reuse the first cold start's cache).
    starts: dict[str, list[dict]] = {"cold": [], "warm": []}
    cold_cache = tmp / "cache-cold-0"
    for kind in ("cold", "warm"):
        for i in range(args.starts):
            cache = tmp / f"cache-cold-{i}" if kind == "cold" else cold_cache
            hs = Hotserve(hotserve_bin, tracking_uri, cache, logs / f"hotserve-{kind}-{i}.log",
                          "0", args.hotserve_arg)
            secs = hs.wait_ready()
            h = hs.health()
            starts[kind].append({"seconds": secs, "from_cache": h.get("served_from_cache"),
                                 "version": (h.get("model") or {}).get("version"),
                                 "last_reload": h.get("last_reload")})
            hs.stop()
            log(f"{kind} start {i + 1}: ready after {secs:.2f} s")

    # The swap run.
    hs = Hotserve(hotserve_bin, tracking_uri, tmp / "cache-swap", logs / "hotserve-swap.log",
                  args.poll_interval, args.hotserve_arg)
    secs = hs.wait_ready()
    if hs.version() != v1:
        raise RuntimeError(f"hotserve serves {hs.version()}, expected v{v1}")
    log(f"hotserve ready after {secs:.2f} s on {hs.url}, serving v{v1}")
    bodies = tmp / "bodies.jsonl"
    text_bodies(bodies)
    # loadgen's own bound (it is stopped with SIGINT once the swaps are done); at most 1 h.
    budget = min(3600, args.steady + args.swaps * (args.swap_timeout + args.window_tail
                                                   + args.settle) + 30)
    lg_argv = [str(loadgen_bin), "--url", f"{hs.url}/predict", "--concurrency",
               str(args.concurrency), "--duration", f"{budget:.0f}s", "--body-file", str(bodies),
               "--threads", str(args.loadgen_threads), "--csv", str(logs / "loadgen.csv"),
               "--summary-json", str(logs / "loadgen.json")]
    loadgen = spawn("loadgen", lg_argv, logs / "loadgen.log", os.environ.copy(), signal.SIGINT)
    time.sleep(args.steady)
    if loadgen.poll() is not None:
        raise RuntimeError(f"loadgen exited early:\n{tail(logs / 'loadgen.log')}")
    mem = {"before_rss": hs.memory_kb().get("VmRSS", 0)}

    swaps = []
    current = v1
    for i in range(1, args.swaps + 1):
        target = v2 if current == v1 else v1
        event = {"index": i, "from": current, "to": target, "move_started_at": time.time()}
        set_alias(tracking_uri, target)
        event["moved_at"] = time.time()
        t_moved = time.monotonic()
        deadline = t_moved + args.swap_timeout
        live = None
        while time.monotonic() < deadline:
            h = hs.health()
            if (h.get("model") or {}).get("version") == target:
                live = time.monotonic()
                event["live_at"] = time.time()
                event["last_reload"] = h.get("last_reload")
                break
            if hs.proc.poll() is not None:
                raise RuntimeError(f"hotserve exited during swap {i}:\n{tail(hs.log_path)}")
            time.sleep(0.02)
        if live is None:
            event["live_at"] = None
            event["health"] = hs.health()
            swaps.append(event)
            log(f"swap {i}: v{current} -> v{target} did not go live within "
                f"{args.swap_timeout:.0f} s; stopping the swaps")
            break
        event["live_s"] = live - t_moved
        swaps.append(event)
        log(f"swap {i}: v{current} -> v{target} live after {event['live_s']:.2f} s")
        current = target
        time.sleep(args.window_tail + args.settle)
        status = hs.memory_kb()
        event["rss_kb"], event["threads"] = status.get("VmRSS", 0), status.get("Threads", 0)

    mem["after_rss"] = hs.memory_kb().get("VmRSS", 0)
    mem["hwm"] = hs.memory_kb().get("VmHWM", 0)
    log("stopping loadgen")
    if stop(loadgen, signal.SIGINT, timeout=60) is None:
        raise RuntimeError("loadgen did not stop")
    forget(loadgen)
    exit_code = hs.stop()
    summary = json.loads((logs / "loadgen.json").read_text())
    (logs / "events.json").write_text(json.dumps({"swaps": swaps, "starts": starts,
                                                  "registered": reg}, indent=2) + "\n")
    rows = read_csv(logs / "loadgen.csv")
    result = analyse(rows, swaps, summary["start_unix_us"], args.window_tail, warmup=1.0)

    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.strip()
    mlflow_version = subprocess.run([str(VENV / "bin/python"), "-c",
                                     "import importlib.metadata as m; print(m.version('mlflow'))"],
                                    text=True, stdout=subprocess.PIPE).stdout.strip()
    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
                   f"{platform.release()}",
        "load_start": load_start,
        "load_end": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "git": git or "(unknown commit)", "mlflow": mlflow_version,
        "swaps": args.swaps, "swaps_done": sum(1 for s in swaps if s.get("live_at")),
        "concurrency": args.concurrency, "poll_interval": args.poll_interval,
        "steady": args.steady, "settle": args.settle, "window_tail": args.window_tail,
        "warmup": 1.0, "loadgen_threads": args.loadgen_threads,
        "v1_dir": args.v1_dir, "v2_dir": args.v2_dir,
        "exit_code": exit_code, "logs": display_path(logs),
        "reload_log": reload_log(logs / "hotserve-swap.log"),
    }
    text = report(meta, result, starts, mem)
    out_md.write_text(text)
    print(text)
    log(f"report: {display_path(out_md)}")
    failed = result["failures"] > 0 or result["stale"] > 0 or meta["swaps_done"] < args.swaps
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
