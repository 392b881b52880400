#!/bin/bash
# Installs hotserve as a systemd service, from a checkout (deploy/systemd/README.md, "Install").
# scripts/check-deploy-real.sh runs this very script under a real systemd, so the documented
# steps are the tested ones. Run as root:
#
#   deploy/systemd/install.sh [--binary FILE] [--onnxruntime FILE]
#
#   --binary FILE        hotserve built for this machine (default: target/release/hotserve,
#                        from `cargo build --release --locked`)
#   --onnxruntime FILE   libonnxruntime.so.1.31.1 (default: the one scripts/setup.sh put in
#                        .venv); checked against deploy/Containerfile's ORT_LIB_SHA256
#
# It installs (and prints) each file, keeps existing /etc/hotserve files, picks the reload
# mechanism for this systemd (notify-reload.conf on systemd >= 253) and runs
# `systemctl daemon-reload`. It does not start the service: edit /etc/hotserve/hotserve.env
# first, then `systemctl enable --now hotserve`.
set -euo pipefail

checkout="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
binary="$checkout/target/release/hotserve"
onnxruntime=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --onnxruntime) onnxruntime="$2"; shift 2 ;;
    *) echo "install.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root" >&2
  exit 1
fi

ort_version="$(sed -n 's/^ARG ORT_VERSION=//p' "$checkout/deploy/Containerfile")"
ort_sha256="$(sed -n 's/^ARG ORT_LIB_SHA256=//p' "$checkout/deploy/Containerfile")"
if [ -z "$onnxruntime" ]; then
  onnxruntime="$(ls "$checkout"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so."$ort_version" 2>/dev/null | head -n 1 || true)"
fi
[ -x "$binary" ] || { echo "install.sh: no hotserve binary at $binary; run cargo build --release --locked" >&2; exit 1; }
[ -f "$onnxruntime" ] || { echo "install.sh: no ONNX Runtime $ort_version library; run scripts/setup.sh or pass --onnxruntime" >&2; exit 1; }
echo "$ort_sha256  $onnxruntime" | sha256sum --quiet -c - ||
  { echo "install.sh: $onnxruntime is not the ONNX Runtime $ort_version library deploy/Containerfile pins" >&2; exit 1; }

step() { echo "install.sh: $*"; "$@"; }

# 1. The binary, the ONNX Runtime library (loaded at run time), the reload helper.
step install -D -m 0755 "$binary" /usr/local/bin/hotserve
step install -D -m 0644 "$onnxruntime" /usr/local/lib/onnxruntime/libonnxruntime.so
step install -D -m 0755 "$checkout/deploy/systemd/hotserve-reload" /usr/local/libexec/hotserve-reload

# 2. Settings: every setting with its default, and the environment file (secrets, MODEL_URI).
#    Existing files are kept.
step install -d -m 0755 /etc/hotserve
[ -e /etc/hotserve/hotserve.yaml ] || step install -m 0644 "$checkout/config/hotserve.yaml" /etc/hotserve/hotserve.yaml
[ -e /etc/hotserve/hotserve.env ] || step install -m 0600 "$checkout/deploy/systemd/hotserve.env.example" /etc/hotserve/hotserve.env

# 3. The unit; on systemd >= 253 the notify-reload drop-in (README.md, "Reload").
step install -m 0644 "$checkout/deploy/systemd/hotserve.service" /etc/systemd/system/hotserve.service
systemd_version="$(systemctl --version | awk 'NR == 1 { print $2 + 0 }')"
if [ "$systemd_version" -ge 253 ]; then
  step install -D -m 0644 "$checkout/deploy/systemd/notify-reload.conf" /etc/systemd/system/hotserve.service.d/notify-reload.conf
else
  echo "install.sh: systemd $systemd_version < 253: reload through hotserve-reload (set HOTSERVE_ADMIN_TOKEN to make it wait)"
  rm -f /etc/systemd/system/hotserve.service.d/notify-reload.conf
fi
step systemctl daemon-reload
echo "install.sh: done; edit /etc/hotserve/hotserve.env, then: systemctl enable --now hotserve"
