#!/usr/bin/env bash
# rolling-restart.sh — restart every orderd replica in turn under load, as a
# deploy does: SIGTERM one (its /readyz answers 503 at once while it keeps
# serving for http.drain_delay, then it closes its listener and finishes
# in-flight requests), start it again, wait until it is ready, wait
# CHAOS_BETWEEN seconds, next. Then pay, settle and audit.
#
# Passes only when the audit is clean AND every placement's final answer
# was 200, 201 or 202: no 5xx and no request left without an answer
# besides attempts the client retried (the load retries with the same key
# for CHAOS_RETRY_FOR, default 45s, and polls /readyz like a load
# balancer, so a draining replica stops getting requests before it stops
# listening). The summary counts every attempt per replica.
#
# Local mode: TXO_ORDERD_REPLICAS (default here 3) orderd replicas of the
# make run stack, each stopped with `devstack.sh stop orderd-k` and started
# with `devstack.sh start-one orderd-k`. Compose mode (`docker compose up -d
# --scale orderd=3`, CHAOS_COMPOSE_ORDERD=3): `docker stop` / `docker start`
# of txorder-orderd-1..3 behind the load balancer (only dry-run here).
# Settings: see chaos/lib.sh, and CHAOS_BETWEEN (seconds between two
# replicas, default 5).
set -euo pipefail
export TXO_ORDERD_REPLICAS=${TXO_ORDERD_REPLICAS:-3} TXO_FULFILLMENTD_REPLICAS=${TXO_FULFILLMENTD_REPLICAS:-2}
CHAOS_RETRY_FOR=${CHAOS_RETRY_FOR:-45s}
CHAOS_COMPOSE_ORDERD=${CHAOS_COMPOSE_ORDERD:-3} CHAOS_COMPOSE_FULFILLMENTD=${CHAOS_COMPOSE_FULFILLMENTD:-2}
# Long enough for three restarts (each: the drain delay, a start, the pause).
CHAOS_DURATION=${CHAOS_DURATION:-75}
CHAOS_COUNT=${CHAOS_COUNT:-1500}
CHAOS_BETWEEN=${CHAOS_BETWEEN:-5}
# shellcheck source=chaos/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $CHAOS_BETWEEN =~ ^[0-9]+$ ]] || chaos_die "CHAOS_BETWEEN must be a whole number of seconds"
if [[ $CHAOS_MODE == local ]] && ((TXO_ORDERD_REPLICAS < 2)); then
	chaos_die "a rolling restart needs TXO_ORDERD_REPLICAS >= 2"
fi
CHAOS_TITLE="every orderd replica restarted in turn (SIGTERM) under load"

CURRENT=
target_disrupt() {
	local svc
	for svc in $(orderd_replicas); do
		CURRENT=$svc
		outage_begin "$svc restart"
		chaos_log "SIGTERM $svc (rolling restart)"
		TARGET_DOWN=1
		replica_stop "$svc"
		replica_start "$svc"
		TARGET_DOWN=0
		outage_end
		pause "$CHAOS_BETWEEN"
	done
}
# For the cleanup of an interrupted run.
target_restart() { replica_start "$CURRENT"; }

# chaos_extra_verdict SUMMARY: every placement's final answer 200/201/202.
chaos_extra_verdict() {
	local s=$1 placed ok
	placed=$(json_num "$s" placed)
	ok=$(($(code_count "$s" 200) + $(code_count "$s" 201) + $(code_count "$s" 202)))
	if ((ok != placed)); then
		echo "rolling restart FAIL: $((placed - ok)) of $placed placements ended without 200/201/202 (5xx or no answer after retries)"
		return 1
	fi
	echo "rolling restart: all $placed placements answered 200/201/202 in the end (no 5xx, none unanswered)"
}

chaos_main rolling-restart "orderd replicas"
