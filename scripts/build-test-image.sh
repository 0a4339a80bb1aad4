#!/usr/bin/env bash
# Builds three small OCI images from Debian's busybox-static, without network or Docker, and
# optionally pushes them to a registry:
#   gitplane/busybox:1  busybox with all its applets on /bin (sh, httpd, sleep, …), a page in
#                       /www; default command `httpd -f -p 80 -h /www` (serves HTTP on port 80)
#   gitplane/pause:1    the pod sandbox ("pause") image for containerd: `sleep` forever
#   gitplane/hello:1    the same files, `echo hello` (another image id, for image GC tests)
#
# usage: scripts/build-test-image.sh OUT_DIR [REGISTRY]
#   OUT_DIR   gets busybox/ and pause/ (OCI image layouts)
#   REGISTRY  host:port of a plain-HTTP registry to push both to with skopeo
#             (credentials, when it needs them: REGISTRY_CREDS=user:password)
# needs: busybox-static, skopeo (for pushing), tar, gzip, sha256sum
#   apt-get install -y busybox-static skopeo
set -euo pipefail

out=${1:?usage: $0 OUT_DIR [REGISTRY]}
registry=${2:-}
busybox=/bin/busybox
# A static busybox: `ldd` finds no libraries to list.
if ! "$busybox" --list >/dev/null 2>&1 || ldd "$busybox" >/dev/null 2>&1; then
  echo "error: a static busybox is needed at $busybox: apt-get install -y busybox-static" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The root file system, shared by both images.
root=$work/rootfs
mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc" "$root/proc" "$root/sys" "$root/dev"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [[ $applet == busybox ]] || ln -sf busybox "$root/bin/$applet"
done
echo "hello from a gitplane test container" >"$root/www/index.html"
echo "root:x:0:0:root:/:/bin/sh" >"$root/etc/passwd"
echo "root:x:0:" >"$root/etc/group"
chmod 1777 "$root/tmp"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/layer.tar" .
gzip -n -c "$work/layer.tar" >"$work/layer.tar.gz"
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)

# image NAME CONFIG_JSON_FRAGMENT: an OCI image layout in $out/NAME.
image() {
  local name=$1 cfg=$2 dir=$out/$1
  rm -rf "$dir"
  mkdir -p "$dir/blobs/sha256"
  local layer size_layer
  layer=$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)
  size_layer=$(stat -c %s "$work/layer.tar.gz")
  cp "$work/layer.tar.gz" "$dir/blobs/sha256/$layer"
  printf '{"architecture":"%s","os":"linux","config":{%s,"Env":["PATH=/bin"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$(dpkg --print-architecture 2>/dev/null || echo amd64)" "$cfg" "$diff_id" >"$work/config.json"
  local config size_config
  config=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  size_config=$(stat -c %s "$work/config.json")
  cp "$work/config.json" "$dir/blobs/sha256/$config"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config" "$size_config" "$layer" "$size_layer" >"$work/manifest.json"
  local manifest size_manifest
  manifest=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
  size_manifest=$(stat -c %s "$work/manifest.json")
  cp "$work/manifest.json" "$dir/blobs/sha256/$manifest"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"1"}}]}' \
    "$manifest" "$size_manifest" >"$dir/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
}

image busybox '"Entrypoint":["/bin/httpd"],"Cmd":["-f","-p","80","-h","/www"]'
image pause '"Entrypoint":["/bin/sleep"],"Cmd":["2147483647"]'
image hello '"Entrypoint":["/bin/echo"],"Cmd":["hello"]'
echo "built $out/busybox, $out/pause and $out/hello (OCI layouts, tag 1)"

if [[ -n $registry ]]; then
  command -v skopeo >/dev/null || { echo "error: skopeo is needed to push: apt-get install -y skopeo" >&2; exit 1; }
  creds=()
  [[ -n ${REGISTRY_CREDS:-} ]] && creds=(--dest-creds "$REGISTRY_CREDS")
  for name in busybox pause hello; do
    skopeo copy --quiet --dest-tls-verify=false "${creds[@]}" \
      "oci:$out/$name:1" "docker://$registry/gitplane/$name:1"
    echo "pushed $registry/gitplane/$name:1"
  done
fi
