#!/usr/bin/env python3
"""The soak: at least `--swaps` model swaps under steady load, with registry faults injected at
random, bounded by `--minutes`.

    bench/soak.sh [--swaps 100] [--minutes 14] [--rate 20] [--fault-rate 0.3]

1. A throwaway MLflow server (bench/swap.py's helpers); `tests/it/support/register.py` registers
   `--versions` good versions of `sentiment` (alternately tests/fixtures/sentiment and
   sentiment_v2, so consecutive versions answer differently) and two broken ones (the ONNX file
   is garbage); alias `champion` -> version 1.
2. bench/fault_proxy.py in front of MLflow: each registry request hotserve makes is passed
   through, answered 503, held past hotserve's registry timeout, dropped, or cut off half-way,
   at random (`--fault-rate` of them are faults, spread evenly over the four kinds).
3. hotserve (release build) serves `models:/sentiment@champion` through the proxy with a short
   poll interval and a short registry timeout (MLFLOW_HTTP_REQUEST_TIMEOUT=`--registry-timeout`, 1 s; one retry).
4. Steady load: `--rate` POST /predict a second from the well-behaved client of bench/abuse.py
   (half kept-alive, half fresh connections), for the whole run.
5. The swaps: move `champion` (directly in MLflow, not through the proxy) to the next good
   version, wait until /health shows it live; every `--broken-every` swaps first point it at a
   broken version and wait until hotserve counts the refusal (or 30 s) while the old version
   keeps serving. Every 5 s: hotserve's RSS and open file descriptors.

Passes when every request succeeded, the swaps were done, file descriptors did not grow and
RSS after the last swap is within 10 % of RSS after the first. The report goes to stdout and
bench/results/soak-<ts>.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import abuse  # noqa: E402
import swap as sw  # noqa: E402
from fault_proxy import FaultProxy  # noqa: E402

NAME, ALIAS = "sentiment", "champion"
# MLflow starts slowly on a busy machine.
sw.MLFLOW_STARTUP_TIMEOUT = 600.0


def log(msg: str) -> None:
    print(f"soak: {msg}", file=sys.stderr, flush=True)


def reload_counts(url: str) -> dict:
    status, text = sw.http("GET", f"{url}/metrics", timeout=10)
    counts = {}
    if status == 200 and isinstance(text, str):
        for m in re.finditer(r'^hotserve_reloads_total\{model="[^"]*",result="([a-z_]+)"\} (\d+)', text, re.M):
            counts[m.group(1)] = int(m.group(2))
    return counts


def set_alias(tracking_uri: str, version: str) -> None:
    status, body = sw.http("POST", f"{tracking_uri}/api/2.0/mlflow/registered-models/alias",
                           {"name": NAME, "alias": ALIAS, "version": version}, timeout=30)
    if status != 200:
        raise RuntimeError(f"moving {ALIAS} to version {version} failed: {status} {body}")


class Load:
    """abuse.Good in a thread of its own, for as long as the soak runs."""

    def __init__(self, port: int, rate: float, seconds: float):
        self.good = abuse.Good(port, rate)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.good.run(seconds)), daemon=True)

    def start(self):
        self.thread.start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--swaps", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=14.0)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--broken-every", type=int, default=10)
    parser.add_argument("--poll-interval", default="300ms")
    parser.add_argument("--registry-timeout", type=float, default=1.0,
                        help="MLFLOW_HTTP_REQUEST_TIMEOUT for hotserve; a timeout fault holds 1.5x it")
    parser.add_argument("--hotserve-bin", default=str(ROOT / "target/release/hotserve"))
    args = parser.parse_args()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, sw._on_signal)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    logs = ROOT / f"bench/results/soak-{stamp}.logs"
    logs.mkdir(parents=True)
    load_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    try:
        with tempfile.TemporaryDirectory(prefix="hotserve-soak-") as tmp:
            result = run(args, Path(tmp), logs)
    finally:
        sw.stop_all()
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.strip()
    result["meta"] = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                      "command": "bench/soak.sh " + " ".join(sys.argv[1:]),
                      "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
                      "load": f"{load_start} -> {' '.join(Path('/proc/loadavg').read_text().split()[:3])}",
                      "git": git}
    (logs / "result.json").write_text(json.dumps(result, indent=2))
    text = report(result)
    (ROOT / f"bench/results/soak-{stamp}.md").write_text(text)
    print(text)
    return 0 if result["passed"] else 1


def run(args, tmp: Path, logs: Path) -> dict:
    tracking_uri = sw.start_mlflow(tmp, logs)
    dirs = ["tests/fixtures/sentiment", "tests/fixtures/sentiment_v2"]
    commands = [{"op": "register", "dir": dirs[i % 2], "name": NAME,
                 **({"aliases": [ALIAS]} if i == 0 else {})} for i in range(args.versions)]
    commands += [{"op": "register", "dir": dirs[0], "name": NAME, "corrupt": "onnx"}] * 2
    log(f"registering {args.versions} good and 2 broken versions")
    registered = sw.register(tracking_uri, commands, logs)
    good = [r["version"] for r in registered[:args.versions]]
    broken = [r["version"] for r in registered[args.versions:]]
    upstream_port = int(tracking_uri.rsplit(":", 1)[1])
    each = args.fault_rate / 4
    proxy = FaultProxy(upstream_port, {"pass": 1 - args.fault_rate, "5xx": each, "timeout": each,
                                       "drop": each, "truncate": each}, hang=1.5 * args.registry_timeout, seed=13)
    proxy.start()
    log(f"fault proxy {proxy.url} -> {tracking_uri} ({args.fault_rate:.0%} faults)")

    port = sw.free_port()
    url = f"http://127.0.0.1:{port}"
    env = sw.clean_env()
    env.update(MLFLOW_TRACKING_URI=proxy.url, HOTSERVE_STATE_DIR=str(tmp / "state"),
               MLFLOW_HTTP_REQUEST_TIMEOUT=str(args.registry_timeout), MLFLOW_HTTP_REQUEST_MAX_RETRIES="1",
               MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0.1", MLFLOW_HTTP_REQUEST_BACKOFF_JITTER="0.1")
    argv = [args.hotserve_bin, "serve", "--model-uri", f"models:/{NAME}@{ALIAS}",
            "--listen", f"127.0.0.1:{port}", "--poll-interval", args.poll_interval,
            "--log-format", "json"]
    proc = sw.spawn("hotserve", argv, logs / "hotserve.log", env)
    sw.wait_until(lambda: sw.http("GET", f"{url}/health/ready", timeout=2)[0] == 200, 300, 0.1,
                  "hotserve readiness", proc, logs / "hotserve.log")
    log(f"hotserve ready on {url} (pid {proc.pid})")

    deadline = time.monotonic() + args.minutes * 60
    load = Load(port, args.rate, args.minutes * 60 + 60)
    load.start()
    samples = []
    started = time.monotonic()
    last_sample = 0.0

    def sample(tag=""):
        samples.append({"t": round(time.monotonic() - started, 1), "rss_kb": abuse.rss_kb(proc.pid),
                        "fds": abuse.fds(proc.pid), "tag": tag})

    def version():
        status, body = sw.http("GET", f"{url}/health", timeout=5)
        return ((body or {}).get("model") or {}).get("version") if status == 200 and isinstance(body, dict) else None

    swaps, refused, timeouts = [], 0, 0
    current = good[0]
    index = 0
    sample("start")
    while len(swaps) < args.swaps and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hotserve exited:\n{sw.tail(logs / 'hotserve.log')}")
        if args.broken_every and len(swaps) % args.broken_every == args.broken_every - 1 \
                and (not swaps or swaps[-1].get("kind") != "broken"):
            bad = broken[len(swaps) // args.broken_every % len(broken)]
            before = reload_counts(url)
            set_alias(tracking_uri, bad)
            t = time.monotonic()
            seen = False
            while time.monotonic() - t < 30:
                now = reload_counts(url)
                if sum(now.get(k, 0) for k in ("failed", "skipped_bad")) > \
                        sum(before.get(k, 0) for k in ("failed", "skipped_bad")):
                    seen = True
                    break
                time.sleep(0.1)
            refused += seen
            still = version()
            swaps.append({"kind": "broken", "to": bad, "refused": seen, "serving": still,
                          "seconds": round(time.monotonic() - t, 2)})
            log(f"broken v{bad}: {'refused' if seen else 'no refusal seen in 30 s'}; serving v{still}")
            continue
        index = (index + 1) % len(good)
        target = good[index]
        set_alias(tracking_uri, target)
        t = time.monotonic()
        live = False
        while time.monotonic() - t < 60:
            if version() == target:
                live = True
                break
            time.sleep(0.05)
        timeouts += not live
        swaps.append({"kind": "good", "from": current, "to": target, "live": live,
                      "seconds": round(time.monotonic() - t, 2)})
        good_swaps = sum(1 for s in swaps if s["kind"] == "good" and s["live"])
        if live:
            current = target
            if good_swaps == 1:
                time.sleep(1.0)
                sample("after first swap")
        log(f"swap {len(swaps)}: v{target} {'live' if live else 'NOT live'} after "
            f"{swaps[-1]['seconds']:.2f} s; proxy {dict(proxy.counts)}")
        if time.monotonic() - last_sample > 5:
            sample()
            last_sample = time.monotonic()
    time.sleep(1.0)
    sample("after last swap")
    # The soak is over: take the load's results so far (its thread is a daemon that would run
    # on; requests still in flight are left out), then stop hotserve.
    load_seconds = time.monotonic() - started
    results = list(load.good.results)
    ok = sum(1 for good_, _ in results if good_)
    lat = sorted(s for _, s in results)
    code = sw.stop(proc)
    sw.forget(proc)
    first = next(s for s in samples if s["tag"] == "after first swap")
    last = samples[-1]
    fds_series = [s["fds"] for s in samples]
    good_done = sum(1 for s in swaps if s["kind"] == "good" and s["live"])
    result = {
        "swaps": swaps, "samples": samples, "proxy": dict(proxy.counts),
        "good_swaps": good_done, "broken_refused": refused,
        "broken_tried": sum(1 for s in swaps if s["kind"] == "broken"),
        "swap_timeouts": timeouts, "requests": len(results), "ok": ok,
        "p50_ms": lat[len(lat) // 2] * 1000 if lat else None,
        "p99_ms": lat[int(0.99 * (len(lat) - 1))] * 1000 if lat else None,
        "seconds": round(load_seconds), "exit_code": code,
        "rss_first_kb": first["rss_kb"], "rss_last_kb": last["rss_kb"],
        "fds_first": first["fds"], "fds_last": last["fds"], "fds_max": max(fds_series),
        "fds_min": min(fds_series),
    }
    rss_ratio = result["rss_last_kb"] / max(1, result["rss_first_kb"])
    result["rss_ratio"] = rss_ratio
    result["passed"] = (ok == len(results) and good_done + refused >= args.swaps
                        and abs(rss_ratio - 1) <= 0.10 and result["fds_last"] <= result["fds_first"] + 2)
    return result


def report(r: dict) -> str:
    m = r["meta"]
    swap_secs = sorted(s["seconds"] for s in r["swaps"] if s["kind"] == "good" and s["live"])
    fds = [(s["t"], s["fds"]) for s in r["samples"]]
    step = max(1, len(fds) // 12)
    lines = [
        f"# Soak, {m['date']}", "",
        f"Command: `{m['command']}`  ", f"Machine: {m['machine']}, load {m['load']}; git {m['git']}", "",
        "| measure | value |", "|---|---|",
        f"| duration under load | {r['seconds']} s |",
        f"| swaps to a good version (live) | {r['good_swaps']} (not live within 60 s: {r['swap_timeouts']}) |",
        f"| alias moved to a broken version: refused, old version kept serving | {r['broken_refused']} of {r['broken_tried']} |",
        f"| alias move -> live, median / max | {swap_secs[len(swap_secs) // 2] if swap_secs else '-'} s / {swap_secs[-1] if swap_secs else '-'} s |",
        f"| registry requests through the fault proxy | {sum(r['proxy'].values())}: " + ", ".join(f"{k} {v}" for k, v in sorted(r['proxy'].items())) + " |",
        f"| prediction requests, failed | {r['requests']}, {r['requests'] - r['ok']} |",
        f"| prediction p50 / p99 | {r['p50_ms']:.1f} ms / {r['p99_ms']:.1f} ms |",
        f"| open fds after the first swap -> after the last (min..max over the run) | {r['fds_first']} -> {r['fds_last']} ({r['fds_min']}..{r['fds_max']}) |",
        f"| RSS after the first swap -> after the last | {r['rss_first_kb'] / 1024:.1f} MiB -> {r['rss_last_kb'] / 1024:.1f} MiB ({100 * (r['rss_ratio'] - 1):+.1f} %) |",
        f"| hotserve exit code on SIGTERM | {r['exit_code']} |",
        f"| passed | {'yes' if r['passed'] else 'NO'} |", "",
        "File descriptors over time (s: fds): " + ", ".join(f"{t:.0f}: {f}" for t, f in fds[::step]), "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
