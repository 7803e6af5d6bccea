#!/usr/bin/env bash
# hang-broker.sh — the broker stops answering under load with its
# connections open (a broker behind a dropped route), for CHAOS_OUTAGE
# seconds; then pay, settle and audit. Half-message sends time out
# (rocketmq.send_timeout), the RocketMQ breaker opens and placements go to
# the spill queue (202 QUEUED) at once; a warm-up half message probes in
# the background, and the drainer places the queued orders once the broker
# answers. fulfillmentd's pulls stall meanwhile. Exit status: the audit's.
#
# Local mode: a toxiproxy timeout toxic on every broker's proxy (rmqdev
# advertises it in its routes). Compose mode: `docker compose pause` of the
# DLedger leader (ordertool cluster --master); the two others elect a new
# one. Settings: see chaos/lib.sh.
set -euo pipefail
CHAOS_FAULT=hang
CHAOS_NEEDS_FAULTPROXY=1
# shellcheck source=chaos/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case $CHAOS_MODE in
compose)
	LEADER=
	target_kill() {
		local addr
		if dry; then
			compose exec -T orderd ordertool cluster --master >&2
			LEADER=broker-n0
		else
			addr=$(compose exec -T orderd ordertool cluster --master | head -n 1) ||
				chaos_die "ordertool cluster --master found no master"
			LEADER=${addr%%:*}
		fi
		chaos_log "the DLedger leader is $LEADER"
		compose_pause "$LEADER"
	}
	target_restart() { compose_unpause "$LEADER"; }
	;;
*)
	# Every broker (each its own group): with one left the client would
	# send to it.
	target_kill() {
		local b
		for b in $(broker_proxies); do fault_add "$b" timeout both '{"timeout":0}'; done
	}
	# shellcheck disable=SC2046 # one proxy name per line
	target_restart() { fault_clear $(broker_proxies); }
	;;
esac

chaos_main hang-broker broker
