#!/usr/bin/env bash
# Builds logitpair/prometheus:TAG (deploy/docker/Dockerfile.prometheus) from
# Debian's prometheus package: the installed /usr/bin/prometheus when the
# package is installed, else the package fetched with `apt-get download` and
# unpacked (nothing is installed). Usage:
#
#	deploy/docker/build-prometheus.sh [--tag TAG]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

tag=dev
while [ $# -gt 0 ]; do
	case "$1" in
	--tag) tag="${2:?--tag needs a value}"; shift 2 ;;
	--tag=*) tag="${1#--tag=}"; shift ;;
	*) echo "build-prometheus.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
uid="${LOGITPAIR_IMAGE_UID:-65532}"
if ! [[ "$uid" =~ ^[1-9][0-9]*$ ]]; then
	echo "build-prometheus.sh: LOGITPAIR_IMAGE_UID must be a non-zero numeric user id, got '$uid'" >&2
	exit 2
fi

ctx="bin/images/prometheus"
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/usr/bin" "$ctx/data"
pkgroot=/
if ! dpkg -s prometheus >/dev/null 2>&1 || [ ! -x /usr/bin/prometheus ]; then
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "build-prometheus.sh: needs Debian's prometheus package (installed, or apt-get to download it)" >&2
		exit 1
	fi
	dl="$(mktemp -d)"
	trap 'rm -rf "$dl"' EXIT
	chmod 755 "$dl" # apt's _apt user writes the download
	if ! out="$(cd "$dl" && apt-get download prometheus 2>&1)"; then
		echo "$out" >&2
		echo "build-prometheus.sh: apt-get download prometheus failed (run apt-get update?)" >&2
		exit 1
	fi
	dpkg-deb -x "$dl"/prometheus_*.deb "$dl/root"
	pkgroot="$dl/root"
fi
bin="$pkgroot/usr/bin/prometheus"
cp "$bin" "$ctx/rootfs/usr/bin/prometheus"
if [ -d "$pkgroot/usr/share/prometheus/web" ]; then
	mkdir -p "$ctx/rootfs/usr/share/prometheus"
	cp -a "$pkgroot/usr/share/prometheus/web" "$ctx/rootfs/usr/share/prometheus/"
	# Its links into Debian's libjs-* packages (the UI's JavaScript) would
	# dangle in the image (and moment-timezone alone is 200 MB): left out.
	find "$ctx/rootfs/usr/share/prometheus/web" -type l -delete
fi
# The shared libraries the binary loads (none when it is static), at the
# paths the loader looks for them.
libs=0
if ldd "$bin" >/dev/null 2>&1; then
	while read -r lib; do
		mkdir -p "$ctx/rootfs$(dirname "$lib")"
		cp -L "$lib" "$ctx/rootfs$lib"
		libs=$((libs + 1))
	done < <(ldd "$bin" | grep -o '/[^ ]*' | sort -u)
fi
if ! out="$(docker build --quiet -f deploy/docker/Dockerfile.prometheus --build-arg "UID=$uid" -t "logitpair/prometheus:$tag" "$ctx" 2>&1)"; then
	echo "$out" >&2
	echo "build-prometheus.sh: building logitpair/prometheus:$tag failed" >&2
	exit 1
fi
echo "built logitpair/prometheus:$tag ($("$bin" --version 2>&1 | head -n1); $libs shared libraries; $(docker image inspect -f '{{.Size}}' "logitpair/prometheus:$tag") bytes)"
