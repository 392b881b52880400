#!/usr/bin/env python3
"""Helpers for bench/run.sh: request bodies, process-tree memory, and the results report.

    benchlib.py bodies predict|mlflow|v2 OUT    one JSON request body per line
    benchlib.py port                            a free TCP port on 127.0.0.1
    benchlib.py rss PID                         "tree_hwm_kb main_hwm_kb tree_rss_kb nprocs" of PID's tree
    benchlib.py report RUN.jsonl CEILING_DIR OUT.md [--meta META.json]
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
            for other in [s for s in servers if s != "hotserve"]:
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
    elif cmd == "report" and len(args) in (4, 6):
        meta = args[5] if len(args) == 6 and args[4] == "--meta" else None
        cmd_report(args[1], args[2], args[3], meta)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
