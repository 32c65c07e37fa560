#!/usr/bin/env bash
# Builds logitpair/debian-base:bookworm, the base of the GPU worker image
# (deploy/docker/Dockerfile.gpu), without pulling anything: a minimal Debian
# root file system made with debootstrap (--variant=minbase) from a Debian
# mirror, trimmed (apt lists and caches, documentation, man pages, locales)
# and turned into an image with `docker import`.
#
# A GPU image cannot be FROM scratch with a static binary: the CUDA libraries
# are loaded at run time with dlopen from the driver's files that the NVIDIA
# container toolkit mounts, which needs glibc's dynamic loader.
#
#	scripts/gpu-base-image.sh [--force]
#
# The image is reused when it exists (--force rebuilds it). Environment:
# DEBIAN_MIRROR (default http://deb.debian.org/debian), DEBIAN_SUITE
# (default bookworm; the tag follows it). Needs root (or sudo) for
# debootstrap; installs the debootstrap package when it is missing.
set -euo pipefail

force=0
case "${1:-}" in
"") ;;
--force) force=1 ;;
*) echo "gpu-base-image.sh: unknown argument $1 (usage: gpu-base-image.sh [--force])" >&2; exit 2 ;;
esac

suite="${DEBIAN_SUITE:-bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
image="logitpair/debian-base:$suite"

if [ "$force" = 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
	echo "gpu-base-image.sh: $image exists (--force rebuilds it)"
	exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null 2>&1 || { echo "gpu-base-image.sh: debootstrap needs root or sudo" >&2; exit 1; }
	SUDO=sudo
fi
if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
	echo "gpu-base-image.sh: installing debootstrap"
	$SUDO apt-get update
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap
fi
debootstrap="$(command -v debootstrap || echo /usr/sbin/debootstrap)"

work="$(mktemp -d "${TMPDIR:-/tmp}/logitpair-debian-base.XXXXXX")"
rootfs="$work/rootfs"
cleanup() {
	# debootstrap mounts /proc and /sys in the target while it runs; a
	# failed run can leave them.
	for m in proc sys dev/pts dev; do
		if mountpoint -q "$rootfs/$m" 2>/dev/null; then $SUDO umount -l "$rootfs/$m" || true; fi
	done
	$SUDO rm -rf "$work"
}
trap cleanup EXIT

start=$SECONDS
echo "gpu-base-image.sh: debootstrap --variant=minbase $suite from $mirror"
if ! $SUDO "$debootstrap" --variant=minbase "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
	tail -n 30 "$work/debootstrap.log" >&2
	echo "gpu-base-image.sh: debootstrap failed" >&2
	exit 1
fi

# Trim what a container never needs. apt still works after `apt-get update`.
$SUDO rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
	"$rootfs"/var/log/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
if [ -d "$rootfs/usr/share/locale" ]; then
	$SUDO find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
fi
# Keep them trimmed when packages are installed later.
$SUDO tee "$rootfs/etc/dpkg/dpkg.cfg.d/01-logitpair-nodoc" >/dev/null <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
EOF
$SUDO tee "$rootfs/etc/apt/apt.conf.d/01-logitpair-norecommends" >/dev/null <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF

$SUDO tar -C "$rootfs" --numeric-owner -c . |
	docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
		-m "debootstrap --variant=minbase $suite $mirror (logitpair scripts/gpu-base-image.sh)" - "$image" >/dev/null
echo "gpu-base-image.sh: built $image in $((SECONDS - start))s ($(docker image inspect -f '{{.Size}}' "$image") bytes)"
