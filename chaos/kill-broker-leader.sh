#!/usr/bin/env bash
# kill-broker-leader.sh — compose mode only: find the DLedger group's leader
# (ordertool cluster --master, asked from inside orderd's container), SIGKILL
# it under load, keep it down CHAOS_OUTAGE seconds (the two others elect a
# new leader), start it again; then pay, settle and audit. Exit status: the
# audit's.
#
# Local mode has no broker group: rmqdev keeps messages in memory, so
# killing its only broker loses every half message and event by design, and
# stopping it "gently" instead would test nothing. Local mode refuses
# (exit 2); run kill-namesrv.sh, kill-mysql.sh or kill-orderd.sh locally.
# Settings: see chaos/lib.sh.
set -euo pipefail
# shellcheck source=chaos/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ $CHAOS_MODE != compose ]]; then
	chaos_die "kill-broker-leader needs CHAOS_MODE=compose: the local broker (rmqdev) is a single in-memory process, so killing it loses all messages by design; nothing to prove locally"
fi

# leader_service: the compose service of the current master, e.g. broker-n1
# (each broker's brokerIP1 is its service name, see dledger/).
leader_service() {
	local addr host
	if dry; then
		compose exec -T orderd ordertool cluster --master >&2
		echo broker-n0
		return
	fi
	addr=$(compose exec -T orderd ordertool cluster --master | head -n 1) ||
		chaos_die "ordertool cluster --master found no master (is the group electing?)"
	host=${addr%%:*}
	case $host in
	broker-n0 | broker-n1 | broker-n2) echo "$host" ;;
	*) chaos_die "the master $addr is not one of broker-n0..n2: check brokerIP1 in dledger/" ;;
	esac
}

LEADER=
target_kill() {
	LEADER=$(leader_service)
	chaos_log "the DLedger leader is $LEADER"
	svc_kill "$LEADER"
}
target_restart() { svc_start "$LEADER"; }

chaos_main kill-broker-leader "broker leader"
