#!/bin/sh
# containerd-in-mountns.sh VIEW CONTAINERD [ARGS...]
#
# Run under `unshare --mount --propagation private`: replaces /sys/fs/cgroup,
# in this private mount namespace only, with a view that has every hierarchy
# the host mounts plus the hugetlb hierarchy, then execs CONTAINERD ARGS.
#
# Why: this host has a v1 hugetlb hierarchy (listed in /proc/PID/cgroup) that
# is not mounted. containerd 1.6's cgroup library refuses to load a v1 cgroup
# while any listed hierarchy has no mount ("cannot find cgroup mount
# destination"), so its runc shim has no cgroup for the task and
# `ctr task metrics` reports nothing, whatever the runtime. Mounting the
# existing hierarchy in a private namespace creates no hierarchy and changes
# nothing outside; the view (a tmpfs on VIEW) vanishes with the namespace.
set -eu
[ "$#" -ge 2 ] || { echo "usage: $0 VIEW CONTAINERD [ARGS...]" >&2; exit 2; }
view=$1
shift

mkdir -p "$view"
mount -t tmpfs -o mode=755 husk-cgroup-view "$view"
for h in /sys/fs/cgroup/*; do
    name=${h##*/}
    if [ -L "$h" ]; then
        ln -s "$(readlink "$h")" "$view/$name"
    elif [ -d "$h" ]; then
        mkdir "$view/$name"
        mount --rbind "$h" "$view/$name"
    fi
done
if [ ! -e "$view/hugetlb" ] && grep -q ':hugetlb:' /proc/self/cgroup; then
    mkdir "$view/hugetlb"
    mount -t cgroup -o hugetlb cgroup "$view/hugetlb"
fi
mount --rbind "$view" /sys/fs/cgroup
exec "$@"
