#!/usr/bin/env bash
# Installs the system tools gitplane needs and a fresh machine lacks, by name:
#   protoc  the protobuf compiler with its well-known types (google/protobuf/*.proto), needed by
#           the etcd-client crate's build script
#   etcd    the etcd server, needed by the tests that run gitplane on etcd
# A tool already on PATH is left alone. Missing tools are installed with apt-get (Debian's
# protobuf-compiler and etcd-server) when running as root on a machine that has apt-get;
# otherwise the script says what to install and fails.
set -euo pipefail

need() { command -v "$1" >/dev/null 2>&1; }

# protoc is usable when it compiles a file importing one of the well-known types.
protoc_works() {
  local protoc="${PROTOC:-protoc}" dir status
  command -v "$protoc" >/dev/null 2>&1 || return 1
  dir="$(mktemp -d)"
  printf 'syntax = "proto3";\nimport "google/protobuf/descriptor.proto";\n' >"$dir/check.proto"
  "$protoc" -I "$dir" ${PROTOC_INCLUDE:+-I "$PROTOC_INCLUDE"} -o "$dir/out" "$dir/check.proto" >/dev/null 2>&1
  status=$?
  rm -rf "$dir"
  return $status
}

# Whether a tool is there and works.
have() {
  case "$1" in
    protoc) protoc_works ;;
    *) need "$1" ;;
  esac
}

package_of() {
  case "$1" in
    protoc) echo protobuf-compiler libprotobuf-dev ;;
    etcd) echo etcd-server ;;
    *) echo "error: install-deps.sh: unknown tool '$1' (known: protoc, etcd)" >&2; exit 2 ;;
  esac
}

explain() {
  case "$1" in
    protoc) echo "  protoc: the protobuf compiler and its well-known types, which the etcd-client crate's
          build script needs. Install Debian/Ubuntu's protobuf-compiler and libprotobuf-dev (or
          your system's protobuf package), or set PROTOC to a protoc binary whose includes have
          google/protobuf/descriptor.proto, then run again." ;;
    etcd) echo "  etcd: the etcd server (v3.4 or later), which the etcd tests start on loopback.
          Install Debian/Ubuntu's etcd-server (or an etcd release binary) so that 'etcd' is on PATH,
          then run again." ;;
  esac
}

missing_tools=()
for tool in "$@"; do
  package_of "$tool" >/dev/null
  have "$tool" || missing_tools+=("$tool")
done
[ ${#missing_tools[@]} -eq 0 ] && exit 0

packages=()
for tool in "${missing_tools[@]}"; do read -ra names <<<"$(package_of "$tool")"; packages+=("${names[@]}"); done

if need apt-get && [ "$(id -u)" = 0 ]; then
  echo "installing ${packages[*]} (for ${missing_tools[*]}) with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Debian starts the etcd-server service on install; this machine only needs the binary.
  # policy-rc.d answers "do not start services" for the duration of the install.
  policy=/usr/sbin/policy-rc.d
  created_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  status=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; } || status=$?
  [ -n "$created_policy" ] && rm -f "$policy"
  if [ $status -eq 0 ]; then
    still_missing=()
    for tool in "${missing_tools[@]}"; do have "$tool" || still_missing+=("$tool"); done
    [ ${#still_missing[@]} -eq 0 ] && exit 0
    missing_tools=("${still_missing[@]}")
  fi
  echo "error: apt-get could not install ${packages[*]}." >&2
else
  echo "error: missing tools, and this script can only install them with apt-get as root." >&2
fi
for tool in "${missing_tools[@]}"; do explain "$tool" >&2; done
exit 1
