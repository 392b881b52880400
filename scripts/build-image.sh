#!/usr/bin/env bash
# Builds the hotserve container image from deploy/Containerfile, without network access:
#
#   1. cargo build --release --locked                   (skipped with HOTSERVE_BIN=path)
#   2. stage target/release/hotserve and the ONNX Runtime library of the project venv
#      (.venv, made by scripts/setup.sh) in a context directory; the library must have the
#      Containerfile's ORT_LIB_SHA256 (the one inside the pinned official wheel)
#   3. podman build (else docker build) --build-arg BASE_IMAGE=$BASE_IMAGE -t $IMAGE
#
#   scripts/build-image.sh
#   IMAGE=registry.example.com/ml/hotserve:0.1.0 scripts/build-image.sh
#   BASE_IMAGE=localhost/debian:bookworm-slim scripts/build-image.sh   # a local base image
#
# Environment: IMAGE (default localhost/hotserve:dev), BASE_IMAGE (default: the
# Containerfile's, debian:bookworm-slim), HOTSERVE_BIN, ORT_LIBRARY (default: from the venv),
# HOTSERVE_VENV (default .venv), CONTAINER_ENGINE (podman or docker), KEEP_DEBUGINFO=1.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
image="${IMAGE:-localhost/hotserve:dev}"
venv="${HOTSERVE_VENV:-$root/.venv}"
containerfile="$root/deploy/Containerfile"

engine="${CONTAINER_ENGINE:-}"
if [ -z "$engine" ]; then
  if command -v podman >/dev/null 2>&1; then engine=podman
  elif command -v docker >/dev/null 2>&1; then engine=docker
  else echo "build-image: neither podman nor docker is installed" >&2; exit 1
  fi
fi

bin="${HOTSERVE_BIN:-}"
if [ -z "$bin" ]; then
  echo "build-image: cargo build --release --locked"
  cargo build --release --locked
  bin="$root/target/release/hotserve"
fi

version="$(sed -n 's/^ARG ORT_VERSION=//p' "$containerfile")"
want="$(sed -n 's/^ARG ORT_LIB_SHA256=//p' "$containerfile")"
lib="${ORT_LIBRARY:-}"
if [ -z "$lib" ]; then
  lib="$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so."$version" 2>/dev/null | head -n 1 || true)"
  if [ -z "$lib" ]; then
    echo "build-image: no ONNX Runtime $version in $venv; run scripts/setup.sh (or set ORT_LIBRARY)" >&2
    exit 1
  fi
fi
got="$(sha256sum "$lib" | cut -d' ' -f1)"
if [ "$got" != "$want" ]; then
  echo "build-image: $lib has sha256 $got, deploy/Containerfile pins $want (ONNX Runtime $version)" >&2
  exit 1
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
install -m 0755 "$bin" "$context/hotserve"
# The release profile keeps line tables (debug = "line-tables-only": file:line in panic
# backtraces), about 58 MB of the 73 MB binary. The image drops them (function names stay);
# KEEP_DEBUGINFO=1 keeps them.
if [ "${KEEP_DEBUGINFO:-0}" != 1 ] && command -v strip >/dev/null 2>&1; then
  strip --strip-debug "$context/hotserve"
fi
install -m 0644 "$lib" "$context/libonnxruntime.so"
args=(build -f "$containerfile" -t "$image")
if [ -n "${BASE_IMAGE:-}" ]; then
  args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
fi
echo "build-image: $engine ${args[*]} (context: hotserve $("$bin" --version 2>&1 | head -n 1), ${lib##*/})"
"$engine" "${args[@]}" "$context"
echo "build-image: built $image"
