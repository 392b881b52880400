#!/usr/bin/env python3
"""Helpers for bench/run.sh: request bodies, process-tree memory, and the results report.

    benchlib.py bodies predict|mlflow|v2 OUT    one JSON request body per line
    benchlib.py port                            a free TCP port on 127.0.0.1
    benchlib.py rss PID                         "tree_hwm_kb main_hwm_kb tree_rss_kb nprocs" of PID's tree
    benchlib.py field RUN.jsonl MODEL SERVER CONCURRENCY KEY   one value of a run row (empty if none)
    benchlib.py report RUN.jsonl WORK_DIR OUT.md [--meta META.json]

The report reads from WORK_DIR the ONNX Runtime ceilings (ceiling-<model>.json) and the issue 15
sections run.sh writes there (open-loop-<model>.json and open-loop-<model>-bare.json, the same
open loop against the bare server; mixed-<model>.json; memory-<model>.json: loadgen summaries or
{"skipped": why}); it puts the table of the issue 15 targets at its top and also writes that
table alone to WORK_DIR/targets.md.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def texts() -> list[str]:
    sys.path.insert(0, str(HERE))
    from textclf import read_tsv

    out = []
    for name in ("heldout.tsv", "train.tsv"):
        out += [t for _, t in read_tsv(HERE / "data" / name)]
    return out


def cmd_bodies(fmt: str, out: str) -> None:
    with open(out, "w") as f:
        for t in texts():
            if fmt == "predict":
                body = {"text": t}
            elif fmt == "mlflow":
                body = {"dataframe_split": {"columns": ["text"], "data": [[t]]}}
            elif fmt == "v2":
                # Open Inference Protocol (KServe v2) REST: one BYTES input named `text`.
                body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [t]}]}
            else:
                raise SystemExit(f"unknown body format {fmt}")
            f.write(json.dumps(body) + "\n")


def cmd_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cmd_rss(pid: int) -> None:
    kids = _children()
    tree, stack = [], [pid]
    while stack:
        p = stack.pop()
        tree.append(p)
        stack += kids.get(p, [])
    hwm = [_status_kb(p, "VmHWM") for p in tree]
    rss = [_status_kb(p, "VmRSS") for p in tree]
    print(sum(hwm), max(hwm or [0]), sum(rss), sum(1 for h in hwm if h))


# ---------------------------------------------------------------------------------------------


def _fmt(v, digits=1):
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def _ratio(a, b):
    if a is None or b is None or not b:
        return "—"
    r = a / b
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


def cmd_field(run_jsonl: str, model: str, server: str, concurrency: str, key: str) -> None:
    for line in open(run_jsonl):
        if not line.strip():
            continue
        r = json.loads(line)
        if (r.get("model"), r.get("server"), str(r.get("concurrency"))) == (model, server, concurrency):
            if r.get(key) is not None and not r.get("skipped"):
                print(r[key])
                return


# ---------------------------------------------------------------------------------------------
# Issue 15 targets: one line each, with the ratio measured in this run and a verdict.


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _errors(r: dict) -> int:
    return sum(r.get(k, 0) for k in ("errors_status", "errors_connect", "errors_read", "errors_write", "errors_timeout"))


def _why_missing(rows: list[dict], model: str, server: str, concurrency: int | None = None) -> str:
    """Why a row needed by a target is missing: its skip reason, or which row it is."""
    for r in rows:
        if r["model"] == model and r["server"] == server and r.get("skipped"):
            return f"{server} skipped: {r['skipped']}"
    at = f" c={concurrency}" if concurrency is not None else ""
    return f"no {model}/{server}{at} row in this run"


class Targets:
    """The summary table: rows of (target, measured, ratio, goal, verdict)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str, str, str]] = []

    def add(self, name: str, measured: str, ratio: float | None, goal: str, verdict: str) -> None:
        self.lines.append((name, measured, "—" if ratio is None else f"{ratio:.2f}", goal, verdict))

    def ratio(self, name: str, measured: str, ratio: float, goal: str, ok: bool, note: str = "") -> None:
        self.add(name, measured, ratio, goal, ("PASS" if ok else "FAIL") + (f" ({note})" if note else ""))

    def na(self, name: str, goal: str, why: str) -> None:
        self.add(name, "—", None, goal, f"n/a ({why})")

    def markdown(self, date: str) -> list[str]:
        out = [
            f"## Issue 15 targets ({date})" if date else "## Issue 15 targets",
            "",
            "| target | measured | ratio | goal | verdict |",
            "| --- | --- | ---: | --- | --- |",
        ]
        out += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in self.lines]
        return out + [""]


def issue15_targets(rows: list[dict], ceilings: dict, work: Path) -> Targets:
    by = {(r["model"], r["server"], r["concurrency"]): r for r in rows if not r.get("skipped")}
    t = Targets()

    def rps(model, server, c):
        return by.get((model, server, c), {}).get("rps")

    # T1: HTTP ceiling.
    name, goal = "T1 fixture c=64: hotserve / bare req/s", "≥ 0.5"
    h, b = rps("fixture", "hotserve", 64), rps("fixture", "bare", 64)
    if h and b:
        t.ratio(name, f"{h:,.0f} / {b:,.0f} req/s", h / b, goal, h / b >= 0.5)
    else:
        t.na(name, goal, _why_missing(rows, "fixture", "hotserve" if not h else "bare", 64))

    # T2a: single-request latency against ONNX Runtime's batch-1 latency on both cores.
    name, goal = "T2a realistic c=1: hotserve p50 / ORT batch-1 p50 (all threads)", "≤ 1.2"
    p50 = by.get(("realistic", "hotserve", 1), {}).get("lat_p50_ms")
    ort = (((ceilings.get("realistic") or {}).get("batch1") or {}).get("threads_all") or {})
    ort_p50 = ort.get("latency_ms_p50")
    if p50 and ort_p50:
        t.ratio(name, f"{p50:.2f} / {ort_p50:.2f} ms ({ort.get('threads', '?')} threads)", p50 / ort_p50, goal,
                p50 / ort_p50 <= 1.2)
    elif not p50:
        t.na(name, goal, _why_missing(rows, "realistic", "hotserve", 1))
    else:
        t.na(name, goal, "the ceiling has no batch1.threads_all: an ort_ceiling.py without batch-1 latencies"
             if "realistic" in ceilings else "no ONNX Runtime ceiling for the realistic model")

    # T2b: the adaptive pool under load against the best fixed layout.
    name, goal = "T2b realistic c=64: hotserve (adaptive) / best fixed layout req/s", "≥ 0.95"
    h = rps("realistic", "hotserve", 64)
    fixed = {s: rps("realistic", s, 64) for s in ("hotserve-2x1", "hotserve-1x2")}
    fixed = {s: v for s, v in fixed.items() if v}
    if h and fixed:
        best = max(fixed, key=fixed.get)
        others = ", ".join(f"{s[len('hotserve-'):]} {v:,.0f}" for s, v in fixed.items())
        t.ratio(name, f"{h:,.0f} / {fixed[best]:,.0f} req/s ({others})", h / fixed[best], goal, h / fixed[best] >= 0.95,
                "" if len(fixed) == 2 else "one layout only")
    else:
        t.na(name, goal, _why_missing(rows, "realistic", "hotserve" if not h else "hotserve-2x1", 64))

    # T3: mixed lengths against the engine's naive batches of 32.
    name, goal = "T3 realistic mixed: hotserve texts/s / ORT naive batches of 32", "≥ 1.1"
    mixed = _load(work / "mixed-realistic.json")
    ceiling_mixed = (ceilings.get("realistic") or {}).get("mixed") or {}
    naive = (ceiling_mixed.get("naive") or {}).get("best_texts_per_s")
    if not mixed:
        t.na(name, goal, "the mixed run did not run (no hotserve realistic row)")
    elif mixed.get("skipped"):
        t.na(name, goal, f"skipped: {mixed['skipped']}")
    else:
        tps = mixed.get("requests_per_s") or 0.0
        failed = mixed.get("failed", 0)
        if naive:
            layout = (ceiling_mixed.get("naive") or {}).get("best_layout", "?")
            t.ratio(name, f"{tps:,.1f} / {naive:,.1f} texts/s (ORT layout {layout}; {failed} failed)", tps / naive,
                    goal, tps / naive >= 1.1 and not failed, f"{failed} failed" if failed else "")
        else:
            t.add(name, f"{tps:,.1f} texts/s ({failed} failed)", None, goal,
                  "n/a (the ceiling has no mixed.naive: ort_ceiling.py without --mixed)")
        buckets = sorted((mixed.get("buckets") or {}).items(), key=lambda kv: (kv[1].get("tokens_min", 0), kv[0]))
        for bname, bk in buckets:
            t.add(f"T3 bucket {bname} ({bk.get('tokens_min', '?')}-{bk.get('tokens_max', '?')} tokens)",
                  f"{bk.get('count', 0)} texts, p50 {bk.get('p50_ms', 0):.1f} ms, p99 {bk.get('p99_ms', 0):.1f} ms"
                  + (f", {bk['failed']} failed" if bk.get("failed") else ""), None, "information", "—")
        if len(buckets) >= 2:
            short, long_ = buckets[0][1].get("p99_ms") or 0, buckets[-1][1].get("p99_ms") or 0
            if short:
                r = long_ / short
                t.add(f"T3 starvation: p99 longest / shortest bucket ({buckets[-1][0]} / {buckets[0][0]})",
                      f"{long_:.1f} / {short:.1f} ms", r, "≤ 10",
                      "ok" if r <= 10 else "WARNING: long texts may be starved")

    # T4: open loop at half the peak, per model.
    for model in ("fixture", "realistic"):
        name, goal = f"T4 {model} open loop: p99 at 50% of peak / c=1 p50", "≤ 3"
        ol = _load(work / f"open-loop-{model}.json")
        c1 = by.get((model, "hotserve", 1), {}).get("lat_p50_ms")
        if not ol:
            if any(r["model"] == model for r in rows):
                t.na(name, goal, _why_missing(rows, model, "hotserve", 64) if not rps(model, "hotserve", 64)
                     else "the open loop did not run")
            continue
        if ol.get("skipped"):
            t.na(name, goal, f"skipped: {ol['skipped']}")
            continue
        if not c1:
            t.na(name, goal, _why_missing(rows, model, "hotserve", 1))
            continue
        p99 = (ol.get("latency_us") or {}).get("p99", 0) / 1000
        rate = ol.get("rate") or {}
        failed = ol.get("failed", 0)
        notes = []
        if failed:
            notes.append(f"{failed} failed")
        target_rate, achieved = rate.get("target_per_s") or 0, rate.get("achieved_per_s") or 0
        if target_rate and achieved < 0.95 * target_rate:
            notes.append("the generator fell behind its rate")
        t.ratio(name, f"p99 {p99:.2f} ms at {achieved:,.0f} of {target_rate:,.0f} req/s "
                      f"({rate.get('late_over_1ms', '?')} sent >1 ms late) / c=1 p50 {c1:.2f} ms",
                p99 / c1, goal, p99 / c1 <= 3 and not failed, "; ".join(notes))

    # T4's floor (information): the same open loop against the bare server, which answers at
    # once, over its own c=1 p50. Above 3, the criterion fails on the machine and the load
    # generator alone, whatever the server does.
    for model in ("fixture", "realistic"):
        ol = _load(work / f"open-loop-{model}-bare.json")
        if not ol:
            continue
        name, goal = f"T4 floor, {model} rate: bare open-loop p99 / bare c=1 p50", "information"
        # The bare server's answer does not depend on the model: its wrk rows are the fixture's.
        c1 = by.get(("fixture", "bare", 1), {}).get("lat_p50_ms")
        if ol.get("skipped") or not c1:
            t.na(name, goal, f"skipped: {ol['skipped']}" if ol.get("skipped") else _why_missing(rows, "fixture", "bare", 1))
            continue
        p99 = (ol.get("latency_us") or {}).get("p99", 0) / 1000
        rate = ol.get("rate") or {}
        target_rate, achieved = rate.get("target_per_s") or 0, rate.get("achieved_per_s") or 0
        behind = target_rate and achieved < 0.95 * target_rate
        t.add(name, f"p99 {p99:.2f} ms at {achieved:,.0f} of {target_rate:,.0f} req/s / c=1 p50 {c1:.2f} ms",
              p99 / c1, goal, "the generator fell behind its rate" if behind else "—")

    # T5: one copy of the weights.
    name, goal = "T5 realistic: RSS 4 workers / 1 worker", "≤ 1.3"
    mem = _load(work / "memory-realistic.json")
    if not mem:
        t.na(name, goal, "the memory run did not run (needs hotserve and the realistic model)")
    elif mem.get("skipped"):
        t.na(name, goal, f"skipped: {mem['skipped']}")
    else:
        w = mem.get("workers") or {}
        one, four = (w.get("1") or {}).get("rss_kb"), (w.get("4") or {}).get("rss_kb")
        if one and four:
            t.ratio(name, f"{four / 1024:,.0f} / {one / 1024:,.0f} MiB", four / one, goal, four / one <= 1.3)
        else:
            t.na(name, goal, "incomplete memory-realistic.json")

    # T6: h2c, information; PASS when the row ran without errors.
    for model in list(dict.fromkeys(r["model"] for r in rows)):
        if not any(r["server"] == "hotserve-h2c" and r["model"] == model for r in rows):
            continue
        name, goal = f"T6 {model} h2c c=64: hotserve-h2c / hotserve HTTP/1.1 req/s", "information; runs, 0 errors"
        h2 = [r for r in rows if r["model"] == model and r["server"] == "hotserve-h2c" and not r.get("skipped")]
        h, h1 = rps(model, "hotserve-h2c", 64), rps(model, "hotserve", 64)
        if not h2:
            t.na(name, goal, _why_missing(rows, model, "hotserve-h2c"))
            continue
        errors = sum(_errors(r) for r in h2)
        ratio = h / h1 if h and h1 else None
        measured = f"{h:,.0f} / {h1:,.0f} req/s" if ratio else f"{h or 0:,.0f} req/s (no HTTP/1.1 c=64 row)"
        t.add(name, measured + f", {errors} errors", ratio, goal, "PASS" if not errors else f"FAIL ({errors} errors)")
    return t


def _extra_sections(models: list[str], work: Path, ceilings: dict) -> list[str]:
    """The open loop, mixed lengths and memory runs, and the ceiling's batch-1 and mixed parts."""
    lines: list[str] = []
    ols = {label: _load(work / f"open-loop-{label}.json")
           for m in models for label in (m, f"{m}-bare")}
    if any(ols.values()):
        lines += ["## Open loop (target 4)", "",
                  "`examples/loadgen.rs --rate`: requests due at fixed intervals, latency from the due time "
                  "(no coordinated omission), at most the given number in flight.", "",
                  "`<model>-bare`: the same rate against the bare hyper server (the floor of this machine and "
                  "load generator).", "",
                  "| model | target req/s | achieved | in flight ≤ | p50 | p90 | p99 | p99.9 | max | failed | sent >1 ms late |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for m, ol in ols.items():
            if not ol:
                continue
            if ol.get("skipped"):
                lines.append(f"| {m} | skipped: {ol['skipped']} | | | | | | | | | |")
                continue
            lat, rate = ol.get("latency_us") or {}, ol.get("rate") or {}
            ms = lambda k: _fmt(lat.get(k, 0) / 1000, 2)  # noqa: E731
            lines.append(f"| {m} | {_fmt(rate.get('target_per_s'))} | {_fmt(rate.get('achieved_per_s'))} | "
                         f"{ol.get('concurrency', '?')} | {ms('p50')} | {ms('p90')} | {ms('p99')} | {ms('p999')} | "
                         f"{ms('max')} | {ol.get('failed', 0)} | {rate.get('late_over_1ms', '?')} |")
        lines.append("")
    mixed = _load(work / "mixed-realistic.json")
    if mixed:
        lines += ["## Mixed lengths (target 3)", ""]
        if mixed.get("skipped"):
            lines += [f"Skipped: {mixed['skipped']}", ""]
        else:
            lines += [f"hotserve, realistic model, {mixed.get('concurrency', '?')} connections, closed loop: "
                      f"{_fmt(mixed.get('requests_per_s'))} texts/s, p50 {_fmt(mixed['latency_us']['p50'] / 1000, 2)} ms, "
                      f"p99 {_fmt(mixed['latency_us']['p99'] / 1000, 2)} ms, {mixed.get('failed', 0)} failed.", "",
                      "| bucket | tokens | texts | texts/s | p50 ms | p90 ms | p99 ms | max ms | failed |",
                      "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
            buckets = sorted((mixed.get("buckets") or {}).items(), key=lambda kv: (kv[1].get("tokens_min", 0), kv[0]))
            for name, b in buckets:
                lines.append(f"| {name} | {b.get('tokens_min')}-{b.get('tokens_max')} | {b.get('count', 0)} | "
                             f"{_fmt(b.get('texts_per_s'))} | {_fmt(b.get('p50_ms'), 2)} | {_fmt(b.get('p90_ms'), 2)} | "
                             f"{_fmt(b.get('p99_ms'), 2)} | {_fmt(b.get('max_ms'), 2)} | {b.get('failed', 0)} |")
            lines.append("")
    cm = (ceilings.get("realistic") or {}).get("mixed")
    if cm:
        lines += [f"ONNX Runtime on the same mix ({cm.get('texts', '?')} texts of `{cm.get('file', '?')}`, "
                  f"batches of {cm.get('batch_size', '?')}): naive (file order, padded to the longest) "
                  f"{_fmt((cm.get('naive') or {}).get('best_texts_per_s'))} texts/s "
                  f"({(cm.get('naive') or {}).get('best_layout', '?')}), sorted by length "
                  f"{_fmt((cm.get('sorted') or {}).get('best_texts_per_s'))} texts/s "
                  f"({(cm.get('sorted') or {}).get('best_layout', '?')}).", ""]
    b1 = (ceilings.get("realistic") or {}).get("batch1")
    if b1:
        cells = [f"{k} ({v.get('threads', '?')} threads): p50 {_fmt(v.get('latency_ms_p50'), 2)} ms, "
                 f"mean {_fmt(v.get('latency_ms_mean'), 2)} ms" for k, v in b1.items() if isinstance(v, dict)]
        lines += ["ONNX Runtime batch-1 latency, realistic model: " + "; ".join(cells) + ".", ""]
    mem = _load(work / "memory-realistic.json")
    if mem:
        lines += ["## Memory with 1 and 4 inference workers (target 5)", ""]
        if mem.get("skipped"):
            lines += [f"Skipped: {mem['skipped']}", ""]
        else:
            w = mem.get("workers") or {}
            lines += ["| inference workers | RSS MiB (after ~100 requests) | peak RSS MiB |", "| ---: | ---: | ---: |"]
            for k in sorted(w, key=int):
                lines.append(f"| {k} | {_fmt(w[k].get('rss_kb', 0) / 1024, 0)} | {_fmt(w[k].get('hwm_kb', 0) / 1024, 0)} |")
            lines.append("")
    return lines


def cmd_report(run_jsonl: str, ceiling_dir: str, out: str, meta_path: str | None) -> None:
    rows = [json.loads(line) for line in open(run_jsonl) if line.strip()] if os.path.exists(run_jsonl) else []
    meta = json.load(open(meta_path)) if meta_path and os.path.exists(meta_path) else {}
    ceilings = {}
    for p in sorted(Path(ceiling_dir).glob("ceiling-*.json")):
        ceilings[p.stem[len("ceiling-"):]] = json.loads(p.read_text())

    models = list(dict.fromkeys(r["model"] for r in rows)) or list(ceilings)
    servers = list(dict.fromkeys(r["server"] for r in rows))
    lines = [f"# hotserve benchmark — {meta.get('date', '')}", ""]
    if meta:
        lines += [
            f"- machine: {meta.get('cpu', '?')}, {meta.get('nproc', '?')} cores, {meta.get('mem', '?')}; "
            f"load average at start {meta.get('loadavg', '?')}",
            f"- hotserve: {meta.get('hotserve', '?')}; commit {meta.get('commit', '?')}",
            f"- load generator: {meta.get('wrk', 'wrk')}, {meta.get('wrk_threads', 1)} thread(s), "
            f"{meta.get('duration', '?')} s per concurrency after {meta.get('warmup', '?')} s warm-up, "
            f"timeout {meta.get('timeout', '?')}; one short review sentence per request",
            f"- Python side: {meta.get('python_versions', '?')}",
            f"- command: `{meta.get('command', 'bench/run.sh')}`",
        ]
        for note in meta.get("notes", []):
            lines.append(f"- note: {note}")
        lines.append("")

    work = Path(ceiling_dir)
    targets = issue15_targets(rows, ceilings, work).markdown(meta.get("date", ""))
    (work / "targets.md").write_text("\n".join(targets) + "\n")
    lines += targets

    lines += [
        "req/s = completed requests per second (one text each); latency in ms; errors = non-2xx "
        "responses + socket errors (connect/read/write/timeout); peak RSS = sum of VmHWM over the "
        "server's process tree, read after each step (so it is the peak so far), in MiB.",
        "",
    ]

    by = {(r["model"], r["server"], r["concurrency"]): r for r in rows}
    for model in models:
        m_rows = [r for r in rows if r["model"] == model]
        src = next((r.get("model_dir") for r in m_rows if r.get("model_dir")), "")
        lines += [f"## Model `{model}`" + (f" (`{src}`)" if src else ""), ""]
        lines += [
            "| server | conc. | req/s | p50 | p90 | p99 | errors | peak RSS MiB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        seen = set()
        for r in m_rows:
            if r.get("skipped"):
                lines.append(f"| {r['server']} | — | skipped: {r['skipped']} | | | | | |")
                continue
            errs = sum(r.get(k, 0) for k in ("errors_status", "errors_connect", "errors_read", "errors_write", "errors_timeout"))
            name = r["server"]
            if name not in seen and "startup_s" in r:
                name += f" (ready in {r['startup_s']} s)"
            seen.add(r["server"])
            lines.append(
                f"| {name} | {r['concurrency']} | {_fmt(r.get('rps'))} | {_fmt(r.get('lat_p50_ms'))} | "
                f"{_fmt(r.get('lat_p90_ms'))} | {_fmt(r.get('lat_p99_ms'))} | {errs} | "
                f"{_fmt(r.get('rss_tree_hwm_kb', 0) / 1024, 0)} |"
            )
        lines.append("")
        concs = sorted({r["concurrency"] for r in m_rows if not r.get("skipped")})
        ceiling = ceilings.get(model)
        best = ceiling["best"]["texts_per_s"] if ceiling else None
        hot = any(r["server"] == "hotserve" and r.get("rps") for r in m_rows)
        if not hot and concs:
            lines += ["Ratios: hotserve was not measured for this model.", ""]
        if hot and concs:
            lines += ["| ratio (req/s) | " + " | ".join(f"c={c}" for c in concs) + " |",
                      "| --- | " + " | ".join("---:" for _ in concs) + " |"]
            measured = {r["server"] for r in m_rows if not r.get("skipped")}
            for other in [s for s in servers if s != "hotserve" and s in measured]:
                cells = [_ratio(by.get((model, "hotserve", c), {}).get("rps"), by.get((model, other, c), {}).get("rps")) for c in concs]
                lines.append(f"| hotserve / {other} | " + " | ".join(cells) + " |")
            if best:
                cells = [_ratio(by.get((model, "hotserve", c), {}).get("rps"), best) for c in concs]
                lines.append("| hotserve texts/s / ORT ceiling | " + " | ".join(cells) + " |")
            lines.append("")
            h64 = by.get((model, "hotserve", 64), {}).get("rps")
            if h64 is not None and best:
                lines += [f"**hotserve texts/s / ORT ceiling at c=64: {h64:,.1f} / {best:,.1f} = {h64 / best:.2f}**", ""]
        if ceiling:
            res = ceiling["results"]
            layouts = list(dict.fromkeys(r.get("layout", "1x%d" % ceiling["threads"]) for r in res))
            sizes = list(dict.fromkeys(r["batch_size"] for r in res))
            lines += [
                f"ONNX Runtime ceiling (in-process Python, {ceiling['threads']} cores as sessions x "
                f"intra-op threads, pre-tokenized, padded per batch), texts/s:",
                "",
                "| layout \\ batch | " + " | ".join(str(b) for b in sizes) + " |",
                "| --- | " + " | ".join("---:" for _ in sizes) + " |",
            ]
            for layout in layouts:
                cells = []
                for b in sizes:
                    r = next((r for r in res if r.get("layout", layouts[0]) == layout and r["batch_size"] == b), None)
                    cells.append(_fmt(r["texts_per_s"]) if r else "-")
                lines.append(f"| {layout} | " + " | ".join(cells) + " |")
            lines += ["", f"best: {_fmt(best)} texts/s (batch {ceiling['best']['batch_size']}, "
                      f"{ceiling['best'].get('layout', '')} sessions x threads)", ""]
    lines += _extra_sections(models, work, ceilings)
    Path(out).write_text("\n".join(lines) + "\n")


def main() -> int:
    args = sys.argv[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = args[0]
    if cmd == "bodies" and len(args) == 3:
        cmd_bodies(args[1], args[2])
    elif cmd == "port" and len(args) == 1:
        cmd_port()
    elif cmd == "rss" and len(args) == 2:
        cmd_rss(int(args[1]))
    elif cmd == "field" and len(args) == 6:
        cmd_field(*args[1:])
    elif cmd == "report" and len(args) in (4, 6):
        meta = args[5] if len(args) == 6 and args[4] == "--meta" else None
        cmd_report(args[1], args[2], args[3], meta)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
