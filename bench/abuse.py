#!/usr/bin/env python3
"""Abusive clients against hotserve, each beside a well-behaved client.

    bench/abuse.sh [--attack-seconds 15] [--only slowloris,idle] ...   (or .venv/bin/python bench/abuse.py)

hotserve (a release build, `target/release/hotserve`) serves the bundled fixture model
(`tests/fixtures/sentiment`) on 127.0.0.1 with its default limits. Each phase runs a
well-behaved client for `--attack-seconds`: `--good-rate` POST /predict a second, half of them
on kept-alive connections and half on a fresh connection each, 5 s timeout. The first phase
has no attack (the baseline p99); every other phase runs one attack beside it:

  slowloris        hundreds of connections sending their headers one line a second
  slow-body        hundreds of connections sending a 100 kB body 10 bytes a second
  idle-keepalive   thousands of connections that send one request and then go quiet
  big-headers      one 64 KiB header per request; also 200 header fields per request
  pipeline-flood   1000 pipelined requests per write, answers never read
  chunked-over     chunked bodies past max_body_bytes
  expect-over      Expect: 100-continue with a Content-Length past max_body_bytes
  cl-te            conflicting Content-Length / Transfer-Encoding, and two Content-Lengths
  mid-body         a body cut off and the connection closed half-way
  mid-response     a batch request whose answer is never read (reset before it arrives)

Attackers reconnect when hotserve closes them, so the pressure lasts the whole phase. For
each phase it records the good client's success rate and p99, hotserve's peak RSS and open
file descriptors (sampled from /proc/<pid> every 50 ms), how the attack's connections ended
as the attacker saw them (status answered, closed, after how long), and hotserve's own count
of why it closed connections (`hotserve_connections_closed_total`, the difference over the
phase). Between phases it waits until hotserve's open connections are back to zero.

Standard library only. Prints a Markdown report and writes it to bench/results/abuse-<ts>.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import swap as sw  # noqa: E402  (process helpers shared with the swap benchmark)

GOOD_BODY = json.dumps({"text": "I love this, it works well"}).encode()
BATCH_BODY = json.dumps({"texts": ["a rather long sentence about a product " * 8] * 200}).encode()


def log(msg: str) -> None:
    print(f"abuse: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# HTTP/1.1 on raw asyncio streams
# ---------------------------------------------------------------------------------------------

def request(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: bench"]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, dict]:
    """(status, body, headers) of one response; raises on EOF."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers


async def open_conn(port: int):
    return await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)


def close(writer: asyncio.StreamWriter, reset: bool = False) -> None:
    try:
        if reset:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.close()
    except Exception:
        pass


# ---------------------------------------------------------------------------------------------
# The well-behaved client
# ---------------------------------------------------------------------------------------------

class Good:
    """Steady POST /predict at `rate` a second; half kept-alive, half on fresh connections."""

    def __init__(self, port: int, rate: float):
        self.port, self.rate = port, rate
        self.results: list[tuple[bool, float]] = []  # (ok, seconds)

    async def one(self, conn: list | None) -> None:
        started = time.monotonic()
        ok = False
        try:
            async def go():
                if conn is not None and conn[0] is None:
                    conn[0] = await open_conn(self.port)
                reader, writer = conn[0] if conn is not None else await open_conn(self.port)
                try:
                    writer.write(request("POST", "/predict", GOOD_BODY))
                    await writer.drain()
                    status, _, headers = await read_response(reader)
                finally:
                    if conn is None:
                        close(writer)
                return status == 200
            ok = await asyncio.wait_for(go(), 5.0)
        except Exception:
            ok = False
        if conn is not None and not ok and conn[0] is not None:
            close(conn[0][1])
            conn[0] = None
        self.results.append((ok, time.monotonic() - started))

    async def run(self, seconds: float) -> None:
        kept: list = [None]
        lock = asyncio.Lock()
        period = 1.0 / self.rate
        tasks = []
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < seconds:
            if i % 2 == 0:
                async def keep():
                    async with lock:  # one request at a time on the kept-alive connection
                        # A kept-alive connection idle past keep_alive_timeout may be closed
                        # by the server: a good client reconnects and retries once.
                        before = len(self.results)
                        await self.one(kept)
                        if not self.results[-1][0] and kept[0] is None and len(self.results) == before + 1:
                            first = self.results.pop()
                            await self.one(kept)
                            ok, secs = self.results.pop()
                            self.results.append((ok, secs + first[1]))
                tasks.append(asyncio.create_task(keep()))
            else:
                tasks.append(asyncio.create_task(self.one(None)))
            i += 1
            await asyncio.sleep(max(0.0, start + i * period - time.monotonic()))
        await asyncio.gather(*tasks)
        if kept[0] is not None:
            close(kept[0][1])

    def summary(self) -> dict:
        lat = sorted(s for _, s in self.results)
        ok = sum(1 for good, _ in self.results if good)
        p99 = lat[max(0, int(-(-0.99 * len(lat) // 1)) - 1)] * 1000 if lat else float("nan")
        p50 = lat[len(lat) // 2] * 1000 if lat else float("nan")
        return {"requests": len(self.results), "ok": ok,
                "success": ok / len(self.results) if self.results else 0.0,
                "p50_ms": p50, "p99_ms": p99}


# ---------------------------------------------------------------------------------------------
# Attacks: each runs `conns` attacker loops until `stop` is set and reports how each
# connection ended as {"outcome": count} plus the times from connect to end.
# ---------------------------------------------------------------------------------------------

class Ends:
    def __init__(self):
        self.outcomes: collections.Counter = collections.Counter()
        self.lifetimes: list[float] = []

    def add(self, outcome: str, started: float) -> None:
        self.outcomes[outcome] += 1
        self.lifetimes.append(time.monotonic() - started)


async def until_closed(reader: asyncio.StreamReader, stop: asyncio.Event) -> str:
    """Reads answers until EOF/reset; the outcome is the statuses seen and how it ended."""
    statuses = []
    try:
        while not stop.is_set():
            task = asyncio.create_task(read_response(reader))
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if task not in done:
                task.cancel()
                return describe(statuses, "still open at the end")
            status, _, _ = task.result()
            statuses.append(status)
            if len(statuses) > 3:
                statuses = statuses[:3]
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        return describe(statuses, "closed")
    return describe(statuses, "still open at the end")


def describe(statuses: list[int], end: str) -> str:
    seen = "/".join(str(s) for s in sorted(set(statuses))) if statuses else "no answer"
    return f"{seen}, {end}"


async def looped(conns: int, stop: asyncio.Event, ends: Ends, one) -> None:
    async def loop():
        while not stop.is_set():
            started = time.monotonic()
            try:
                outcome = await one(stop)
            except (ConnectionError, OSError) as err:
                outcome = f"connect failed ({type(err).__name__})"
                await asyncio.sleep(0.2)
            ends.add(outcome, started)
    await asyncio.gather(*(loop() for _ in range(conns)))


def slowloris(port):
    async def one(stop):
        reader, writer = await open_conn(port)
        try:
            writer.write(b"POST /predict HTTP/1.1\r\nHost: bench\r\n")
            read = asyncio.create_task(until_closed(reader, stop))
            i = 0
            while not read.done():
                writer.write(f"X-Slow-{i}: {i}\r\n".encode())
                i += 1
                await asyncio.sleep(1.0)
            return await read
        except ConnectionError:
            return "closed"
        finally:
            close(writer)
    return one


def slow_body(port):
    async def one(stop):
        reader, writer = await open_conn(port)
        try:
            writer.write(b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100000\r\n\r\n")
            read = asyncio.create_task(until_closed(reader, stop))
            while not read.done():
                writer.write(b"x" * 10)
                await asyncio.sleep(1.0)
            return await read
        except ConnectionError:
            return "closed"
        finally:
            close(writer)
    return one


def idle_keepalive(port):
    async def one(stop):
        reader, writer = await open_conn(port)
        try:
            writer.write(request("GET", "/health/live"))
            return await until_closed(reader, stop)
        finally:
            close(writer)
    return one


def big_headers(port):
    async def one(stop):
        reader, writer = await open_conn(port)
        try:
            if fastrand_bit():
                extra = {"X-Big": "a" * 65536}
            else:
                extra = {f"X-Many-{i}": str(i) for i in range(200)}
            writer.write(request("POST", "/predict", GOOD_BODY, extra))
            return await until_closed(reader, stop)
        finally:
            close(writer)
    return one


_flip = [0]


def fastrand_bit() -> bool:
    _flip[0] ^= 1
    return bool(_flip[0])


def pipeline_flood(port):
    burst = request("GET", "/health/live") * 1000

    async def one(stop):
        reader, writer = await open_conn(port)
        try:
            # Write, never read: hotserve answers until its socket buffer is full.
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            started = time.monotonic()
            while not stop.is_set():
                writer.write(burst)
                try:
                    await asyncio.wait_for(writer.drain(), 1.0)
                except asyncio.TimeoutError:
                    pass
                # The end shows as EOF once the buffered answers are read: read them now.
                if writer.transport.get_write_buffer_size() > 4 * len(burst):
                    break
            # Wait for hotserve to give up on us, without reading.
            while not stop.is_set():
                try:
                    writer.write(b"GET /health/live HTTP/1.1\r\nHost: b\r\n\r\n")
                    await asyncio.wait_for(writer.drain(), 0.5)
                except asyncio.TimeoutError:
                    pass
                if reader.at_eof() or writer.is_closing():
                    break
                await asyncio.sleep(0.5)
                # A connection reset by hotserve surfaces on the next write.
            return "answers unread, closed" if not stop.is_set() else "answers unread, still open at the end"
        except ConnectionError:
            return "answers unread, closed"
        finally:
            close(writer)
    return one


def chunked_over(port):
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)

    async def one(stop):
        reader, writer = await open_conn(port)
        try:
            writer.write(b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            sent = 0
            read = asyncio.create_task(until_closed(reader, stop))
            while not read.done() and sent < 4 << 20:
                writer.write(chunk)
                sent += 65536
                try:
                    await asyncio.wait_for(writer.drain(), 1.0)
                except asyncio.TimeoutError:
                    pass
            return await read
        except ConnectionError:
            # Reset while sending: hotserve stopped reading at the limit and closed.
            return f"reset while sending, after {sent / 2**20:.0f}-{(sent + 2**20) / 2**20:.0f} MiB written"
        finally:
            close(writer)
    return one


def expect_over(port):
    async def one(stop):
        reader, writer = await open_conn(port)
        try:
            writer.write(b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 104857600\r\nExpect: 100-continue\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            status = int(head.split()[1])
            if status == 100:
                return "100 Continue sent (body invited)"
            rest = await until_closed(reader, stop)
            return f"{status} without 100 Continue; then {rest}"
        except asyncio.TimeoutError:
            return "no answer in 10 s"
        except (asyncio.IncompleteReadError, ConnectionError):
            return "closed"
        finally:
            close(writer)
    return one


def cl_te(port):
    forms = [
        b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /health/live HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5\r\nContent-Length: 50\r\n\r\n{\"text\":\"hello\"}",
        b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: gzip, chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    ]
    counter = [0]

    async def one(stop):
        reader, writer = await open_conn(port)
        try:
            counter[0] += 1
            writer.write(forms[counter[0] % len(forms)])
            return await until_closed(reader, stop)
        finally:
            close(writer)
    return one


def mid_body(port):
    async def one(stop):
        reader, writer = await open_conn(port)
        writer.write(b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n" + b"x" * 50000)
        await writer.drain()
        close(writer)
        await asyncio.sleep(0.01)
        return "client closed mid-body"
    return one


def mid_response(port):
    async def one(stop):
        reader, writer = await open_conn(port)
        writer.write(request("POST", "/predict/batch", BATCH_BODY))
        await writer.drain()
        # Read the first bytes of the answer, then reset the connection.
        try:
            await asyncio.wait_for(reader.read(100), 10)
        except asyncio.TimeoutError:
            pass
        close(writer, reset=True)
        return "client reset mid-response"
    return one


ATTACKS = {
    # name: (factory, connections, description)
    "slowloris": (slowloris, 500, "slow headers: 500 connections, one header line a second"),
    "slow-body": (slow_body, 500, "slow bodies: 500 connections, 10 bytes a second of 100 kB"),
    "idle-keepalive": (idle_keepalive, 3000, "3000 keep-alive connections idle after one request"),
    "big-headers": (big_headers, 50, "64 KiB header / 200 header fields, 50 connections in a loop"),
    "pipeline-flood": (pipeline_flood, 50, "1000 pipelined requests per write, answers never read, 50 connections"),
    "chunked-over": (chunked_over, 20, "chunked bodies of 4 MiB (limit 1 MiB), 20 connections"),
    "expect-over": (expect_over, 50, "Expect: 100-continue, Content-Length 100 MiB, 50 connections"),
    "cl-te": (cl_te, 50, "CL+TE, two Content-Lengths, TE gzip,chunked+identity; 50 connections"),
    "mid-body": (mid_body, 50, "closed after 50 kB of a 100 kB body, 50 connections"),
    "mid-response": (mid_response, 20, "200-text batch, reset after 100 bytes of the answer, 20 connections"),
}


# ---------------------------------------------------------------------------------------------
# Sampling hotserve
# ---------------------------------------------------------------------------------------------

def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


async def sample(pid: int, stop: asyncio.Event, peaks: dict) -> None:
    while not stop.is_set():
        peaks["rss_kb"] = max(peaks.get("rss_kb", 0), rss_kb(pid))
        peaks["fds"] = max(peaks.get("fds", 0), fds(pid))
        await asyncio.sleep(0.05)


def closed_counts(url: str) -> dict:
    status, text = sw.http("GET", f"{url}/metrics", timeout=10)
    counts = {}
    if status == 200 and isinstance(text, str):
        for m in re.finditer(r'^hotserve_connections_closed_total\{reason="([a-z_]+)"\} (\d+)', text, re.M):
            counts[m.group(1)] = int(m.group(2))
        m = re.search(r"^hotserve_open_connections (\d+)", text, re.M)
        counts["_open"] = int(m.group(1)) if m else -1
    return counts


async def phase(name: str, port: int, pid: int, url: str, seconds: float, rate: float) -> dict:
    before = closed_counts(url)
    stop = asyncio.Event()
    peaks: dict = {}
    sampler = asyncio.create_task(sample(pid, stop, peaks))
    ends = Ends()
    attack = None
    if name != "baseline":
        factory, conns, _ = ATTACKS[name]
        attack = asyncio.create_task(looped(conns, stop, ends, factory(port)))
        await asyncio.sleep(1.0)  # let the attack build up before measuring the good client
    # The good client runs in a process of its own, so that the attackers' event loop (thousands
    # of sockets) cannot delay it: what it measures is hotserve.
    good_proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--good-client", f"{port},{rate},{seconds}",
        stdout=asyncio.subprocess.PIPE)
    good_out, _ = await good_proc.communicate()
    good_summary = json.loads(good_out)
    stop.set()
    if attack is not None:
        try:
            await asyncio.wait_for(attack, 15)
        except asyncio.TimeoutError:
            log(f"{name}: attackers still running 15 s after the phase")
    sampler.cancel()
    # Wait for hotserve to close what the attack left (bounded), then read its counts.
    deadline = time.monotonic() + 30
    after = closed_counts(url)
    while after.get("_open", 0) > 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        after = closed_counts(url)
    closed = {k: v - before.get(k, 0) for k, v in after.items()
              if not k.startswith("_") and v - before.get(k, 0) > 0}
    lifetimes = sorted(ends.lifetimes)
    return {
        "name": name, "good": good_summary, "peak_rss_kb": peaks.get("rss_kb", 0),
        "peak_fds": peaks.get("fds", 0), "after_rss_kb": rss_kb(pid), "after_fds": fds(pid),
        "attack_connections": sum(ends.outcomes.values()),
        "outcomes": dict(ends.outcomes.most_common(4)),
        "median_lifetime_s": lifetimes[len(lifetimes) // 2] if lifetimes else None,
        "server_closed": closed, "open_after": after.get("_open"),
    }


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def report(meta: dict, rows: list[dict]) -> str:
    base = rows[0]["good"]["p99_ms"]
    out = [f"# hotserve under abusive clients, {meta['date']}", "",
           f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']} (shared; load "
           f"{meta['load_start']} at the start, {meta['load_end']} at the end); git {meta['git']}  ",
           f"hotserve: release build, fixture model `tests/fixtures/sentiment`, default limits; "
           f"good client {meta['rate']:g} POST /predict/s (half kept-alive, half fresh connections), "
           f"{meta['seconds']:g} s per phase", "",
           "| attack | good client ok | good p99 (x baseline) | peak RSS | peak fds | "
           "attack connections, how they ended (client side; median life) | closed by (hotserve's count) |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        g = r["good"]
        ratio = g["p99_ms"] / base if base else float("nan")
        ends = "; ".join(f"{k}: {v}" for k, v in r["outcomes"].items()) or "-"
        if r["median_lifetime_s"] is not None:
            ends += f" (n={r['attack_connections']}, median {r['median_lifetime_s']:.1f} s)"
        closed = ", ".join(f"{k} {v}" for k, v in sorted(r["server_closed"].items(), key=lambda kv: -kv[1])) or "-"
        desc = ATTACKS[r["name"]][2] if r["name"] in ATTACKS else "none (baseline)"
        out.append(f"| **{r['name']}**: {desc} | {g['ok']}/{g['requests']} ({100 * g['success']:.1f} %) "
                   f"| {g['p99_ms']:.0f} ms ({ratio:.1f}x) | {r['peak_rss_kb'] / 1024:.0f} MiB "
                   f"| {r['peak_fds']} | {ends} | {closed} |")
    out += ["", f"After the last phase: RSS {rows[-1]['after_rss_kb'] / 1024:.0f} MiB, "
            f"{rows[-1]['after_fds']} fds, {rows[-1]['open_after']} connections open.", ""]
    return "\n".join(out)


async def run_all(args, hs_url: str, port: int, pid: int) -> list[dict]:
    names = ["baseline"] + [n for n in ATTACKS if not args.only or n in args.only.split(",")]
    rows = []
    for name in names:
        log(f"phase {name} ({args.attack_seconds:g} s)")
        row = await phase(name, port, pid, hs_url, args.attack_seconds, args.good_rate)
        log(f"  good {row['good']['ok']}/{row['good']['requests']} p99 {row['good']['p99_ms']:.0f} ms; "
            f"peak RSS {row['peak_rss_kb'] // 1024} MiB, fds {row['peak_fds']}; "
            f"attack {row['outcomes']}; server closed {row['server_closed']}")
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attack-seconds", type=float, default=15.0)
    parser.add_argument("--good-rate", type=float, default=20.0, help="good requests per second")
    parser.add_argument("--only", default="", help="comma-separated attacks (default: all)")
    parser.add_argument("--hotserve-bin", default=str(ROOT / "target/release/hotserve"))
    parser.add_argument("--hotserve-arg", action="append", default=[],
                        help="extra argument for hotserve serve (repeat), e.g. --set=key=value")
    parser.add_argument("--good-client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.good_client:
        port, rate, seconds = args.good_client.split(",")
        good = Good(int(port), float(rate))
        asyncio.run(good.run(float(seconds)))
        print(json.dumps(good.summary()))
        return 0
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, sw._on_signal)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    results = ROOT / "bench/results"
    results.mkdir(exist_ok=True)
    logs = results / f"abuse-{stamp}.logs"
    logs.mkdir()
    load_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    try:
        with tempfile.TemporaryDirectory(prefix="hotserve-abuse-") as tmp:
            port = sw.free_port()
            env = sw.clean_env()
            env["HOTSERVE_STATE_DIR"] = tmp
            argv = [args.hotserve_bin, "serve", "--model-uri", str(ROOT / "tests/fixtures/sentiment"),
                    "--listen", f"127.0.0.1:{port}", "--log-format", "json", *args.hotserve_arg]
            proc = sw.spawn("hotserve", argv, logs / "hotserve.log", env)
            url = f"http://127.0.0.1:{port}"
            sw.wait_until(lambda: sw.http("GET", f"{url}/health/ready", timeout=2)[0] == 200,
                          120, 0.05, "hotserve readiness", proc, logs / "hotserve.log")
            log(f"hotserve ready on {url} (pid {proc.pid})")
            rows = asyncio.run(run_all(args, url, port, proc.pid))
            alive = proc.poll() is None
            code = sw.stop(proc)
            sw.forget(proc)
    finally:
        sw.stop_all()
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.strip()
    meta = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "bench/abuse.sh " + " ".join(sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "load_start": load_start,
            "load_end": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "git": git, "rate": args.good_rate, "seconds": args.attack_seconds}
    text = report(meta, rows)
    text += f"hotserve was {'alive' if alive else 'DEAD'} at the end; exit code {code} on SIGTERM.\n"
    (results / f"abuse-{stamp}.md").write_text(text)
    (logs / "rows.json").write_text(json.dumps(rows, indent=2))
    print(text)
    bad = [r["name"] for r in rows if r["good"]["success"] < 0.99]
    return 1 if bad or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
