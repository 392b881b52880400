#!/usr/bin/env python3
"""Several models in one hotserve: fairness under a flood, and resident memory.

    bench/multi.py fairness [--flood-model DIR] [--light-model DIR] [--seconds 15] ...
    bench/multi.py memory   [--models fixture,realistic,...] ...

fairness: one daemon serves two models (`--model flood=DIR --model light=DIR`). The light model
gets an open-loop trickle (`--light-rate` requests/s, each timed from its scheduled start, so a
server that makes it wait is charged for the wait) for `--seconds`, first alone, then while
`wrk` floods the other model with `--flood-connections` closed-loop connections. The report
gives the light model's success rate and p50/p99 in both phases, and the flood's req/s and
statuses.

memory: hotserve with 1, 2 and 4 models loaded (the first N of `--models`, each served under
its own name), after a short warm-up of every model: the resident set (VmRSS) and its peak
(VmHWM). Then, with all of them loaded, a swap of the first one (its directory is a symbolic
link; it is pointed at a copy with another digest and hotserve's poller loads it): the RSS
sampled every 10 ms from the switch until the new version is live plus one second, and the
RSS after. Writes bench/results/multi-<what>-<timestamp>.md and prints it.

Both use an existing release binary (`--hotserve-bin`, default target/release/hotserve) and
touch only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.client as httpclient
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from swap import free_port, http, spawn, stop, stop_all, tail, wait_until  # noqa: E402

FIXTURE = ROOT / "tests/fixtures/sentiment"
REALISTIC = HERE / ".cache/minilm-sentiment"


def log(msg: str) -> None:
    print(f"multi: {msg}", file=sys.stderr, flush=True)


def model_dir(name: str) -> Path:
    return {"fixture": FIXTURE, "realistic": REALISTIC}.get(name, Path(name))


def start_hotserve(binary: Path, models: list[tuple[str, Path]], logs: Path, tmp: Path,
                   extra: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    argv = [str(binary), "serve", "--listen", f"127.0.0.1:{port}",
            "--cache-dir", str(tmp / f"cache-{port}")]
    for name, path in models:
        argv += ["--model", f"{name}={path}"]
    argv += extra
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "HOTSERVE_")) and k != "MODEL_URI"}
    log_path = logs / f"hotserve-{port}.log"
    proc = spawn("hotserve", argv, log_path, env)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: http("GET", base + "/health/ready")[0] == 200, 180, 0.1,
               "hotserve ready", proc, log_path)
    return proc, base


def status_kb(pid: int, key: str) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def texts() -> list[str]:
    from textclf import read_tsv
    return [t for _, t in read_tsv(HERE / "data" / "heldout.tsv")]


# ---------------------------------------------------------------------------------------------
# fairness
# ---------------------------------------------------------------------------------------------

def trickle(base: str, path: str, rate: float, seconds: float, timeout: float) -> list[tuple]:
    """Open loop: a request every 1/rate s, on up to 16 threads with a kept-alive connection
    each; returns (status, latency_ms from the scheduled start) per request."""
    host, port = base[len("http://"):].split(":")
    sentences = texts()
    results: list[tuple] = []
    lock = threading.Lock()
    local = threading.local()
    start = time.monotonic()
    count = int(rate * seconds)

    def one(i: int) -> None:
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        body = json.dumps({"text": sentences[i % len(sentences)]})
        status = 0
        try:
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = httpclient.HTTPConnection(host, int(port), timeout=timeout)
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, httpclient.HTTPException):
            local.conn = None
        with lock:
            results.append((status, (time.monotonic() - scheduled) * 1000))

    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))
    return results


def summarize(results: list[tuple]) -> dict:
    ok = [ms for status, ms in results if status == 200]
    statuses: dict[str, int] = {}
    for status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {"requests": len(results), "ok": len(ok),
            "success": len(ok) / len(results) if results else None,
            "p50_ms": pct(ok, 50), "p99_ms": pct(ok, 99), "statuses": statuses}


def wrk_flood(url: str, connections: int, seconds: float, logs: Path) -> subprocess.Popen:
    bodies = logs / "bodies-predict.jsonl"
    if not bodies.exists():
        bodies.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts()))
    env = dict(os.environ, BENCH_BODIES=str(bodies))
    out = open(logs / "flood-wrk.txt", "w")
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "--timeout", "10s",
         "-s", str(HERE / "wrk/post.lua"), url], env=env, stdout=out, stderr=subprocess.STDOUT)


def fairness(args, logs: Path, tmp: Path) -> str:
    flood, light = model_dir(args.flood_model), model_dir(args.light_model)
    proc, base = start_hotserve(Path(args.hotserve_bin), [("flood", flood), ("light", light)],
                                logs, tmp, args.hotserve_arg)
    for name in ("flood", "light"):
        status, body = http("POST", f"{base}/models/{name}/predict", {"text": "fine"})
        assert status == 200, (name, status, body)
    log(f"light model alone: {args.light_rate}/s for {args.seconds}s")
    alone = summarize(trickle(base, "/models/light/predict", args.light_rate, args.seconds,
                              args.timeout))
    log(f"light model beside a flood of {args.flood_connections} connections")
    flooder = wrk_flood(f"{base}/models/flood/predict", args.flood_connections,
                        args.seconds + 4, logs)
    time.sleep(2)  # let the flood fill the queue before the trickle starts
    flooded = summarize(trickle(base, "/models/light/predict", args.light_rate, args.seconds,
                                args.timeout))
    flooder.wait(args.seconds + 60)
    wrk_out = (logs / "flood-wrk.txt").read_text()
    flood_json = next((json.loads(line[len("BENCH_JSON "):]) for line in wrk_out.splitlines()
                       if line.startswith("BENCH_JSON ")), {})
    stop(proc)
    result = {"alone": alone, "flooded": flooded, "flood": flood_json,
              "flood_model": str(flood), "light_model": str(light), "args": vars(args)}
    (logs / "fairness.json").write_text(json.dumps(result, indent=2))

    def row(label, s):
        return (f"| {label} | {s['requests']} | {s['success']:.1%} | {fmt(s['p50_ms'])} | "
                f"{fmt(s['p99_ms'])} | {s['statuses']} |")
    flood_errors = sum(v for k, v in flood_json.items() if k.startswith("errors_"))
    return "\n".join([
        f"# Fairness: one daemon, two models, one flooded ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"- flooded model `flood` = `{display(flood)}`: wrk, {args.flood_connections} connections, "
        f"closed loop: {fmt(flood_json.get('rps'))} req/s, p99 {fmt(flood_json.get('lat_p99_ms'))} ms, "
        f"{flood_errors} errors (non-2xx, e.g. 429, and socket errors)",
        f"- light model `light` = `{display(light)}`: open loop, {args.light_rate} req/s for "
        f"{args.seconds} s, latency from each request's scheduled start",
        f"- load average at the end: {open('/proc/loadavg').read().split()[0]}",
        "",
        "| light model | requests | success | p50 (ms) | p99 (ms) | statuses |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
        row("alone", alone),
        row("beside the flood", flooded),
        "",
    ])


# ---------------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------------

def warm(base: str, names: list[str], requests: int) -> None:
    for name in names:
        for i, text in enumerate(texts() * (requests // 60 + 1)):
            if i >= requests:
                break
            status, _ = http("POST", f"{base}/models/{name}/predict", {"text": text})
            assert status == 200, (name, status)


def live_version(base: str, name: str):
    """The digest of the model `name` serves (`/health` `models.<name>.model.digest`)."""
    status, body = http("GET", f"{base}/health")
    if status != 200 or not isinstance(body, dict):
        return None
    entry = (body.get("models") or {}).get(name) or {}
    return (entry.get("model") or {}).get("digest")


def memory(args, logs: Path, tmp: Path) -> str:
    names = args.models.split(",")
    # Each model is served from its own symbolic link, so that any of them can be swapped.
    entries: list[tuple[str, Path]] = []
    for i, name in enumerate(names):
        link = tmp / f"m{i}"
        link.symlink_to(model_dir(name).resolve())
        entries.append((f"m{i}-{Path(name).name}", link))
    rows = []
    for count in (1, 2, 4):
        if count > len(entries):
            break
        chosen = entries[:count]
        proc, base = start_hotserve(Path(args.hotserve_bin), chosen, logs, tmp, args.hotserve_arg)
        warm(base, [n for n, _ in chosen], args.warm_requests)
        rss, hwm = status_kb(proc.pid, "VmRSS"), status_kb(proc.pid, "VmHWM")
        rows.append({"models": [n for n, _ in chosen], "rss_kb": rss, "hwm_kb": hwm})
        log(f"{count} model(s): RSS {rss // 1024} MiB, peak {hwm // 1024} MiB")
        swap = None
        if count == len(entries) or count == 4:
            swap = swap_first(proc, base, chosen, tmp)
            rows[-1]["swap"] = swap
        stop(proc)
    (logs / "memory.json").write_text(json.dumps(rows, indent=2))
    lines = [
        f"# Resident memory, several models in one hotserve ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"- models, in order: {', '.join(f'`{display(model_dir(n))}`' for n in names)}; each warmed "
        f"with {args.warm_requests} requests; hotserve args: `{' '.join(args.hotserve_arg) or '(defaults)'}`",
        "",
        "| models loaded | RSS (MiB) | peak RSS so far (MiB) |",
        "| --- | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {len(r['models'])} ({', '.join(r['models'])}) | {r['rss_kb'] / 1024:.0f} "
                     f"| {r['hwm_kb'] / 1024:.0f} |")
    for r in rows:
        s = r.get("swap")
        if s:
            lines += ["", f"Swap of `{s['model']}` with {len(r['models'])} models loaded: RSS "
                      f"{s['before_kb'] / 1024:.0f} MiB before, peak {s['peak_kb'] / 1024:.0f} MiB "
                      f"(sampled every 10 ms), {s['after_kb'] / 1024:.0f} MiB one second after the "
                      f"new version went live ({s['seconds']:.2f} s from the switch)."]
    return "\n".join(lines) + "\n"


def swap_first(proc, base: str, chosen: list[tuple[str, Path]], tmp: Path) -> dict:
    name, link = chosen[0]
    source = link.resolve()
    copy = tmp / f"{name}-v2"
    if not copy.exists():
        shutil.copytree(source, copy)
        # Another digest: one more file, the model itself unchanged.
        (copy / "SWAPPED").write_text("a copy with another digest, for the swap\n")
    before_version = live_version(base, name)
    before = status_kb(proc.pid, "VmRSS")
    tmp_link = tmp / f"{name}.tmp"
    tmp_link.symlink_to(copy)
    target = copy if link.resolve() == source else source
    tmp_link.unlink()
    tmp_link.symlink_to(target)
    os.replace(tmp_link, link)
    started = time.monotonic()
    peak = before
    live_at = None
    while time.monotonic() - started < 120:
        peak = max(peak, status_kb(proc.pid, "VmRSS"))
        if live_at is None and live_version(base, name) not in (before_version, None):
            live_at = time.monotonic()
        if live_at is not None and time.monotonic() - live_at > 1.0:
            break
        time.sleep(0.01)
    if live_at is None:
        raise RuntimeError(f"the swap of {name} did not go live within 120 s; "
                           "is polling on (--hotserve-arg=--poll-interval=1s)?")
    return {"model": name, "before_kb": before, "peak_kb": peak,
            "after_kb": status_kb(proc.pid, "VmRSS"), "seconds": live_at - started}


# ---------------------------------------------------------------------------------------------

def fmt(x, digits=1) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def display(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["fairness", "memory"])
    ap.add_argument("--hotserve-bin", default=str(ROOT / "target/release/hotserve"))
    ap.add_argument("--hotserve-arg", action="append", default=[],
                    help="extra argument for hotserve serve (repeatable)")
    ap.add_argument("--flood-model", default="realistic",
                    help="fairness: the flooded model, fixture, realistic or a directory (realistic)")
    ap.add_argument("--light-model", default="fixture",
                    help="fairness: the lightly loaded model (fixture)")
    ap.add_argument("--flood-connections", type=int, default=256)
    ap.add_argument("--light-rate", type=float, default=20.0, help="light model requests/s (20)")
    ap.add_argument("--seconds", type=float, default=15.0, help="each fairness phase (15)")
    ap.add_argument("--timeout", type=float, default=10.0, help="light request timeout (10 s)")
    ap.add_argument("--models", default="realistic,fixture,realistic,fixture",
                    help="memory: up to four models, in loading order")
    ap.add_argument("--warm-requests", type=int, default=200)
    ap.add_argument("--out", help="report path (default bench/results/multi-<what>-<time>.md)")
    args = ap.parse_args()
    if not Path(args.hotserve_bin).is_file():
        ap.error(f"no hotserve binary at {args.hotserve_bin}; build it with "
                 "`cargo build --release` or pass --hotserve-bin")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else HERE / f"results/multi-{args.what}-{stamp}.md"
    logs = out.with_suffix(".logs")
    logs.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    tmp = Path(tempfile.mkdtemp(prefix="hotserve-multi-"))
    try:
        if args.what == "memory" and not any("poll" in a for a in args.hotserve_arg):
            args.hotserve_arg.append("--poll-interval=1s")
        report = fairness(args, logs, tmp) if args.what == "fairness" else memory(args, logs, tmp)
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    out.write_text(report)
    print(report)
    log(f"wrote {out} (logs: {logs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
