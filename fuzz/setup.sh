#!/usr/bin/env bash
# Installs the fuzzing tool used by fuzz/run.sh: cargo-fuzz (libFuzzer) from crates.io, built
# with the machine's stable toolchain. Idempotent: does nothing when the pinned version is there.
set -euo pipefail
version=0.13.2
if cargo fuzz --version 2>/dev/null | grep -q " $version"; then
    exit 0
fi
cargo install --locked cargo-fuzz --version "$version"
