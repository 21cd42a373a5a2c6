#!/bin/sh
# Benchmark husk-net against Debian's CNI plugins inside a throwaway network + mount namespace.
# Needs root, python3, busybox and the containernetworking-plugins package (/usr/lib/cni).
# Usage: hooks/network/bench/run.sh [containers per system, default 50]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../../.."
cargo build --release -q -p husk-net --bin husk-net-hook
hook=$(pwd)/target/release/husk-net-hook
[ -x /usr/lib/cni/bridge ] || { echo "install containernetworking-plugins first" >&2; exit 1; }
exec unshare --net --mount --propagation private -- python3 "$here/bench.py" "$hook" "${1:-50}"
