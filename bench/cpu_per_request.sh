#!/usr/bin/env bash
# hotserve's CPU time per request, split by thread (the io runtime, the inference workers, the
# trace exporter, the payload and access log writers), read from /proc/<pid>/task/*/stat over a
# fixed wrk run (c=64, 10 s on /predict, after 2 s of warm-up), so the load generator's share
# does not count. One configuration per call; compare calls made one after another.
#
#   cargo build --release --locked
#   bench/cpu_per_request.sh off
#   bench/cpu_per_request.sh traces OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318
#   MODEL=bench/.cache/minilm-sentiment bench/cpu_per_request.sh minilm-off
#
# Prints: LABEL rps=... cpu_us_per_req=... <thread>=<µs per request>...
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ $# -ge 1 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
label="$1"; shift
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* | head -n 1)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
.venv/bin/python bench/benchlib.py bodies predict "$work/predict.jsonl"
port=$(.venv/bin/python bench/benchlib.py port)
env "$@" target/release/hotserve --model-uri ${MODEL:-tests/fixtures/sentiment} --listen 127.0.0.1:$port --cache-dir "$work/cache" > "$work/log" 2>&1 &
pid=$!
for i in $(seq 60); do curl -sf http://127.0.0.1:$port/health/ready >/dev/null && break; sleep 0.5; done
BENCH_BODIES="$work/predict.jsonl" wrk -t1 -c64 -d2s -s bench/wrk/post.lua http://127.0.0.1:$port/predict >/dev/null
snap() { for t in /proc/$pid/task/*; do c=$(cat $t/comm); s=$(awk '{print $14+$15}' $t/stat); echo "${c%%-[0-9]*} $s"; done | awk '{a[$1]+=$2} END {for (k in a) print k, a[k]}' | sort; }
snap > "$work/before"
out=$(BENCH_BODIES="$work/predict.jsonl" wrk -t1 -c64 -d10s -s bench/wrk/post.lua http://127.0.0.1:$port/predict)
snap > "$work/after"
kill $pid; wait $pid 2>/dev/null || true
reqs=$(echo "$out" | awk '/requests in/ {print $1}')
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
join "$work/before" "$work/after" | awk -v r=$reqs -v l=$label -v rps=$rps '{d=($3-$2)*10000/r; tot+=d; s=s sprintf(" %s=%.1f", $1, d)} END {printf "%s rps=%s cpu_us_per_req=%.1f%s\n", l, rps, tot, s}'
