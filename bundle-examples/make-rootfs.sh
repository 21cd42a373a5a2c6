#!/bin/sh
# make-rootfs.sh DIR: build a busybox root filesystem in DIR.
#
# Uses Debian's statically linked busybox (/bin/busybox from busybox-static,
# installed with apt-get if missing). Safe to run again: it only adds what is
# missing and rewrites the /etc files with the same content.
#
# Layout (the conformance suite builds the same one in conformance/src/rootfs.rs):
#   bin/busybox plus one symlink per applet in bin/, the usual top-level dirs,
#   etc/passwd and etc/group with root, a user husk (1000:1000, also in
#   groups wheel and users) and nobody, etc/hostname and etc/hosts.
set -eu

if [ "$#" -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
busybox=/bin/busybox

is_static() {
    [ -x "$busybox" ] && LC_ALL=C ldd "$busybox" 2>&1 | grep -q 'not a dynamic executable'
}

if ! is_static; then
    echo "make-rootfs: installing busybox-static (a static /bin/busybox is needed)" >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y busybox-static >/dev/null; then
        apt-get update >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y busybox-static >/dev/null
    fi
    is_static || { echo "make-rootfs: $busybox is still not a static binary" >&2; exit 1; }
fi

for d in bin sbin usr/bin usr/sbin etc proc sys dev tmp root run mnt home/husk \
         var/www var/log var/tmp lib opt; do
    mkdir -p "$dir/$d"
done
chmod 1777 "$dir/tmp"

# Copy, never hardlink: a container writing its /bin/busybox must not change the host's.
if ! cmp -s "$busybox" "$dir/bin/busybox"; then
    cp "$busybox" "$dir/bin/busybox.new"
    mv -f "$dir/bin/busybox.new" "$dir/bin/busybox"
fi

for applet in $("$busybox" --list); do
    # The list names busybox itself; a link would replace the binary.
    [ "$applet" = busybox ] && continue
    [ -e "$dir/bin/$applet" ] || [ -L "$dir/bin/$applet" ] || ln -s busybox "$dir/bin/$applet"
done

cat > "$dir/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
husk:x:1000:1000:husk:/home/husk:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD

cat > "$dir/etc/group" <<'GROUP'
root:x:0:
tty:x:5:
wheel:x:10:husk
users:x:100:husk
husk:x:1000:
nogroup:x:65534:
GROUP

echo husk > "$dir/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$dir/etc/hosts"
