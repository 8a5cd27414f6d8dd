#!/usr/bin/env bash
# Builds a small busybox image from Debian's busybox-static as an OCI image-layout tar, so the
# quickstart has an image to pull and run on a machine that cannot reach Docker Hub.
#   bash scripts/busybox-image.sh OUT.tar [NAME]     (NAME default: localhost/busybox:quickstart)
# The layer is a gzip tar of /bin/busybox, its applet links and a minimal /etc; the image carries
# NAME in the io.containerd.image.name annotation, which `berth load` and containerd honour.
set -euo pipefail

out="${1:?usage: busybox-image.sh OUT.tar [NAME]}"
name="${2:-localhost/busybox:quickstart}"
[ -x /usr/bin/busybox ] || { echo "busybox-image: /usr/bin/busybox missing: apt-get install busybox-static" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs" layout="$work/layout"
mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,root} "$layout/blobs/sha256"
chmod 1777 "$root/tmp"
cp /usr/bin/busybox "$root/bin/busybox"
for applet in $(/usr/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"

# put FILE: stores FILE as a blob and prints "<hex> <size>".
put() {
  local hex size
  hex="$(sha256sum "$1" | cut -d' ' -f1)"
  size="$(stat -c %s "$1")"
  mv "$1" "$layout/blobs/sha256/$hex"
  echo "$hex $size"
}

tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$root" -cf "$work/layer.tar" .
diff_id="$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
gzip -n "$work/layer.tar"
read -r layer_hex layer_size < <(put "$work/layer.tar.gz")

printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"scripts/busybox-image.sh"}]}' \
  "$diff_id" > "$work/config.json"
read -r config_hex config_size < <(put "$work/config.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
  "$config_hex" "$config_size" "$layer_hex" "$layer_size" > "$work/manifest.json"
read -r manifest_hex manifest_size < <(put "$work/manifest.json")

printf '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s"}}]}' \
  "$manifest_hex" "$manifest_size" "$name" > "$layout/index.json"

tar -C "$layout" -cf "$out.tmp" oci-layout index.json blobs
mv "$out.tmp" "$out"
echo "$out: $name (manifest sha256:$manifest_hex)"
