#!/usr/bin/env bash
# combined.sh — two faults at once under load, for CHAOS_OUTAGE seconds;
# then pay, settle and audit. CHAOS_COMBINED chooses:
#   mysql-hang+redis-slow    MySQL hangs while every Redis answer is
#                            200 ± 50 ms late: the cache is the only store
#                            and it is slow [default]
#   broker-hang+mysql-down   the broker hangs while MySQL refuses
#                            connections: the spill queue is the only way,
#                            and the drainer meets MySQL down afterwards
# Exit status: the audit's.
#
# Local mode only (toxics and a disabled proxy on the fault proxy). In
# compose mode: `docker compose pause` one service and `docker compose
# stop` (or pause) the other. Settings: see chaos/lib.sh.
set -euo pipefail
CHAOS_COMBINED=${CHAOS_COMBINED:-mysql-hang+redis-slow}
CHAOS_FAULT="$CHAOS_COMBINED"
CHAOS_NEEDS_FAULTPROXY=1
# shellcheck source=chaos/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $CHAOS_MODE == local ]] ||
	chaos_die "combined.sh runs in local mode; in compose mode pause one service and stop the other (README, Network faults)"

case $CHAOS_COMBINED in
mysql-hang+redis-slow)
	target_kill() {
		fault_add redis latency downstream '{"latency":200,"jitter":50}'
		fault_add mysql timeout both '{"timeout":0}'
	}
	target_restart() { fault_clear mysql redis; }
	LABEL="mysql + redis"
	;;
broker-hang+mysql-down)
	target_kill() {
		local b
		fault_disable mysql
		for b in $(broker_proxies); do fault_add "$b" timeout both '{"timeout":0}'; done
	}
	# shellcheck disable=SC2046 # one proxy name per line
	target_restart() { fault_clear $(broker_proxies) mysql; }
	LABEL="broker + mysql"
	;;
*) chaos_die "CHAOS_COMBINED must be mysql-hang+redis-slow or broker-hang+mysql-down, not '$CHAOS_COMBINED'" ;;
esac

chaos_main "combined-${CHAOS_COMBINED//+/-}" "$LABEL"
