#!/usr/bin/env bash
# Builds the FROM-scratch images logitpair/<name>:TAG from the static
# binaries in bin/static/ (`make static`), one small build context per image
# (see deploy/docker/Dockerfile). Usage:
#
#	deploy/docker/build.sh [--tag TAG] [NAME...]
#
# NAME: coordinator, paramserver, worker, logitpair (default: all four).
# TAG defaults to dev; LOGITPAIR_IMAGE_UID sets the image's numeric user
# (default 65532).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

tag=dev
names=()
while [ $# -gt 0 ]; do
	case "$1" in
	--tag) tag="${2:?--tag needs a value}"; shift 2 ;;
	--tag=*) tag="${1#--tag=}"; shift ;;
	coordinator | paramserver | worker | logitpair) names+=("$1"); shift ;;
	*) echo "build.sh: unknown argument $1 (images: coordinator paramserver worker logitpair)" >&2; exit 2 ;;
	esac
done
[ ${#names[@]} -gt 0 ] || names=(coordinator paramserver worker logitpair)
uid="${LOGITPAIR_IMAGE_UID:-65532}"
if ! [[ "$uid" =~ ^[1-9][0-9]*$ ]]; then
	echo "build.sh: LOGITPAIR_IMAGE_UID must be a non-zero numeric user id (scratch has no /etc/passwd), got '$uid'" >&2
	exit 2
fi

for name in "${names[@]}"; do
	bin="bin/static/$name"
	if [ ! -x "$bin" ]; then
		echo "build.sh: $bin is missing: run make static first" >&2
		exit 1
	fi
	if ldd "$bin" >/dev/null 2>&1; then
		echo "build.sh: $bin is dynamically linked; a scratch image needs the static build (make static)" >&2
		exit 1
	fi
	ctx="bin/images/$name"
	rm -rf "$ctx"
	mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/data"
	if [ "$name" = logitpair ]; then
		# `logitpair certs --out /data` in the compose service certs writes
		# each role's directory onto a volume of its own mounted at
		# /data/ROLE: a named volume takes the ownership of the image's
		# directory it is mounted on, so these must exist, owned by the
		# image's user, for the certs to be writable.
		mkdir -p "$ctx/data/coordinator" "$ctx/data/paramserver" "$ctx/data/worker"
	fi
	# A hard link when bin/ and the context share a file system, else a copy.
	ln "$bin" "$ctx/rootfs/usr/local/bin/$name" 2>/dev/null || cp "$bin" "$ctx/rootfs/usr/local/bin/$name"
	# The classic builder's deprecation notice is noise here (BuildKit needs
	# the buildx plugin); its output is shown only when the build fails.
	if ! out="$(docker build --quiet -f deploy/docker/Dockerfile --target "$name" --build-arg "UID=$uid" \
		-t "logitpair/$name:$tag" "$ctx" 2>&1)"; then
		echo "$out" >&2
		echo "build.sh: building logitpair/$name:$tag failed" >&2
		exit 1
	fi
	echo "built logitpair/$name:$tag ($(docker image inspect -f '{{.Size}}' "logitpair/$name:$tag") bytes)"
done
