#!/usr/bin/env bash
# What a candidate in shadow costs live traffic: live p99 at about half of peak load, without
# and then with a candidate in shadow (promotion: shadow, every request copied). See
# bench/README.md ("Shadow evaluation").
#
#   bench/shadow.sh
#
# A model repository (numbered versions) with the v1 fixture is served; peak throughput is
# measured with loadgen at BENCH_PEAK_CONCURRENCY; the concurrency among 1, 2, 4 whose
# throughput is closest to half of it is "50% load" (loadgen is closed-loop: the load is set by
# the concurrency, not a rate); p99 is measured there for BENCH_DURATION seconds; then the v2
# fixture is added as version 2, hotserve holds it in shadow (shadow_min_requests is out of
# reach, so it stays there), and the same load runs again. The shadow copies compared and
# dropped (no idle worker) are read from /metrics.
#
# Variables: HOTSERVE_BIN [target/release/hotserve, else target/debug/hotserve], LOADGEN_BIN
# [target/release/examples/loadgen, else target/debug/examples/loadgen], BENCH_DURATION [10],
# BENCH_PEAK_CONCURRENCY [16], BENCH_SHADOW_FRACTION [1], HOTSERVE_INFERENCE_WORKERS [2].
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pick() { for candidate in "$@"; do [ -x "$candidate" ] && { echo "$candidate"; return; }; done; echo "$1"; }
hotserve="${HOTSERVE_BIN:-$(pick "$root/target/release/hotserve" "$root/target/debug/hotserve")}"
loadgen="${LOADGEN_BIN:-$(pick "$root/target/release/examples/loadgen" "$root/target/debug/examples/loadgen")}"
duration="${BENCH_DURATION:-10}"
peak_concurrency="${BENCH_PEAK_CONCURRENCY:-16}"
[ -x "$hotserve" ] || { echo "shadow.sh: build hotserve first (cargo build --release)" >&2; exit 2; }
[ -x "$loadgen" ] || { echo "shadow.sh: build loadgen first (cargo build --release --example loadgen)" >&2; exit 2; }

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/repo"
cp -r "$root/tests/fixtures/sentiment" "$work/repo/1"

HOTSERVE_INFERENCE_WORKERS="${HOTSERVE_INFERENCE_WORKERS:-2}" \
"$hotserve" serve --model-uri "$work/repo" --listen "127.0.0.1:$port" --cache-dir "$work/cache" \
  --set promotion=shadow --set shadow_min_requests=1000000000 --set shadow_max_duration=1h \
  --set shadow_fraction="${BENCH_SHADOW_FRACTION:-1}" --set watch_debounce=200ms >"$work/hotserve.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do curl -sf "$url/health/ready" >/dev/null && break; sleep 0.2; done
curl -sf "$url/health/ready" >/dev/null || { cat "$work/hotserve.log" >&2; exit 1; }

# run CONCURRENCY SECONDS -> "req/s p99_ms failed"
run() {
  "$loadgen" --url "$url/predict" --concurrency "$1" --duration "${2}s" \
    --body '{"text": "I love this product, it works great"}' --summary-json "$work/summary.json" >/dev/null
  python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); print("%.0f %.2f %d" % (s["requests_per_s"], s["latency_us"]["p99"] / 1000, s["failed"]))' "$work/summary.json"
}
metric() { curl -sf "$url/metrics" | awk -v series="$1" '$1 == series { print $2 }'; }

run 4 2 >/dev/null  # warm-up
read -r peak _ _ < <(run "$peak_concurrency" "$duration")
best=1; best_gap=1000000000
for c in 1 2 4; do
  read -r rps _ _ < <(run "$c" 3)
  gap=$(( rps > peak / 2 ? rps - peak / 2 : peak / 2 - rps ))
  if [ "$gap" -lt "$best_gap" ]; then best=$c; best_gap=$gap; fi
done
read -r rps_without p99_without failed_without < <(run "$best" "$duration")

cp -r "$root/tests/fixtures/sentiment_v2" "$work/repo/2"
for _ in $(seq 1 300); do
  curl -sf "$url/health" | python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["shadow"] else 1)' && break
  sleep 0.2
done
model='model="repo"'
compared_before="$(metric "hotserve_shadow_requests_total{$model,result=\"compared\"}")"
read -r rps_with p99_with failed_with < <(run "$best" "$duration")
compared="$(metric "hotserve_shadow_requests_total{$model,result=\"compared\"}")"
dropped="$(metric "hotserve_shadow_requests_total{$model,result=\"dropped\"}")"

echo "peak: $peak req/s at concurrency $peak_concurrency; 50% load: concurrency $best"
echo "| candidate in shadow | req/s | live p99 (ms) | failed | shadow copies compared | dropped |"
echo "| --- | --- | --- | --- | --- | --- |"
echo "| none | $rps_without | $p99_without | $failed_without | - | - |"
echo "| v2, shadow_fraction ${BENCH_SHADOW_FRACTION:-1} | $rps_with | $p99_with | $failed_with | $(( ${compared:-0} - ${compared_before:-0} )) | ${dropped:-0} |"
