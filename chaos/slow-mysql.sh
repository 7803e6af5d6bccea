#!/usr/bin/env bash
# slow-mysql.sh — every answer of MySQL arrives CHAOS_LATENCY_MS ± 
# CHAOS_JITTER_MS late (default 200 ± 50 ms; 2000 ± 0 for a link that
# all but stops) under load, for CHAOS_OUTAGE seconds; then pay, settle and
# audit. A placement's round trips add up: past transaction.execute_timeout
# the order goes to the Redis cache (202), below it it is stored late (201).
# Exit status: the audit's.
#
# Local mode only: a toxiproxy latency toxic on the mysql proxy. In compose
# mode put a toxiproxy container in front of MySQL (README, "Network faults").
# Settings: see chaos/lib.sh.
set -euo pipefail
CHAOS_LATENCY_MS=${CHAOS_LATENCY_MS:-200}
CHAOS_JITTER_MS=${CHAOS_JITTER_MS:-50}
CHAOS_FAULT="slow (+${CHAOS_LATENCY_MS}±${CHAOS_JITTER_MS} ms)"
CHAOS_NEEDS_FAULTPROXY=1
# shellcheck source=chaos/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $CHAOS_LATENCY_MS =~ ^[0-9]+$ && $CHAOS_JITTER_MS =~ ^[0-9]+$ ]] ||
	chaos_die "CHAOS_LATENCY_MS and CHAOS_JITTER_MS must be whole milliseconds"
[[ $CHAOS_MODE == local ]] ||
	chaos_die "slow-mysql.sh runs in local mode; in compose mode put a toxiproxy container in front of MySQL (README, Network faults)"

target_kill() { fault_add mysql latency downstream "{\"latency\":$CHAOS_LATENCY_MS,\"jitter\":$CHAOS_JITTER_MS}"; }
target_restart() { fault_clear mysql; }

chaos_main slow-mysql mysql
