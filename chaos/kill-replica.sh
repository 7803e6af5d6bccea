#!/usr/bin/env bash
# kill-replica.sh — SIGKILL one orderd replica (CHAOS_REPLICA, default
# orderd-2) while the load runs over all of them, keep it down CHAOS_OUTAGE
# seconds, start it again; then pay, settle and audit. Exit status: the
# audit's.
#
# What it shows: placements in flight on the killed replica get no answer;
# the load retries them with the same Idempotency-Key on a ready replica
# (CHAOS_RETRY_FOR, default 45s: a claim cut off by the kill is taken over
# after 30 s), which answers 200 with the order if the killed one stored it,
# or places it. The killed replica's half messages get their check-backs at
# the other replicas (the broker picks the next producer of the group), so
# they are committed once paid, rolled back if never stored. The load's
# readiness polling takes the dead replica out of rotation within
# --ready-poll. The summary counts 201/202/503/no-answer per replica.
#
# Local mode runs TXO_ORDERD_REPLICAS (default here 3) orderd and
# TXO_FULFILLMENTD_REPLICAS (default here 2) fulfillmentd on the make run
# stack (started if needed). Compose mode (`docker compose up -d --scale
# orderd=3 --scale fulfillmentd=2`) SIGKILLs the container txorder-orderd-2;
# the load goes through the load balancer (only dry-run here). Settings: see
# chaos/lib.sh.
set -euo pipefail
export TXO_ORDERD_REPLICAS=${TXO_ORDERD_REPLICAS:-3} TXO_FULFILLMENTD_REPLICAS=${TXO_FULFILLMENTD_REPLICAS:-2}
CHAOS_RETRY_FOR=${CHAOS_RETRY_FOR:-45s}
CHAOS_COMPOSE_ORDERD=${CHAOS_COMPOSE_ORDERD:-3} CHAOS_COMPOSE_FULFILLMENTD=${CHAOS_COMPOSE_FULFILLMENTD:-2}
# shellcheck source=chaos/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPLICA=${CHAOS_REPLICA:-orderd-2}
if [[ $CHAOS_MODE == local && " $("$DEVSTACK" names orderd | tr '\n' ' ')" != *" $REPLICA "* ]]; then
	chaos_die "CHAOS_REPLICA=$REPLICA is not one of the $TXO_ORDERD_REPLICAS orderd replicas ($("$DEVSTACK" names orderd | tr '\n' ' '))"
fi
if [[ $CHAOS_MODE == local ]] && ((TXO_ORDERD_REPLICAS < 2)); then
	chaos_die "kill-replica needs TXO_ORDERD_REPLICAS >= 2 (the others keep serving); for one orderd run kill-orderd.sh"
fi

target_kill() { replica_kill "$REPLICA"; }
target_restart() { replica_start "$REPLICA"; }

chaos_main kill-replica "$REPLICA"
