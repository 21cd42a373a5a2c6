#!/usr/bin/env bash
# The README demo: a busybox httpd in a networked container, reached through a forwarded port.
# Everything happens inside a throwaway "host" network namespace, so nothing touches this
# machine's own network, and everything is removed on exit, even on failure.
set -euo pipefail
husk=$(realpath "${1:-target/release/husk}")
here=$(cd "$(dirname "$0")" && pwd)
id="demo-web-$$"
ns="husk-demo-$$"
root=$(mktemp -d /run/husk-demo.XXXXXX)

# nsenter rather than `ip netns exec`: the latter remounts /sys, which hides the cgroup mounts.
inns() { nsenter --net="/run/netns/$ns" "$@"; }

cleanup() {
    inns "$husk" --root "$root" delete --force "$id" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$root"
}
trap cleanup EXIT

"$here/../make-rootfs.sh" "$here/rootfs" >/dev/null
mkdir -p "$here/page"
echo "<h1>hello from a husk container</h1>" > "$here/page/index.html"

ip netns add "$ns"
ip -n "$ns" link set lo up
# The page comes from a read-only bind of page/ (the rootfs stays untouched under its overlay).
bundle="$root/bundle"
mkdir -p "$bundle"
ln -s "$here/rootfs" "$bundle/rootfs"
python3 - "$here/config.json" "$bundle/config.json" "$here/page" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["mounts"].append({"destination": "/var/www", "type": "bind", "source": sys.argv[3], "options": ["rbind", "ro"]})
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY

echo "== starting container $id in network namespace $ns"
inns "$husk" --root "$root" run --detach --bundle "$bundle" "$id"
inns "$husk" --root "$root" list
echo "== the host's view: bridge, veth and nftables table"
ip -n "$ns" -br addr show
inns nft list map ip husk ports
echo "== GET http://127.0.0.1:8080/ (forwarded to the container's port 80)"
for _ in $(seq 50); do
    if page=$(inns busybox wget -q -O - http://127.0.0.1:8080/ 2>/dev/null); then
        echo "$page"
        break
    fi
    sleep 0.1
done
[ -n "${page:-}" ] || { echo "demo: no answer through the forwarded port" >&2; exit 1; }
echo "== delete: rules, veth, lease and bridge go away"
inns "$husk" --root "$root" delete --force "$id"
ip -n "$ns" -br link show
inns nft list tables
