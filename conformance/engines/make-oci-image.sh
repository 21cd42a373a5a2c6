#!/bin/sh
# make-oci-image.sh ROOTFS OUT.tar NAME: pack the directory ROOTFS as a
# one-layer OCI image layout tarball (oci-layout, index.json, blobs/sha256/...)
# whose image is named NAME (e.g. localhost/husk-busybox:latest), for
# `ctr images import` or any other OCI-layout importer. Offline: no registry.
set -eu

if [ "$#" -ne 3 ]; then
    echo "usage: $0 ROOTFS OUT.tar NAME" >&2
    exit 2
fi
rootfs=$1
out=$2
name=$3
tag=${name##*:}
[ "$tag" = "$name" ] && tag=latest

work=$(mktemp -d "${TMPDIR:-/tmp}/husk-oci-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
blobs=$work/layout/blobs/sha256
mkdir -p "$blobs"

digest() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# The layer: the rootfs as an uncompressed tar (its digest is the diff id),
# then gzipped (its digest names the blob).
tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -cf "$work/layer.tar" .
diff_id=$(digest "$work/layer.tar")
gzip -n -c "$work/layer.tar" > "$work/layer.tar.gz"
layer_digest=$(digest "$work/layer.tar.gz")
layer_size=$(size "$work/layer.tar.gz")
mv "$work/layer.tar.gz" "$blobs/$layer_digest"

printf '%s' "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"],\"Cmd\":[\"/bin/sh\"],\"WorkingDir\":\"/\"},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$diff_id\"]}}" > "$work/config.json"
config_digest=$(digest "$work/config.json")
config_size=$(size "$work/config.json")
mv "$work/config.json" "$blobs/$config_digest"

printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config_digest\",\"size\":$config_size},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$layer_digest\",\"size\":$layer_size}]}" > "$work/manifest.json"
manifest_digest=$(digest "$work/manifest.json")
manifest_size=$(size "$work/manifest.json")
mv "$work/manifest.json" "$blobs/$manifest_digest"

printf '%s' "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$manifest_digest\",\"size\":$manifest_size,\"annotations\":{\"io.containerd.image.name\":\"$name\",\"org.opencontainers.image.ref.name\":\"$tag\"}}]}" > "$work/layout/index.json"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' > "$work/layout/oci-layout"

tar -C "$work/layout" -cf "$out" oci-layout index.json blobs
