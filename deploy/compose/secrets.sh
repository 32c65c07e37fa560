#!/usr/bin/env bash
# Writes a fresh join token and gossip key for the compose cluster, as an env
# file (mode 0600) the services read: LOGITPAIR_JOIN_TOKEN (128 random bits,
# hex) and LOGITPAIR_GOSSIP_KEY (32 random bytes, base64: AES-256 for
# memberlist). Usage: deploy/compose/secrets.sh [FILE] (default: secrets.env
# next to this script). An existing file is left alone.
set -euo pipefail

out="${1:-$(dirname "${BASH_SOURCE[0]}")/secrets.env}"
if [ -e "$out" ]; then
	echo "secrets.sh: $out exists; remove it to draw new secrets" >&2
	exit 0
fi
umask 077
token="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
key="$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
printf 'LOGITPAIR_JOIN_TOKEN=%s\nLOGITPAIR_GOSSIP_KEY=%s\n' "$token" "$key" >"$out"
echo "secrets.sh: wrote $out"
