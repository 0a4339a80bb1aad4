#!/usr/bin/env bash
# Prints the path of an etcd 3.5 server binary, fetching it first if needed.
#
# Debian 12's etcd-server is 3.4.23, which scripts/install-deps.sh installs and the tests use by
# default. Kubernetes runs on etcd 3.5, whose watch progress and write transactions behave
# differently (see apiserver/src/storage/etcd.rs), so the test command runs the etcd tests on
# 3.5 as well. The binary is Debian 13's etcd-server package (it needs glibc 2.34, which
# Debian 12 has), downloaded with apt-get from deb.debian.org, signature checked by apt with
# the Debian archive keyring, and unpacked under ~/.cache/gitplane; the machine's own apt
# configuration and installed packages are not touched.
#
# GITPLANE_ETCD_35 set to an etcd 3.5 binary (an etcd release, say) is used as it is.
set -euo pipefail

if [ -n "${GITPLANE_ETCD_35:-}" ]; then
  [ -x "$GITPLANE_ETCD_35" ] || { echo "error: GITPLANE_ETCD_35=$GITPLANE_ETCD_35 is not an executable" >&2; exit 1; }
  echo "$GITPLANE_ETCD_35"
  exit 0
fi

dir="${HOME}/.cache/gitplane/etcd-3.5"
etcd="$dir/root/usr/bin/etcd"
works() { "$etcd" --version 2>/dev/null | grep -q '^etcd Version: 3\.5\.'; }
if [ -x "$etcd" ] && works; then
  echo "$etcd"
  exit 0
fi

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1 || [ ! -f "$keyring" ]; then
  echo "error: the etcd tests also run on etcd 3.5, and this is not a Debian machine to fetch it from." >&2
  echo "       Download an etcd v3.5 release and set GITPLANE_ETCD_35 to its etcd binary." >&2
  exit 1
fi

rm -rf "$dir"
mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/root"
echo "deb [signed-by=$keyring] http://deb.debian.org/debian trixie main" >"$dir/sources.list"
apt=(apt-get -qq
  -o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
  -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache"
  -o APT::Architectures=amd64 -o Acquire::Languages=none -o APT::Sandbox::User=root)
echo "fetching etcd 3.5 (Debian 13's etcd-server) into $dir" >&2
"${apt[@]}" update
(cd "$dir" && "${apt[@]}" download etcd-server)
dpkg-deb -x "$dir"/etcd-server_*.deb "$dir/root"
# Only the binary is needed: drop the package lists and the archive.
rm -rf "$dir/lists" "$dir/cache" "$dir"/etcd-server_*.deb
if ! works; then
  echo "error: $etcd does not run or is not etcd 3.5: $("$etcd" --version 2>&1 | head -1)" >&2
  exit 1
fi
echo "$etcd"
