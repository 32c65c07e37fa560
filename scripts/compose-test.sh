#!/usr/bin/env bash
# Fault-injection test of the compose cluster (`make compose-test`):
#
#  1. builds the static binaries and the scratch images (make images) and
#     fetches MNIST into data/mnist when it is not there;
#  2. starts deploy/compose/docker-compose.yml (certs, then coordinator,
#     ps-0, ps-1, worker-0..3; --workers 4 --backups 1 --ps 2) under a unique
#     project name with fresh secrets, deploy/compose/train-test.yaml (60
#     steps, PGD-3, a checkpoint every 10 steps) and short gossip timers;
#     checks that the one-shot `certs` minted the TLS set, one certificate
#     per role on the role's own volume (without the CA's key);
#  2b. before the workers are started (so that training does not run ahead
#     of the fault schedule meanwhile), checks that the cluster really runs
#     with mutual TLS and the join token, from one-off containers on the
#     cluster's network (`logitpair cluster status`; the compose service
#     `status`, with the worker's certificate): with the certificate and the
#     token the coordinator answers and a shard's gRPC is reached (Status is
#     allowed to every role); a plaintext client is refused at the
#     transport by both (Unavailable, where a plaintext server would
#     answer); a wrong token is refused over TLS; then starts the workers;
#  3. once training has progressed, crashes worker-1, checks that its restart
#     policy brought it back and that it rejoined, then (later, mid-run)
#     crashes ps-1 and checks that the coordinator rolled the cluster back to
#     the newest consistent checkpoint;
#  4. waits for the coordinator to finish and checks, from its volume, that
#     the commit log holds steps 0..N-1 each exactly once and that the final
#     checkpoint ckpt-N exists and is recorded as consistent
#     (`logitpair cluster log --expect-steps N`); checks that every process
#     logged "mutual TLS on" with its own role and none the "no TLS"
#     warning, in every run of its container, and that running `certs` again
#     keeps the set.
#
# A crash is `docker kill --signal SIGQUIT` (the Go runtime dumps its
# goroutines and exits with status 2, no cleanup): `docker kill` with SIGKILL
# counts as a manual stop, which restart policies ignore.
#
# Containers, the network and the volumes are always removed (trap). Every
# wait is bounded. Without Docker or Compose the test is skipped, unless
# LOGITPAIR_REQUIRE_E2E=1, in which case it fails.
#
# Environment: COMPOSE_TEST_TIMEOUT (seconds for the whole run after the
# images are built, default 1200), COMPOSE_TEST_KEEP=1 (keep the work
# directory with the coordinator's files and the logs).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
case ":$PATH:" in
*:/usr/local/go/bin:*) ;;
*) export PATH="$PATH:/usr/local/go/bin" ;;
esac

start=$SECONDS
log() { printf 'compose-test [%3ds]: %s\n' "$((SECONDS - start))" "$*"; }
fail() {
	printf 'compose-test [%3ds]: FAIL: %s\n' "$((SECONDS - start))" "$*" >&2
	exit 1
}
skip() {
	if [ "${LOGITPAIR_REQUIRE_E2E:-}" = 1 ]; then
		fail "$* (LOGITPAIR_REQUIRE_E2E=1: required)"
	fi
	log "SKIP: $*"
	exit 0
}

# --- prerequisites ----------------------------------------------------------
command -v docker >/dev/null 2>&1 || skip "docker is not installed"
docker info >/dev/null 2>&1 || skip "the Docker engine is not reachable (docker info fails)"
if docker compose version >/dev/null 2>&1; then
	COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
	COMPOSE=(docker-compose)
else
	skip "neither 'docker compose' nor docker-compose is installed"
fi
log "using $("${COMPOSE[@]}" version 2>/dev/null | head -n1)"

make --no-print-directory images
if [ ! -s data/mnist/train-images-idx3-ubyte.gz ]; then
	log "fetching MNIST into data/mnist"
	bin/static/logitpair data fetch mnist --dir data/mnist
fi

budget="${COMPOSE_TEST_TIMEOUT:-1200}"
deadline=$((SECONDS + budget))
config="$root/deploy/compose/train-test.yaml"
steps="$(awk '$1 == "steps:" { print $2 }' "$config")"
ckpt_every="$(awk '$1 == "checkpoint-every:" { print $2 }' "$config")"
[[ "$steps" =~ ^[0-9]+$ && "$ckpt_every" =~ ^[0-9]+$ ]] || fail "$config: no steps/checkpoint-every"

project="lpct$$$(date +%s)"
work="$(mktemp -d "${TMPDIR:-/tmp}/logitpair-compose-test.XXXXXX")"
deploy/compose/secrets.sh "$work/secrets.env" >/dev/null
export LOGITPAIR_SECRETS="$work/secrets.env"
export LOGITPAIR_TRAIN_CONFIG="$config"
export LOGITPAIR_DATA_DIR="$root/data/mnist"
export LOGITPAIR_GOSSIP_FAST=true
export LOGITPAIR_TAG=dev

compose() { "${COMPOSE[@]}" -p "$project" -f "$root/deploy/compose/docker-compose.yml" "$@"; }

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ "$rc" != 0 ]; then
		echo "--- compose ps" >&2
		compose ps >&2 || true
		for s in certs coordinator ps-0 ps-1 worker-0 worker-1 worker-2 worker-3; do
			echo "--- last lines of $s" >&2
			compose logs --no-color --tail 15 "$s" >&2 2>&1 || true
		done
	fi
	compose down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true
	if [ "${COMPOSE_TEST_KEEP:-}" = 1 ]; then
		echo "compose-test: kept $work" >&2
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cid() {
	local id
	id="$(compose ps -q "$1" 2>/dev/null | head -n1)"
	[ -n "$id" ] || fail "no container for service $1"
	echo "$id"
}

# last_step prints the last step the coordinator committed (-1: none yet).
last_step() {
	local s
	s="$(docker logs --tail 400 "$coord" 2>&1 | grep -o '"msg":"step committed","step":[0-9]*' | tail -n1 | grep -o '[0-9]*$' || true)"
	echo "${s:--1}"
}

# wait_for DESCRIPTION COMMAND...: polls COMMAND every second until it
# succeeds or the run's deadline passes.
wait_for() {
	local what="$1"
	shift
	until "$@"; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			fail "timed out (COMPOSE_TEST_TIMEOUT=${budget}s) waiting for $what"
		fi
		coordinator_alive_or_done
		sleep 1
	done
}

# coordinator_alive_or_done fails the test when the coordinator is neither
# running nor (once the faults are injected: run_may_end=1) done.
run_may_end=0
coordinator_alive_or_done() {
	local st
	st="$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$coord")"
	case "$st" in
	running*) ;;
	"exited 0") [ "$run_may_end" = 1 ] || fail "the run finished before the faults were injected (at step $(last_step))" ;;
	*) fail "the coordinator is $st" ;;
	esac
}

step_at_least() { [ "$(last_step)" -ge "$1" ]; }

# oneoff SERVICE [ARGS...]: a one-off container of SERVICE (its image,
# volumes, network, env file; ARGS replace its command), removed after;
# prints its output and returns its status. Bounded by 90 seconds.
oneoff() {
	timeout 90 "${COMPOSE[@]}" -p "$project" -f "$root/deploy/compose/docker-compose.yml" run --rm -T --no-deps "$@" 2>&1
}
# cli [DOCKER-RUN-OPTIONS...] -- ARGS...: the logitpair CLI in a container on
# the cluster's network with the worker's TLS volume at /etc/logitpair/tls and the
# secrets in its environment (plain `docker run`: several times faster to
# start than `compose run`, so training does not run ahead of the fault
# schedule meanwhile). Bounded by 60 seconds.
cli() {
	local opts=()
	while [ "$1" != -- ]; do
		opts+=("$1")
		shift
	done
	shift
	timeout 60 docker run --rm --network "$net" -v "$tls_volume:/etc/logitpair/tls:ro" --env-file "$LOGITPAIR_SECRETS" \
		"${opts[@]}" "logitpair/logitpair:$LOGITPAIR_TAG" "$@" 2>&1
}
tls_flags=(--tls-ca=/etc/logitpair/tls/ca.crt --tls-cert=/etc/logitpair/tls/tls.crt --tls-key=/etc/logitpair/tls/tls.key)
# refused WHAT WANT [DOCKER-RUN-OPTIONS...] -- ARGS...: `cli` must fail with
# WANT in its output.
refused() {
	local what="$1" want="$2" out
	shift 2
	if out="$(cli "$@")"; then
		fail "$what was accepted: $out"
	fi
	grep -qF -- "$want" <<<"$out" || fail "$what: refused, but without \"$want\": $out"
	log "refused as it must be: $what"
}
restarted_and_running() { # CONTAINER
	local n r
	read -r n r < <(docker inspect -f '{{.RestartCount}} {{.State.Running}}' "$1")
	[ "$n" -ge 1 ] && [ "$r" = true ]
}
log_count() { # CONTAINER PATTERN: lines of the container's logs (every run) matching
	docker logs "$1" 2>&1 | grep -c -- "$2" || true
}
log_count_at_least() { [ "$(log_count "$1" "$2")" -ge "$3" ]; } # CONTAINER PATTERN N
coordinator_exited() { [ "$(docker inspect -f '{{.State.Status}}' "$coord")" = exited ]; }

# --- run --------------------------------------------------------------------
# The coordinator and the shards first (after certs): the TLS checks below
# run before any worker exists, so training does not run ahead of the fault
# schedule meanwhile.
log "starting project $project ($steps steps, checkpoint every $ckpt_every): certs, coordinator, shards"
compose up -d --no-build coordinator ps-0 ps-1 >/dev/null 2>&1 || {
	compose up -d --no-build coordinator ps-0 ps-1 || true
	fail "docker compose up failed"
}
coord="$(cid coordinator)"

certs_log="$(docker logs "$(cid certs)" 2>&1)"
[ "$(docker inspect -f '{{.State.ExitCode}}' "$(cid certs)")" = 0 ] || fail "certs failed: $certs_log"
for f in ca.crt {coordinator,paramserver,worker}/{ca.crt,tls.crt,tls.key}; do
	grep -qx "wrote /data/$f" <<<"$certs_log" || fail "certs did not write $f: $certs_log"
done
! grep -q 'ca\.key' <<<"$certs_log" || fail "certs wrote the CA's key into the volume: $certs_log"
log "certs minted the TLS set, one certificate per role, into the volumes tls and tls-ROLE"

# --- TLS and the join token -------------------------------------------------
net="$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' "$coord")"
tls_volume="$(docker inspect -f '{{range .Mounts}}{{if eq .Destination "/data/worker"}}{{.Name}}{{end}}{{end}}' "$(cid certs)")"
[ -n "$net" ] && [ -n "$tls_volume" ] || fail "the coordinator's network or the workers' TLS volume not found"
# The compose service status: `cluster status` with the certificate and
# the token (retried until the coordinator serves).
status_out=""
status_ok() { status_out="$(oneoff status)" && grep -qF '(mutual TLS): step' <<<"$status_out"; }
if ! status_ok; then
	log "the coordinator does not answer yet: $(tail -n1 <<<"$status_out")"
	wait_for "cluster status over mutual TLS with the join token to succeed (last: $(tail -n1 <<<"$status_out"))" status_ok
fi
log "$(grep -F '(mutual TLS): step' <<<"$status_out")"
# A shard: over TLS with the token the call gets through to gRPC, which
# answers Unimplemented (shards do not serve Status; retried until ps-0
# serves).
shard_out=""
shard_ok() {
	! shard_out="$(cli -- cluster status --coordinator=ps-0:7071 "${tls_flags[@]}" --timeout=20s)" &&
		grep -qF "code = Unimplemented" <<<"$shard_out"
}
shard_ok || wait_for "a TLS client with the token to get through to shard ps-0 (last: $(tail -n1 <<<"$shard_out"))" shard_ok
log "a TLS client with the token gets through to shard ps-0 (Unimplemented: shards do not serve Status)"
# Both listening: a plaintext server would answer (the coordinator with the
# status, a shard with Unimplemented); a TLS server closes the connection
# before gRPC starts.
refused "a plaintext client of the coordinator" "code = Unavailable" -- \
	cluster status --coordinator=coordinator:7070 --timeout=20s
refused "a plaintext client of shard ps-0" "code = Unavailable" -- \
	cluster status --coordinator=ps-0:7071 --timeout=20s
refused "a wrong join token over TLS" "missing or wrong join token" -e LOGITPAIR_JOIN_TOKEN=0000 -- \
	cluster status --coordinator=coordinator:7070 "${tls_flags[@]}" --timeout=20s

log "starting the workers"
compose up -d --no-build >/dev/null 2>&1 || {
	compose up -d --no-build || true
	fail "docker compose up failed (workers)"
}

kill_worker_at=$((ckpt_every + ckpt_every / 2))  # mid-interval, e.g. 15
kill_ps_at=$((3 * ckpt_every + ckpt_every / 2))  # e.g. 35: rolls back to 30
((kill_ps_at + 5 < steps)) || fail "$config: too few steps for the fault schedule"

wait_for "step $kill_worker_at" step_at_least "$kill_worker_at"
w="$(cid worker-1)"
running='"msg":"worker running","slot":1,'
before="$(log_count "$w" "$running")"
log "step $(last_step): crashing worker-1"
docker kill --signal SIGQUIT "$w" >/dev/null
wait_for "worker-1 to be restarted" restarted_and_running "$w"
wait_for "worker-1 to rejoin" log_count_at_least "$w" "$running" $((before + 1))
log "worker-1 restarted ($(docker inspect -f '{{.RestartCount}}' "$w") restart) and rejoined"

wait_for "step $kill_ps_at" step_at_least "$kill_ps_at"
p="$(cid ps-1)"
rollback='"msg":"rolling back",'
before="$(log_count "$coord" "$rollback")"
log "step $(last_step): crashing ps-1"
docker kill --signal SIGQUIT "$p" >/dev/null
wait_for "ps-1 to be restarted" restarted_and_running "$p"
wait_for "the coordinator to roll back" log_count_at_least "$coord" "$rollback" $((before + 1))
log "ps-1 restarted; $(docker logs "$coord" 2>&1 | grep -o -- "$rollback.*" | tail -n1 | tr -d '{}"')"

run_may_end=1
wait_for "the run to finish" coordinator_exited
code="$(docker inspect -f '{{.State.ExitCode}}' "$coord")"
[ "$code" = 0 ] || fail "the coordinator exited with status $code"
log "coordinator done (last committed step $(last_step))"

# --- checks -----------------------------------------------------------------
docker cp "$coord:/data/coordinator" "$work/coordinator"
bin/static/logitpair cluster log --expect-steps "$steps" "$work/coordinator" >"$work/commit-log.txt" ||
	fail "commit log check failed (entries in $work/commit-log.txt; COMPOSE_TEST_KEEP=1 keeps it)"
for s in coordinator ps-0 ps-1 worker-0 worker-1 worker-2 worker-3; do
	c="$(cid "$s")"
	case "$s" in
	ps-*) role=paramserver ;;
	worker-*) role=worker ;;
	*) role="$s" ;;
	esac
	runs=$(($(docker inspect -f '{{.RestartCount}}' "$c") + 1))
	on="$(log_count "$c" "\"msg\":\"mutual TLS on\".*\"role\":\"$role\"")"
	[ "$on" -ge "$runs" ] || fail "$s: \"mutual TLS on\" with role $role logged $on times in $runs runs"
	[ "$(log_count "$c" '"msg":"no TLS')" = 0 ] || fail "$s logged the \"no TLS\" warning"
done
log "every process ran with mutual TLS and its role's certificate (no \"no TLS\" warning)"
out="$(oneoff certs)" || fail "certs failed on the second run: $out"
grep -qF 'kept the existing certificate set in /data' <<<"$out" || fail "certs on the second run: $out"
log "certs keeps the set on the next start"
log "PASS in $((SECONDS - start))s"
