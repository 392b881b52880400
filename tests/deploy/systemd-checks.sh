#!/usr/bin/env bash
# hotserve.service under a real systemd, inside the booted container $CT (started by
# scripts/check-deploy-real.sh with the checkout mounted read-only at /src and the ONNX Runtime
# library at $ORT). Installs with deploy/systemd/install.sh, exactly as the README says, then:
#
#   all             active only after READY=1; STATUS=; `systemctl reload` returns after the
#                   check finished (helper + admin token on systemd < 253); the cache survives
#                   a restart under DynamicUser=; exit status 2 is not restarted; the watchdog
#                   restarts a SIGSTOPped process; `systemctl stop` drains and exits 0
#   notify-reload   (systemd >= 253) active after READY=1; STATUS=; reload waits without a
#                   token (Type=notify-reload); stop drains
#
#   CT=name PY=python ORT=/ort/libonnxruntime.so.1.31.1 tests/deploy/systemd-checks.sh all
set -euo pipefail
checks="${1:-all}"
: "${CT:?}" "${PY:?}" "${ORT:?}"
failed=0
ok() { echo "  ok   $*"; }
fail() { echo "  FAIL $*"; failed=$((failed + 1)); }
sd() { podman exec "$CT" "$@"; }
prop() { sd systemctl show -P "$1" hotserve; }
http_code() { sd curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:8080$1" || true; }
health() { sd curl -s -m 5 http://127.0.0.1:8080/health; }
now() { date +%s.%N; }
since() { "$PY" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }
wait_for() { # SECONDS DESCRIPTION COMMAND...: polls every 0.2 s
  local limit="$1" what="$2" deadline
  shift 2
  deadline=$(($(date +%s) + limit))
  until "$@"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      fail "timed out after ${limit}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}
is_active() { [ "$(prop ActiveState)" = active ]; }

# --- install, as deploy/systemd/README.md says --------------------------------------------------
version="$(sd systemctl --version | awk 'NR == 1 { print $2 }')"
if ! out="$(sd /src/deploy/systemd/install.sh --onnxruntime "$ORT" ${BINARY:+--binary "$BINARY"} 2>&1)"; then
  echo "$out" | sed 's/^/         /'
  fail "deploy/systemd/install.sh"
  exit 1
fi
ok "deploy/systemd/install.sh on systemd $version: $(echo "$out" | grep -c '^install.sh: install') files installed"
dropin="$(sd sh -c 'ls /etc/systemd/system/hotserve.service.d/ 2>/dev/null' || true)"
if [ "$version" -ge 253 ]; then
  [ "$(prop Type)" = notify-reload ] && ok "Type=notify-reload (drop-in $dropin)" || fail "Type is $(prop Type) on systemd $version"
else
  [ "$(prop Type)" = notify ] && [ -z "$dropin" ] && ok "Type=notify, ExecReload=hotserve-reload" || fail "Type is $(prop Type), drop-ins: $dropin"
fi
# The settings of this test: the bundled model (padded with 256 MiB, so that copying and
# hashing it makes each check take a measurable time) instead of a registry, a drain delay
# to observe, and (systemd < 253) the admin token hotserve-reload waits with.
sd sh -c 'mkdir -p /opt/models && cp -r /src/tests/fixtures/sentiment /opt/models/ &&
  head -c 256M /dev/zero > /opt/models/sentiment/padding.bin'
token=""
[ "$version" -ge 253 ] || token="HOTSERVE_ADMIN_TOKEN=ci-$RANDOM$RANDOM$RANDOM"
sd sh -c "umask 077; printf '%s\n' MODEL_URI=/opt/models/sentiment HOTSERVE_DRAIN_DELAY=2s $token > /etc/hotserve/hotserve.env"

# --- start: active only after READY=1 -----------------------------------------------------------
sd systemd-analyze log-level debug # systemd logs each notification it receives
sd systemctl enable -q hotserve
started="$(now)"
sd systemctl start --no-block hotserve
seen_activating=""
until is_active; do
  if [ "$(prop ActiveState)" = activating ] && [ "$(http_code /health/live)" = 200 ] &&
    [ "$(http_code /health/ready)" = 503 ]; then
    seen_activating=1
  fi
  if [ "$(prop ActiveState)" = failed ] || [ "$(since "$started" | cut -d. -f1)" -ge 60 ]; then
    fail "hotserve did not become active: $(prop ActiveState) $(prop Result)"
    exit 1
  fi
  sleep 0.1
done
took="$(since "$started")"
ready_now="$(http_code /health/ready)"
sd systemd-analyze log-level info
journal="$(sd journalctl -u hotserve -o cat --no-pager)"
order="$(echo "$journal" | grep -n -E 'hotserve listening|Got notification message.*READY=1|Changed start -> (running|start-post)' | head -n 3 || true)"
if [ "$ready_now" = 200 ] && echo "$order" | sed -n 2p | grep -q 'READY=1' && echo "$order" | sed -n 3p | grep -q 'Changed start'; then
  ok "active ${took}s after start, only after READY=1 (journal: listening, then READY=1, then start -> running); /health/ready 200 at once"
else
  fail "activation order: ready=$ready_now; journal: $order"
fi
if [ -n "$seen_activating" ]; then
  ok "while the model loaded: unit activating, /health/live 200, /health/ready 503 (the port is open before READY=1)"
else
  echo "  note the model loaded too fast to observe the unit activating with the port open"
fi

# --- STATUS= -------------------------------------------------------------------------------------
status_text="$(prop StatusText)"
if [[ "$status_text" == serving* ]] && sd systemctl status hotserve --no-pager | grep -q "Status: \"$status_text\""; then
  ok "systemctl status shows Status: \"$status_text\""
else
  fail "StatusText '$status_text' not shown by systemctl status"
fi

# --- reload waits for the check ---------------------------------------------------------------------
last_check() { health | "$PY" -c 'import json, sys; c = json.load(sys.stdin)["last_check"]; print(json.dumps(c, sort_keys=True))'; }
if [ -n "$token" ]; then
  # Control: SIGHUP alone (the old ExecReload=/bin/kill -HUP) returns before the check ends.
  before="$(last_check)"
  sd systemctl kill -s HUP --kill-whom=main hotserve
  if [ "$(last_check)" = "$before" ]; then
    echo "  note control: right after a bare SIGHUP the check has not finished yet (what ExecReload=kill did)"
  fi
  wait_for 30 "the SIGHUP check" bash -c "[ \"\$(podman exec $CT curl -s http://127.0.0.1:8080/health | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"last_check\"][\"trigger\"])')\" = signal ]" || true
  sleep 0.5
fi
before="$(last_check)"
t0="$(now)"
if sd systemctl reload hotserve; then
  took="$(since "$t0")"
  after="$(last_check)"
  summary="$("$PY" -c 'import json, sys; c = json.loads(sys.argv[1]); print(c["trigger"], c["result"], c["duration_ms"])' "$after")"
  read -r trigger result duration <<<"$summary"
  if [ "$after" != "$before" ] && [[ "$trigger" =~ ^(admin|signal)$ ]] && [[ "$result" =~ ^(unchanged|loaded)$ ]]; then
    ok "systemctl reload returned after ${took}s with its check finished (trigger $trigger, result $result, ${duration} ms)"
  else
    fail "systemctl reload returned after ${took}s before its check finished: before $before, after $after"
  fi
  [ "$(prop ReloadResult)" = success ] || fail "ReloadResult=$(prop ReloadResult)"
else
  fail "systemctl reload hotserve failed"
fi
is_active || fail "not active after reload: $(prop ActiveState)"

if [ "$checks" = all ]; then
  # --- DynamicUser= + StateDirectory=: the cache survives a restart ----------------------------
  # The state directory and the cache hotserve made in it (models/, the model's folder and its
  # last-good record) are the same directories after a restart (same inodes), owned by the uid
  # the restarted process runs as. (A local MODEL_URI is copied into the cache again at every
  # start; that a restart with the registry down serves the cached copy is covered by the
  # Rust integration tests.)
  state_listing() { sd sh -c 'find /var/lib/private/hotserve /var/lib/private/hotserve/models /var/lib/private/hotserve/models/* -maxdepth 0 -printf "%i %p\n"'; }
  before_listing="$(state_listing)"
  last_good="$(sd sh -c 'cd /var/lib/private/hotserve/models && ls */last-good.json')"
  sd systemctl restart hotserve
  owner="$(sd stat -c %u /var/lib/private/hotserve)"
  runs_as="$(sd stat -c %u "/proc/$(prop MainPID)")"
  if [ -n "$last_good" ] && [ "$(state_listing)" = "$before_listing" ] && [ "$owner" = "$runs_as" ] &&
    [ "$(sd sh -c 'cd /var/lib/private/hotserve/models && ls */last-good.json')" = "$last_good" ] && is_active; then
    ok "restart: the state directory and its cache (models/, $last_good) survived, owned by the dynamic uid $runs_as"
  else
    fail "state after restart: before [$before_listing] after [$(state_listing)]; owner $owner, process uid $runs_as"
  fi
  # --- configuration error: exit 2, not restarted --------------------------------------------------
  sd cp /etc/hotserve/hotserve.env /etc/hotserve/hotserve.env.good
  sd sh -c 'echo HOTSERVE_POLL_INTERVAL=soon >> /etc/hotserve/hotserve.env'
  sd systemctl restart hotserve 2>/dev/null && fail "started with a bad configuration" || true
  sleep 7 # RestartSec=5s plus a margin: Restart=on-failure would have restarted it by now
  if [ "$(prop ExecMainStatus)" = 2 ] && [ "$(prop ActiveState)" = failed ] && [ "$(prop NRestarts)" = 0 ]; then
    ok "configuration error: exit status 2, unit failed, not restarted after RestartSec (RestartPreventExitStatus=2)"
  else
    fail "configuration error: status $(prop ExecMainStatus), state $(prop ActiveState)/$(prop SubState), NRestarts $(prop NRestarts)"
  fi
  sd mv /etc/hotserve/hotserve.env.good /etc/hotserve/hotserve.env
  sd systemctl reset-failed hotserve
  sd systemctl start hotserve

  # --- watchdog: a hung (SIGSTOPped) process is killed and restarted ------------------------------
  pid="$(prop MainPID)"
  restarts="$(prop NRestarts)"
  watchdog="$(prop WatchdogUSec)"
  sd sh -c "kill -STOP $pid"
  t0="$(now)"
  if wait_for 90 "the watchdog to restart hotserve" bash -c "[ \"\$(podman exec $CT systemctl show -P MainPID hotserve)\" != $pid ] && [ \"\$(podman exec $CT systemctl show -P ActiveState hotserve)\" = active ]"; then
    if sd journalctl -u hotserve --no-pager | grep -q 'Watchdog timeout'; then
      ok "watchdog ($watchdog): SIGSTOPped pid $pid killed and restarted after $(since "$t0")s (NRestarts $restarts -> $(prop NRestarts))"
    else
      fail "hotserve restarted, but not by the watchdog"
    fi
  fi
fi

# --- stop drains ----------------------------------------------------------------------------------
# Inside the container (podman exec is too slow to sample a 2 s window from outside): stop in
# the background, probe readiness and liveness until readiness is 503 while liveness is 200.
out="$(sd bash -c '
  t0=$(date +%s%N)
  { systemctl stop hotserve; echo "stopped $(( ($(date +%s%N) - t0) / 1000000 ))"; } &
  for i in $(seq 100); do
    r=$(curl -s -o /dev/null -m 1 -w "%{http_code}" http://127.0.0.1:8080/health/ready)
    l=$(curl -s -o /dev/null -m 1 -w "%{http_code}" http://127.0.0.1:8080/health/live)
    if [ "$r" = 503 ] && [ "$l" = 200 ]; then echo drained; break; fi
    sleep 0.05
  done
  wait' 2>&1)" || true
stop_ms="$(echo "$out" | sed -n 's/^stopped //p')"
# The unit's result, read until it settles (a read through podman exec right after the stop can
# still see the previous run's, the watchdog's kill above).
for _ in $(seq 10); do
  result="$(prop Result)" status="$(prop ExecMainStatus)"
  [ "$result" = success ] && [ "$status" = 0 ] && break
  sleep 0.3
done
if echo "$out" | grep -q '^drained' && [ -n "$stop_ms" ] && [ "$result" = success ] && [ "$status" = 0 ]; then
  ok "systemctl stop: readiness 503 while live 200 (draining, HOTSERVE_DRAIN_DELAY=2s), exit 0, stopped after ${stop_ms} ms (TimeoutStopSec $(prop TimeoutStopUSec))"
else
  fail "stop: [$out], Result=$result, exit status $status"
fi

[ "$failed" = 0 ]
