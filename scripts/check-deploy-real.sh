#!/usr/bin/env bash
# The deployment run for real, on a machine with root, a Debian package mirror and no container
# registry (CI): installs podman, runc and debootstrap with apt (unless --no-install), makes
# local Debian base images with debootstrap, and then
#
#   image     builds deploy/Containerfile with scripts/build-image.sh on
#             localhost/debian:bookworm-slim and runs it with podman as the rendered base
#             Deployment runs its pod (user, read-only root, volumes, environment, args; the
#             bundled model mounted): /health/ready, /predict, uid, read-only root, SIGTERM
#             -> exit 0 within the grace period; prints image size and start-to-ready time
#   systemd   boots Debian bookworm (systemd 252) with `podman run --systemd=always`,
#             installs hotserve with deploy/systemd/install.sh (the README's steps) and checks
#             the unit: active only after READY=1, STATUS=, reload waits for the check, exit
#             status 2 is not restarted, the watchdog restarts a SIGSTOPped process, the cache
#             survives restarts under DynamicUser=, stop drains and exits 0
#   systemd   the same install on Debian trixie (systemd 257, Type=notify-reload drop-in):
#   (trixie)  active after READY=1, reload waits for RELOADING=1 ... READY=1 without a token,
#             stop exits 0
#
#   scripts/check-deploy-real.sh              # everything (CI: after scripts/setup.sh)
#   scripts/check-deploy-real.sh --no-install # podman etc. are installed already
#   scripts/check-deploy-real.sh --bases-only # only the tools and the base images (.ci/run
#                                             # makes them while the tests compile and run)
#   CHECK_DEPLOY_REAL_ONLY="image systemd" scripts/check-deploy-real.sh   # skip trixie
#   HOTSERVE_BIN=target/debug/hotserve scripts/check-deploy-real.sh
#                                             # check that binary (image and systemd) instead
#                                             # of building the release one (.ci/run does:
#                                             # the tests built it; minutes saved, the checks
#                                             # are about the deployment files, not the profile)
#
# Needs root. Work files and the debootstrap package cache live in $HOTSERVE_CI_DIR
# (default /var/tmp/hotserve-ci); the base images stay in podman's storage, so a second run
# skips debootstrap. All test traffic stays on loopback and inside the containers; debootstrap
# and apt reach the Debian mirror apt is configured with.
#
# The cold run (what a new machine or a new CI runner sees; the base images' step is only
# exercised by it):
#
#   podman rmi -f localhost/debian:bookworm-slim localhost/debian-systemd:bookworm \
#     localhost/debian-systemd:trixie localhost/hotserve:ci
#   rm -rf /var/tmp/hotserve-ci
#   scripts/check-deploy-real.sh
#
# The base images of one Debian suite are made one after another (they share debootstrap's
# package cache, which two debootstraps cannot use at once); the suites run in parallel. A base
# image that fails stops the run at once with the tail of its debootstrap logs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work="${HOTSERVE_CI_DIR:-/var/tmp/hotserve-ci}"
venv="${HOTSERVE_VENV:-$root/.venv}"
only="${CHECK_DEPLOY_REAL_ONLY:-image systemd trixie}"
install_tools=1
bases_only=0
for arg in "$@"; do
  case "$arg" in
    --no-install) install_tools=0 ;;
    --bases-only) bases_only=1 ;;
    *) echo "check-deploy-real: unknown argument $arg (--no-install, --bases-only)" >&2; exit 2 ;;
  esac
done
start=$SECONDS
failures=()
ok() { echo "  ok   $*"; }
fail() { echo "  FAIL $*"; failures+=("$*"); }
section() { echo; echo "== $* ($((SECONDS - start))s)"; }
wants() { [[ " $only " == *" $1 "* ]]; }

if [ "$(id -u)" -ne 0 ]; then
  echo "check-deploy-real: needs root (podman, debootstrap, systemd in a container)" >&2
  exit 1
fi
mkdir -p "$work"

# --- tools ------------------------------------------------------------------------------------
section "tools"
export DEBIAN_FRONTEND=noninteractive
missing=()
for tool in podman:podman runc:runc debootstrap:debootstrap; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$install_tools" = 0 ]; then
    echo "check-deploy-real: missing ${missing[*]} (run without --no-install to apt-get them)" >&2
    exit 1
  fi
  echo "  installing ${missing[*]}"
  # The lock timeout: another script's apt-get may be running (CI overlaps the steps).
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Host quirks (each cost time to find): crun refuses hybrid cgroup v1/v2 hosts, so runc;
# without CAP_SYS_RESOURCE podman's default ulimits fail, so keep them at the host's limits.
cat >"$work/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF="$work/containers.conf"
py="$venv/bin/python"
[ -x "$py" ] || { echo "check-deploy-real: no $py; run scripts/setup.sh (or scripts/check-deploy.sh) first" >&2; exit 1; }
ok "$(podman --version), $(runc --version | head -n 1), debootstrap $(dpkg-query -W -f '${Version}' debootstrap)"

# The release build (minutes) runs while debootstrap downloads and unpacks, unless a binary
# was given (HOTSERVE_BIN) or only the base images are wanted.
cargo_pid=""
if [ -z "${HOTSERVE_BIN:-}" ] && [ "$bases_only" = 0 ]; then
  cargo build --release --locked >"$work/cargo-release.log" 2>&1 &
  cargo_pid=$!
fi

# --- base images --------------------------------------------------------------------------------
section "base images (debootstrap, imported into podman)"
mirror="$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n 1 || true)"
[ -n "$mirror" ] || mirror="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' /etc/apt/sources.list 2>/dev/null || true)"
mirror="${mirror:-http://deb.debian.org/debian}"

# make_base IMAGE SUITE PACKAGES: a minbase root file system with PACKAGES, trimmed like
# debian:*-slim (no apt lists, docs, man pages, locales), imported as IMAGE. On failure the
# debootstrap output ($work/rootfs-*.log) and debootstrap's own log (copied beside it as
# *.debootstrap.log) are kept, and their tails printed.
make_base() {
  local image="$1" suite="$2" packages="$3" dir="$work/rootfs-${1##*/}"
  dir="${dir//:/-}"
  if podman image exists "$image"; then
    echo "  have $image"
    return 0
  fi
  mkdir -p "$work/debs-$suite"
  rm -rf "$dir" "$dir.debootstrap.log"
  if ! debootstrap --variant=minbase --cache-dir="$work/debs-$suite" --include="$packages" \
    "$suite" "$dir" "$mirror" >"$dir.log" 2>&1; then
    echo "  FAIL debootstrap $image ($suite: $packages); the last lines of $dir.log:"
    tail -n 20 "$dir.log" | sed 's/^/         /'
    if [ -f "$dir/debootstrap/debootstrap.log" ]; then
      cp "$dir/debootstrap/debootstrap.log" "$dir.debootstrap.log"
      echo "       and of its own log, $dir.debootstrap.log:"
      tail -n 20 "$dir.debootstrap.log" | sed 's/^/         /'
    fi
    return 1
  fi
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb \
    "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/locale/* "$dir"/usr/share/info/*
  tar -C "$dir" -c . | podman import -q - "$image" >/dev/null
  rm -rf "$dir"
  echo "  made $image ($suite: $packages)"
}
# make_suite SUITE SPEC...: the images of one suite one after another. debootstrap's package
# cache ($work/debs-SUITE) is not safe to share between two debootstraps at once: the second
# one extracts a .deb the first is still writing and fails ("Tried to extract package, but
# file already exists"), which made cold CI runs fail in two of four tries (issue 31). So one
# suite's images share the cache in turn (the second reuses the first's downloads) and only
# different suites run in parallel.
make_suite() {
  local spec
  shift
  for spec in "$@"; do
    # shellcheck disable=SC2086
    make_base $spec || return 1
  done
}
suites=()
declare -A suite_specs=()
add_base() { # IMAGE SUITE PACKAGES
  [ -n "${suite_specs[$2]+set}" ] || suites+=("$2")
  suite_specs[$2]+="$1 $2 $3"$'\n'
}
wants image && add_base localhost/debian:bookworm-slim bookworm ca-certificates
wants systemd && add_base localhost/debian-systemd:bookworm bookworm systemd,systemd-sysv,dbus,curl
wants trixie && add_base localhost/debian-systemd:trixie trixie systemd,systemd-sysv,dbus,curl
declare -A suite_of_pid=()
for suite in "${suites[@]}"; do
  mapfile -t specs < <(printf '%s' "${suite_specs[$suite]}")
  make_suite "$suite" "${specs[@]}" &
  suite_of_pid[$!]="$suite"
done
# A failed base image stops the run at once (the other suites' debootstraps and the release
# build are stopped too): every later stage needs all of them, and going on would only end in
# podman's "pinging container registry localhost" error for the image that is missing.
while [ "${#suite_of_pid[@]}" -gt 0 ]; do
  finished=""
  if wait -n -p finished "${!suite_of_pid[@]}"; then
    unset "suite_of_pid[$finished]"
    continue
  fi
  failed_suite="${suite_of_pid[$finished]:-?}"
  for pid in "${!suite_of_pid[@]}" $cargo_pid; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "check-deploy-real: the $failed_suite base image(s) could not be built (debootstrap output above, logs in $work); stopping" >&2
  exit 1
done
ok "base images ready"
if [ "$bases_only" = 1 ]; then
  echo "check-deploy-real: tools and base images ready in $((SECONDS - start))s"
  exit 0
fi

# --- the binary --------------------------------------------------------------------------------
if [ -n "$cargo_pid" ]; then
  section "build: cargo build --release --locked"
  if ! wait "$cargo_pid"; then
    tail -n 30 "$work/cargo-release.log"
    echo "check-deploy-real: cargo build --release --locked failed" >&2
    exit 1
  fi
  tail -n 1 "$work/cargo-release.log"
  bin="$root/target/release/hotserve"
else
  section "the binary: $HOTSERVE_BIN"
  bin="$(cd "$(dirname "$HOTSERVE_BIN")" && pwd)/$(basename "$HOTSERVE_BIN")"
  [ -x "$bin" ] || { echo "check-deploy-real: HOTSERVE_BIN=$HOTSERVE_BIN is not an executable" >&2; exit 1; }
  case "$bin" in
    "$root"/*) ;;
    *) echo "check-deploy-real: HOTSERVE_BIN must be inside the checkout (the systemd containers see it at /src)" >&2; exit 1 ;;
  esac
fi
ort_version="$(sed -n 's/^ARG ORT_VERSION=//p' deploy/Containerfile)"
lib="$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so."$ort_version" 2>/dev/null | head -n 1 || true)"
[ -n "$lib" ] || { echo "check-deploy-real: no ONNX Runtime $ort_version in $venv; run scripts/setup.sh" >&2; exit 1; }
ok "$("$bin" --version), ONNX Runtime ${lib##*/}"

# --- image ---------------------------------------------------------------------------------------
if wants image; then
  section "image: deploy/Containerfile on localhost/debian:bookworm-slim, run as the Deployment"
  if BASE_IMAGE=localhost/debian:bookworm-slim IMAGE=localhost/hotserve:ci HOTSERVE_BIN="$bin" \
    ORT_LIBRARY="$lib" scripts/build-image.sh >"$work/build-image.log" 2>&1; then
    ok "built localhost/hotserve:ci ($(grep -c '^STEP' "$work/build-image.log") steps)"
    "$py" tests/deploy/test_manifests.py render deploy/k8s/base >"$work/base.yaml"
    "$py" tests/deploy/test_manifests.py image-smoke localhost/hotserve:ci "$work/base.yaml" || fail "image smoke test"
  else
    tail -n 30 "$work/build-image.log"
    fail "scripts/build-image.sh"
  fi
fi

# --- systemd ------------------------------------------------------------------------------------
# Boots IMAGE's systemd in a container with the checkout mounted read-only at /src, installs
# hotserve with deploy/systemd/install.sh and runs the checks of tests/deploy/systemd-checks.sh.
run_systemd() { # IMAGE NAME CHECKS
  local image="$1" name="$2" checks="$3" state i
  podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
  # SYS_ADMIN: the unit's mount namespacing (ProtectSystem=, PrivateTmp=, ...) inside the
  # container. SYS_PTRACE: with ProtectProc=invisible + PrivateUsers= + DynamicUser=, systemd's
  # helper must see the new process in /proc to write its uid_map ("Failed to set up user
  # namespacing: No such file or directory" without it); root on a real machine has it.
  podman run -d --name "$name" --systemd=always --cap-add SYS_ADMIN --cap-add SYS_PTRACE \
    -v "$root:/src:ro" -v "$lib:/ort/${lib##*/}:ro" "$image" /sbin/init >/dev/null
  for i in $(seq 60); do
    state="$(podman exec "$name" systemctl is-system-running 2>/dev/null || true)"
    case "$state" in running | degraded) break ;; esac
    sleep 1
  done
  echo "  booted $image: $(podman exec "$name" systemctl --version | head -n 1), system $state"
  if ! CT="$name" PY="$py" ORT="/ort/${lib##*/}" BINARY="/src/${bin#"$root"/}" \
    bash tests/deploy/systemd-checks.sh "$checks"; then
    fail "systemd checks on $image"
    podman exec "$name" journalctl -u hotserve --no-pager -n 60 | sed 's/^/         /' || true
  fi
  podman rm -f -t 5 "$name" >/dev/null 2>&1 || true
}
if wants systemd; then
  section "systemd: deploy/systemd under a real systemd (Debian bookworm, podman --systemd=always)"
  run_systemd localhost/debian-systemd:bookworm hotserve-systemd-bookworm all
fi
if wants trixie; then
  section "systemd: deploy/systemd under systemd >= 253 (Debian trixie, Type=notify-reload)"
  run_systemd localhost/debian-systemd:trixie hotserve-systemd-trixie notify-reload
fi

# --- summary ---------------------------------------------------------------------------------------
section "done"
if [ "${#failures[@]}" -gt 0 ]; then
  echo "check-deploy-real: ${#failures[@]} check(s) FAILED in $((SECONDS - start))s:"
  for f in "${failures[@]}"; do echo "  - $f"; done
  exit 1
fi
echo "check-deploy-real: image and systemd checks passed in $((SECONDS - start))s"
