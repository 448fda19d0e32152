#!/usr/bin/env bash
# Builds the runtime image of the root Dockerfile without pulling anything:
# takes a flotilla binary already built on this machine, assembles a root
# filesystem around it (the binary, the shared libraries and dynamic
# loader ldd lists for it, /etc/passwd and /etc/group with user flotilla,
# uid 10001, and an empty /var/lib/flotilla owned by it), and builds
# deploy/Dockerfile.local FROM scratch on it.
#
#   deploy/build-image.sh [BINARY] [TAG]
#
# BINARY defaults to target/release/flotilla, else target/debug/flotilla
# (under $CARGO_TARGET_DIR if set); TAG to $FLOTILLA_IMAGE, else
# flotilla:local. Prints the tag and the image's size.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"

die() { echo "build-image: $*" >&2; exit 1; }

bin="${1:-}"
if [ -z "$bin" ]; then
    target="${CARGO_TARGET_DIR:-$repo/target}"
    for candidate in "$target/release/flotilla" "$target/debug/flotilla"; do
        if [ -x "$candidate" ]; then bin="$candidate"; break; fi
    done
    [ -n "$bin" ] || die "no binary given and none in $target/{release,debug}: run cargo build -p flotilla-cli first"
fi
[ -x "$bin" ] || die "$bin is not an executable file"
tag="${2:-${FLOTILLA_IMAGE:-flotilla:local}}"
command -v docker >/dev/null || die "docker is not installed"

stage="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-image.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
root="$stage/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/var/lib/flotilla" "$root/tmp"
chmod 1777 "$root/tmp"
chmod 0700 "$root/var/lib/flotilla"

# The debug info is dropped from the copy (a debug build's is most of its
# size); the symbols stay, so a panic's backtrace still names functions.
if command -v strip >/dev/null; then
    strip --strip-debug -o "$root/usr/local/bin/flotilla" "$bin"
else
    cp "$bin" "$root/usr/local/bin/flotilla"
fi
chmod 0755 "$root/usr/local/bin/flotilla"

# Every library at the path ldd resolved it to, and the loader at the
# path the binary names (the line without "=>"). A static binary has none.
libs="$(ldd "$bin" 2>&1)" || libs=""
if grep -q "not found" <<<"$libs"; then
    die "ldd cannot resolve every library of $bin:"$'\n'"$libs"
fi
while read -r first arrow path _; do
    if [ "$arrow" = "=>" ]; then lib="$path"; else lib="$first"; fi
    case "$lib" in
        /*) mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib" ;;
        *) ;; # linux-vdso: the kernel's, not a file
    esac
done <<<"$libs"

# Name resolution through /etc/hosts, then DNS (Docker's own resolver on
# a user network): members find one another by service name.
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nflotilla:x:10001:10001:flotilla:/var/lib/flotilla:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nflotilla:x:10001:\n' >"$root/etc/group"

# Owners are set in the archive, not on disk, so this works without root:
# everything root's, then the data directory again as 10001's (the later
# entry wins when ADD unpacks it).
tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$stage/rootfs.tar" .
tar --numeric-owner --owner=10001 --group=10001 -C "$root" -rf "$stage/rootfs.tar" ./var/lib/flotilla
rm -rf "$root"
cp "$here/Dockerfile.local" "$stage/Dockerfile"

docker build --quiet --label org.flotilla.built-by=deploy/build-image.sh -t "$tag" "$stage" >/dev/null
size="$(docker image inspect -f '{{.Size}}' "$tag")"
echo "built $tag from $bin: $((size / 1024 / 1024)) MiB"
