#!/usr/bin/env python3
"""Many models under a memory budget (issue 24): hit ratio, cold starts, RSS against the budget.

    bench/fleet.py [--small 190] [--large 10] [--share 0.15] [--seconds 60] [--clients 8]

One hotserve serves `--small` copies of the bundled model and `--large` copies of the MiniLM
model (bench/.cache/minilm-sentiment), every one `load: lazy`, under a `memory_budget` of
`--share` of what all of them take resident (measured first: each model's `memory_bytes` in
/health once loaded). `--clients` (4) closed-loop clients send /predict for 60 s to models drawn
from a Zipf distribution (s = `--zipf`; the large models among the popular and the rare ones
alike, so both kinds get cold starts). The same traffic then runs against a second hotserve
with every model resident (no budget), for the throughput ratio.

Reported: requests, failures (any status but 200), req/s for both runs, the hit ratio (requests
that found their model in memory: 1 - cold starts / requests), the cold starts' load time
(hotserve's own "loaded the model into memory" log lines, from the local cache: the files are
on disk since start) p50/p99 for small and large models, the wait a cold request saw (the
histogram's mean), evictions, and the process RSS sampled every 0.25 s against budget +
baseline (the RSS with every model validated and parked, before traffic). Targets: RSS never
above budget + baseline + 10%, a small model's cold start under 100 ms p50, zero failures.

Writes bench/results/fleet-<timestamp>.md and prints it. Only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.client as httpclient
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from swap import free_port, http, spawn, stop, stop_all, wait_until  # noqa: E402

FIXTURE = ROOT / "tests/fixtures/sentiment"
LARGE = HERE / ".cache/minilm-sentiment"


def log(msg: str) -> None:
    print(f"fleet: {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def metric_sum(text: str, name: str, contains: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and contains in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def start(binary: Path, config: Path, tmp: Path, logs: Path, extra: list[str]):
    port = free_port()
    argv = [str(binary), "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}",
            "--cache-dir", str(tmp / f"cache-{port}"), "--log-format", "json", *extra]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "HOTSERVE_")) and k != "MODEL_URI"}
    log_path = logs / f"hotserve-{port}.log"
    proc = spawn("hotserve", argv, log_path, env)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: http("GET", base + "/health/ready")[0] == 200, 900, 0.2,
               "hotserve ready", proc, log_path)
    return proc, base, log_path


def traffic(base: str, names: list[str], weights: list[float], seconds: float, clients: int,
            seed: int) -> dict:
    """Closed-loop clients over keep-alive connections; statuses and latencies."""
    host, port = base.removeprefix("http://").split(":")
    deadline = time.monotonic() + seconds
    results: list[list[tuple[int, float]]] = [[] for _ in range(clients)]
    body = json.dumps({"text": "I love this movie"})

    def client(index: int) -> None:
        rng = random.Random(seed + index)
        conn = httpclient.HTTPConnection(host, int(port), timeout=60)
        while time.monotonic() < deadline:
            name = rng.choices(names, weights)[0]
            started = time.perf_counter()
            try:
                conn.request("POST", f"/models/{name}/predict", body,
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, httpclient.HTTPException):
                status = 0
                conn.close()
                conn = httpclient.HTTPConnection(host, int(port), timeout=60)
            results[index].append((status, time.perf_counter() - started))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    rows = [row for rows in results for row in rows]
    return {
        "requests": len(rows),
        "failures": sum(1 for status, _ in rows if status != 200),
        "statuses": sorted({status for status, _ in rows}),
        "rps": len(rows) / elapsed,
        "p50_ms": pct([t for _, t in rows], 50) * 1000,
        "p99_ms": pct([t for _, t in rows], 99) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hotserve-bin", default=str(ROOT / "target/release/hotserve"))
    parser.add_argument("--small", type=int, default=190)
    parser.add_argument("--large", type=int, default=10)
    parser.add_argument("--share", type=float, default=0.15)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    binary = Path(args.hotserve_bin)
    tmp = Path(tempfile.mkdtemp(prefix="hotserve-fleet-"))
    logs = tmp / "logs"
    logs.mkdir()
    try:
        names, kinds = [], {}
        models = tmp / "models"
        models.mkdir()
        for i in range(args.small + args.large):
            large = i % max(1, (args.small + args.large) // max(1, args.large)) == 3 and \
                sum(1 for k in kinds.values() if k == "large") < args.large
            name = f"{'large' if large else 'small'}-{i:03}"
            # A copy (hotserve follows no symbolic link out of a model directory).
            shutil.copytree(LARGE if large else FIXTURE, models / name)
            names.append(name)
            kinds[name] = "large" if large else "small"
        rank = list(range(1, len(names) + 1))
        random.Random(7).shuffle(rank)
        weights = [1 / r ** args.zipf for r in rank]

        def config(path: Path, lazy: bool) -> Path:
            lines = ["models:"]
            for name in names:
                load = ", load: lazy" if lazy else ""
                lines.append(f"  - {{name: {name}, uri: \"{models / name}\"{load}}}")
            path.write_text("\n".join(lines) + "\n")
            return path

        common = ["--set", f"inference_workers={args.workers}", "--set", "watch=false",
                  "--set", "request_timeout=30s"]
        # 1. Every model resident: what each costs, and the throughput to compare with.
        log(f"{len(names)} models ({args.large} large) all resident ...")
        proc, base, _ = start(binary, config(tmp / "all.yaml", False), tmp, logs, common)
        _, health = http("GET", base + "/health", timeout=30)
        cost = {name: health["models"][name]["memory_bytes"] for name in names}
        all_rss = rss_kb(proc.pid) * 1024
        log("all resident: traffic ...")
        resident = traffic(base, names, weights, args.seconds, args.clients, 1)
        stop(proc)
        total = sum(cost.values())
        budget = int(total * args.share)
        log(f"all resident: {total / 2**20:.0f} MiB of models, RSS {all_rss / 2**20:.0f} MiB; "
            f"budget {budget / 2**20:.0f} MiB")

        # 2. Lazy under the budget.
        proc, base, log_path = start(binary, config(tmp / "lazy.yaml", True), tmp, logs,
                                     common + ["--set", f"memory_budget={budget}"])
        time.sleep(1)
        baseline = rss_kb(proc.pid) * 1024
        samples: list[int] = []
        sampling = True

        def sample() -> None:
            while sampling:
                samples.append(rss_kb(proc.pid) * 1024)
                time.sleep(0.25)

        sampler = threading.Thread(target=sample)
        sampler.start()
        log("under the budget: traffic ...")
        budgeted = traffic(base, names, weights, args.seconds, args.clients, 1)
        sampling = False
        sampler.join()
        _, metrics = http("GET", base + "/metrics", timeout=30)
        stop(proc)
        loads: dict[str, list[float]] = {"small": [], "large": []}
        pure: dict[str, list[float]] = {"small": [], "large": []}
        for line in open(log_path, errors="replace"):
            if "loaded the model into memory" not in line:
                continue
            event = json.loads(line)
            fields = event.get("fields", {})
            if fields.get("reason") == "request":
                loads[kinds[fields["model"]]].append(float(fields["elapsed_ms"]))
                pure[kinds[fields["model"]]].append(float(fields["load_ms"]))
        cold = len(loads["small"]) + len(loads["large"])
        evictions = metric_sum(metrics, "hotserve_model_unloads_total", 'reason="evicted"')
        wait_sum = metric_sum(metrics, "hotserve_cold_start_duration_seconds_sum",
                              'phase="wait"')
        wait_count = metric_sum(metrics, "hotserve_cold_start_duration_seconds_count",
                                'phase="wait"')
        ceiling = (budget + baseline) * 1.1
        peak = max(samples) if samples else 0
        mib = lambda b: f"{b / 2**20:.1f} MiB"  # noqa: E731
        small_p50 = pct(loads["small"], 50)
        report = [
            f"# Many models under a memory budget ({time.strftime('%Y-%m-%d %H:%M')})",
            "",
            f"{args.small} copies of the bundled model and {args.large} of MiniLM, `load: lazy`, "
            f"Zipf s={args.zipf} over them, {args.clients} closed-loop clients for "
            f"{args.seconds:.0f} s, `inference_workers={args.workers}`.",
            "",
            f"- Models resident together: {mib(total)} (small {mib(min(cost[n] for n in names if kinds[n] == 'small'))} "
            f"to {mib(max(cost[n] for n in names if kinds[n] == 'small'))} each, large "
            f"{mib(max([cost[n] for n in names if kinds[n] == 'large'] or [0]))}); RSS with all "
            f"resident {mib(all_rss)}.",
            f"- Budget: {mib(budget)} ({args.share:.0%} of it); baseline (every model parked): "
            f"{mib(baseline)}.",
            "",
            "| | all resident | under the budget |",
            "| --- | --- | --- |",
            f"| requests | {resident['requests']} | {budgeted['requests']} |",
            f"| failures (not 200) | {resident['failures']} | {budgeted['failures']} |",
            f"| req/s | {resident['rps']:.0f} | {budgeted['rps']:.0f} "
            f"({budgeted['rps'] / resident['rps']:.2f}x) |",
            f"| p50 / p99 ms | {resident['p50_ms']:.1f} / {resident['p99_ms']:.1f} | "
            f"{budgeted['p50_ms']:.1f} / {budgeted['p99_ms']:.1f} |",
            "",
            f"- Hit ratio: {1 - cold / max(1, budgeted['requests']):.3f} ({cold} cold starts, "
            f"{evictions:.0f} evictions).",
            f"- Cold start from the local cache, from the request's ask to the model live (the "
            f"wait for room and for other loads included): small p50 {small_p50:.1f} ms, p99 "
            f"{pct(loads['small'], 99):.1f} ms ({len(loads['small'])}); large p50 "
            f"{pct(loads['large'], 50):.1f} ms, p99 {pct(loads['large'], 99):.1f} ms "
            f"({len(loads['large'])}). The load alone: small p50 {pct(pure['small'], 50):.1f} ms, "
            f"large p50 {pct(pure['large'], 50):.1f} ms. A cold request's mean wait for its "
            f"model: {(wait_sum / wait_count * 1000) if wait_count else float('nan'):.1f} ms.",
            f"- RSS under traffic: peak {mib(peak)}, p50 {mib(pct(samples, 50))}; budget + "
            f"baseline + 10% = {mib(ceiling)}.",
            "",
            "Targets:",
            f"- RSS never above budget + baseline + 10%: {'met' if peak <= ceiling else 'MISSED'}"
            f" ({mib(peak)} <= {mib(ceiling)}).",
            f"- Cold start of the bundled model from the cache under 100 ms p50: "
            f"{'met' if small_p50 < 100 else 'MISSED'} ({small_p50:.1f} ms).",
            f"- Zero failed requests: {'met' if budgeted['failures'] == 0 else 'MISSED'} "
            f"({budgeted['failures']}; statuses {budgeted['statuses']}).",
        ]
        text = "\n".join(report) + "\n"
        out = HERE / "results" / f"fleet-{time.strftime('%Y%m%d-%H%M%S')}.md"
        out.parent.mkdir(exist_ok=True)
        out.write_text(text)
        print(text)
        return 0
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
