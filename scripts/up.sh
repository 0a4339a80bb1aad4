#!/usr/bin/env bash
# Builds and runs `gitplane up` (the README's run command). Flags are passed on, for example
# `scripts/up.sh --listen 127.0.0.1:0` or `scripts/up.sh --store etcd://127.0.0.1:2379`.
#
# The build needs protoc (for the etcd-client crate); on a fresh machine this installs it first
# (scripts/install-deps.sh), or says what to install where it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh protoc
exec cargo run --release -- up "$@"
