#!/bin/sh
# Build a minimal Debian 12 ("bookworm") image with python3 and python3-venv,
# for `make image BASE_IMAGE=rapidmq-base:bookworm` on a machine that can reach a
# Debian mirror but no image registry.  Runs as root (debootstrap and chroot).
#
#   packaging/build-base-image.sh [IMAGE]       (default rapidmq-base:bookworm)
#
# Does nothing when IMAGE already exists; `docker image rm IMAGE` to rebuild it.
# The mirrors come from DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR, else from this
# machine's apt sources, else deb.debian.org.
set -eu

IMAGE=${1:-rapidmq-base:bookworm}
SUITE=bookworm

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "base image $IMAGE exists"
    exit 0
fi
for tool in debootstrap docker; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$0: $tool is not installed" >&2; exit 1; }
done

# The first "URIs:" (deb822) or "deb URL" (one-line format) ending in $1.
configured_mirror() {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
        2>/dev/null |
        sed -n -e 's/^URIs:[[:space:]]*//p' -e 's/^deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]*\)\{0,1\}//p' |
        awk '{print $1}' | sed 's:/*$::' | grep "/$1\$" | head -n 1
}
MIRROR=${DEBIAN_MIRROR:-$(configured_mirror debian)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${DEBIAN_SECURITY_MIRROR:-$(configured_mirror debian-security)}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}

root=$(mktemp -d /tmp/rapidmq-base.XXXXXX)
cleanup() {
    umount "$root/proc" 2>/dev/null || true
    rm -rf "$root"
}
trap cleanup EXIT INT TERM

echo "debootstrap $SUITE from $MIRROR into $root"
debootstrap --variant=minbase --include=python3,python3-venv "$SUITE" "$root" "$MIRROR"

# Security and point-release updates, as Debian's own images carry them.
cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
EOF
# Keep documentation out of this image and of anything later installed on it.
cat >"$root/etc/dpkg/dpkg.cfg.d/excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
mount -t proc proc "$root/proc"
chroot "$root" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq && apt-get clean'
umount "$root/proc"

find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
    "$root"/usr/share/lintian/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
    "$root"/var/cache/debconf/*-old "$root"/var/log/*.log "$root"/var/log/apt/* \
    "$root"/tmp/* "$root"/root/.cache

tar -C "$root" -c . | docker import \
    -c 'ENV LANG=C.UTF-8' \
    -c 'CMD ["/bin/bash"]' \
    -m "Debian $SUITE (minbase) with python3 and python3-venv" \
    - "$IMAGE"
echo "built $IMAGE"
