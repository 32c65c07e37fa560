#!/usr/bin/env bash
# Fault-injection test of the compose cluster (`make compose-test`):
#
#  1. builds the static binaries and the scratch images (make images) and
#     fetches MNIST into data/mnist when it is not there;
#  2. starts deploy/compose/docker-compose.yml (coordinator, ps-0, ps-1,
#     worker-0..3; --workers 4 --backups 1 --ps 2) under a unique project
#     name with deploy/compose/train-test.yaml (60 steps, PGD-3, a checkpoint
#     every 10 steps) and short gossip timers;
#  3. once training has progressed, crashes worker-1, checks that its restart
#     policy brought it back and that it rejoined, then (later, mid-run)
#     crashes ps-1 and checks that the coordinator rolled the cluster back to
#     the newest consistent checkpoint;
#  4. waits for the coordinator to finish and checks, from its volume, that
#     the commit log holds steps 0..N-1 each exactly once and that the final
#     checkpoint ckpt-N exists and is recorded as consistent
#     (`logitpair cluster log --expect-steps N`).
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
# images are built, default 600), COMPOSE_TEST_KEEP=1 (keep the work
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

budget="${COMPOSE_TEST_TIMEOUT:-600}"
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
		for s in coordinator ps-0 ps-1 worker-0 worker-1 worker-2 worker-3; do
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
log "starting project $project ($steps steps, checkpoint every $ckpt_every)"
compose up -d --no-build >/dev/null 2>&1 || {
	compose up -d --no-build || true
	fail "docker compose up failed"
}
coord="$(cid coordinator)"

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
rollback='"msg":"rolling back to the last consistent checkpoint"'
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
log "PASS in $((SECONDS - start))s"
