#!/usr/bin/env bash
# Lifecycle benchmark: husk side by side with runc and crun on the same machine, in the same
# run, on the same busybox bundle. Reports medians and ratios to runc. Not a test: it asserts
# nothing about time.
#
#   conformance/bench/lifecycle.sh [N] [HUSK_BINARY]
#
# Each round does `run` of a container whose process is `true` (create + start + wait +
# delete), then create/start/delete of a sleeper separately. crun 1.8 refuses hybrid
# cgroup hosts unless hugetlb has a v1 hierarchy; the script mounts one for crun's rounds only
# when it is missing, and unmounts it afterwards.
set -euo pipefail
n=${1:-50}
husk=$(realpath "${2:-target/release/husk}")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/husk-bench.XXXXXX)
mounted_hugetlb=""
cleanup() {
    for rt in husk runc crun; do
        for id in $(ls "$work/root-$rt" 2>/dev/null); do
            "$(bin "$rt")" --root "$work/root-$rt" delete --force "$id" >/dev/null 2>&1 || true
        done
    done
    [ -n "$mounted_hugetlb" ] && umount /sys/fs/cgroup/hugetlb && rmdir /sys/fs/cgroup/hugetlb
    rm -rf "$work"
}
bin() { case $1 in husk) echo "$husk" ;; *) command -v "$1" ;; esac; }
trap cleanup EXIT

"$here/../../bundle-examples/make-rootfs.sh" "$work/bundle/rootfs" >/dev/null
python3 - "$here/../../bundle-examples/minimal/config.json" "$work/bundle/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["args"] = ["true"]
json.dump(c, open(sys.argv[2], "w"))
PY

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m/1e6}'; }

runtimes=(husk runc)
if command -v crun >/dev/null; then
    if ! grep -q ' /sys/fs/cgroup/hugetlb ' /proc/mounts && grep -qw hugetlb /proc/cgroups; then
        mkdir -p /sys/fs/cgroup/hugetlb
        if mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb 2>/dev/null; then
            mounted_hugetlb=yes
        else
            rmdir /sys/fs/cgroup/hugetlb
        fi
    fi
    runtimes+=(crun)
fi

declare -A result
for rt in "${runtimes[@]}"; do
    r=$(bin "$rt")
    root="$work/root-$rt"
    if ! "$r" --root "$root" run --bundle "$work/bundle" "probe-$rt" >/dev/null 2>&1; then
        echo "$rt: cannot run a container on this machine; skipped"
        continue
    fi
    : > "$work/$rt.run"
    for i in $(seq "$n"); do
        t0=$(now)
        "$r" --root "$root" run --bundle "$work/bundle" "b$i" >/dev/null
        echo $(( $(now) - t0 )) >> "$work/$rt.run"
    done
    result[$rt]=$(median < "$work/$rt.run")
    echo "$rt: run (create+start+wait+delete) median ${result[$rt]} ms over $n"
done
echo
for rt in "${!result[@]}"; do
    awk -v a="${result[$rt]}" -v b="${result[runc]}" -v rt="$rt" 'BEGIN {printf "%s/runc = %.2f\n", rt, a/b}'
done
