#!/usr/bin/env bash
# Runs every test of gitplane: formatting, unit tests of each crate, and the end-to-end tests
# that start the real server binary and drive it with the real kubectl.
#
# It installs what the build and the tests need and a fresh machine lacks (protoc for the
# etcd-client crate, the etcd server for the etcd tests; see scripts/install-deps.sh, and etcd
# 3.5 beside Debian 12's 3.4, see scripts/etcd-3.5.sh); where that is impossible it says what to
# install and fails. No test is skipped for a missing tool.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

if ! need kubectl; then
  echo "error: kubectl (v1.32) is required by the end-to-end tests and is not on PATH." >&2
  echo "       Install it from the Kubernetes apt repository or a release binary, then run again." >&2
  exit 1
fi
missing=""
need git || missing="$missing git"          # the GitOps tests drive real repositories
need openssl || missing="$missing openssl"  # signs webhook payloads independently of gitplane
need curl || missing="$missing curl"        # tests/ingress.rs: requests with --resolve and --cacert
need chromium || missing="$missing chromium"                # the web console's browser tests
need chromedriver || missing="$missing chromium-driver"     # drive it through WebDriver
# tests/rootless.rs: `up` as an ordinary user, in a user namespace
need rootlesskit || missing="$missing rootlesskit"
need slirp4netns || missing="$missing slirp4netns"
need newuidmap || missing="$missing uidmap"
need pgrep || missing="$missing procps"
# tests/containerd.rs: real containers through containerd's CRI plugin, images built from
# busybox-static (scripts/build-test-image.sh), pushed with skopeo to a docker-registry started
# by the test (htpasswd for its authenticated registry); reconciler/tests/chart_repository.rs
# pushes Helm charts to one with `helm push` (an `oci://` chart repository).
need containerd || missing="$missing containerd"
need runc || missing="$missing runc"
[ -x /usr/lib/cni/bridge ] || missing="$missing containernetworking-plugins"
need docker-registry || missing="$missing docker-registry"
need skopeo || missing="$missing skopeo"
[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || missing="$missing busybox-static"
need htpasswd || missing="$missing apache2-utils"
# tests/networkpolicy.rs: the node agent writes NetworkPolicies as nftables rules inside pods'
# network namespaces (nsenter is util-linux's); the test probes with curl through kubectl exec.
need nft || [ -x /usr/sbin/nft ] || missing="$missing nftables"
need curl || missing="$missing curl"
# tests/python_client.rs: the official Kubernetes Python client, in a venv made below.
need python3 || missing="$missing python3"
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$missing python3-venv"
# tests/metrics.rs: the real Prometheus scrapes `gitplane up` and is queried with PromQL.
need prometheus || missing="$missing prometheus"
if [ -n "$missing" ]; then
  echo "installing Debian packages:$missing" >&2
  apt-get update -qq && apt-get install -y -qq $missing
fi
scripts/install-deps.sh protoc etcd
# The Helm tests run the real helm v3.17.2: kustomize `helmCharts` cases are re-checked with
# `kubectl kustomize --enable-helm`, chart repositories are made with `helm package` and
# `helm repo index`. No Debian package exists; the shared installer brings it.
if ! need helm; then
  if [ -f ../shared/tools/install-helm.sh ]; then
    bash ../shared/tools/install-helm.sh
  else
    echo "error: helm v3.17.2 is required (install it with shared/tools/install-helm.sh)" >&2
    exit 1
  fi
fi
# slirp4netns opens /dev/net/tun as the user; udev makes it 0666 on a usual machine, a bare
# devtmpfs (containers, microVMs) leaves it 0600.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
  chmod 0666 /dev/net/tun
fi
if [ ! -d ../shared/fixtures/kustomize ]; then
  echo "warning: ../shared/fixtures/kustomize is missing; the kustomize conformance test will fail" >&2
fi

# The Python client (kubernetes 32.x follows Kubernetes 1.32) for tests/python_client.rs.
venv="${HOME}/.cache/gitplane/test-venv"
if ! "$venv/bin/python" -c 'import kubernetes' >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'kubernetes==32.0.1'
fi
export GITPLANE_TEST_PYTHON="$venv/bin/python"

# A CI run builds once from nothing: incremental state (a third of the target dir) is never
# reused there, so skip writing it.
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL=0
fi
cargo fmt --all -- --check
cargo test --workspace --locked --no-fail-fast

# The tests that run on etcd, again on etcd 3.5 (what Kubernetes runs; Debian 12's etcd-server
# above is 3.4): on 3.5 gitplane trusts etcd's progress notifications and write transactions
# with a compare no longer copy etcd's read buffer, so other timings and code paths are taken.
etcd35="$(scripts/etcd-3.5.sh)"
export ETCD_BIN="$etcd35"
echo "the etcd tests again, on $("$etcd35" --version | head -1)" >&2
# One invocation with the workspace's targets, so nothing is built again; the filters select
# the tests that start etcd (storage::etcd's unit tests, tests/etcd.rs and the etcd cases of
# tests/durability.rs and tests/admission.rs).
cargo test --workspace --locked --no-fail-fast -- etcd three_members
