#!/usr/bin/env bash
# Writes link/gitplane.order: the functions of the gitplane binary that `gitplane up` runs while
# it starts, syncs the playground, rolls hello out to 1.0.1 and back (`gitplane rollback`) and
# idles, as the linker's --symbol-ordering-file (build.rs passes it to rust-lld for release
# builds). Runs `up` under valgrind's callgrind, so it takes a few minutes.
#
# usage: scripts/text-order.sh [BINARY]   (default target/release/gitplane; run from the repo root)
# needs: valgrind, kubectl, git, nm (binutils), python3
#   apt-get install -y valgrind binutils python3
set -euo pipefail

bin=$(realpath "${1:-${CARGO_TARGET_DIR:-target}/release/gitplane}")
out=$PWD/link/gitplane.order
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
data=$dir/data

RUST_LOG=warn valgrind --tool=callgrind --demangle=no --callgrind-out-file="$dir/cg.out" \
  "$bin" up --listen 127.0.0.1:0 --data-dir "$data" --ingress-listen=127.0.0.1:0 \
  --ingress-tls-listen=127.0.0.1:0 --service-cluster-ip-range 127.96.0.0/16 \
  >/dev/null 2>"$dir/log" &
pid=$!

# Under callgrind `up` is ~50 times slower: wait until hello runs, with a generous deadline.
ready() { kubectl --kubeconfig "$data/kubeconfig" -n hello rollout status deploy/hello \
  --timeout=10s >/dev/null 2>&1; }
wait_ready() {
  for _ in $(seq 60); do ready && return 0; sleep 5; done
  echo "hello did not roll out; log:" >&2; tail -20 "$dir/log" >&2; kill -INT "$pid"; exit 1
}
wait_ready
sed -i 's/version: "1.0.0"/version: "1.0.1"/' "$data/repo/apps/hello/values.yaml"
git -C "$data/repo" -c user.name=text-order -c user.email=text-order@localhost \
  commit -q -am "hello 1.0.1"
sleep 30
wait_ready
"$bin" rollback hello --timeout 300 --kubeconfig "$data/kubeconfig" >/dev/null
wait_ready
sleep 20
kill -INT "$pid"
wait "$pid" || true

# Every function callgrind saw run (fn=/cfn= lines name each once, by id), kept when the binary
# defines it. Names with a `.llvm.N` suffix (locals that LLVM made global within a crate) change
# whenever their codegen unit changes, so they match only until then.
python3 - "$dir/cg.out" "$bin" "$out" <<'PY'
import re, subprocess, sys
names = set()
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"c?fn=\(\d+\) (.+)$", line.rstrip("\n"))
    if m:
        names.add(m.group(1))
nm = subprocess.run(["nm", sys.argv[2]], capture_output=True, text=True, check=True).stdout
defined = {p[2] for p in (l.split() for l in nm.splitlines()) if len(p) == 3 and p[1] in "tTwW"}
keep = sorted(names & defined)
open(sys.argv[3], "w").write("\n".join(keep) + "\n")
print(f"{len(keep)} functions written to {sys.argv[3]}")
PY
