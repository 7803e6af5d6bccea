#!/usr/bin/env bash
# hang-mysql.sh — MySQL stops answering under load with its connections
# open (every byte swallowed both ways), for CHAOS_OUTAGE seconds; then
# pay, settle and audit. Within transaction.execute_timeout the first
# placements time out, the MySQL breaker opens, and orders go to the Redis
# order cache (202) at once; payments get 503 after mysql.timeout; the
# sweeper stores the cached orders once MySQL answers again. The run records
# orderd's goroutines, RSS, open files and pool connections at the end of
# the hang (at-fault-end.txt). Exit status: the audit's.
#
# Local mode: a toxiproxy timeout toxic on the mysql proxy (the stack runs
# behind the fault proxy, see chaos/lib.sh). Compose mode: `docker compose
# pause mysql` (the frozen server's kernel keeps the connections open).
# Settings: see chaos/lib.sh.
set -euo pipefail
CHAOS_FAULT=hang
CHAOS_NEEDS_FAULTPROXY=1
# shellcheck source=chaos/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hang_targets mysql

chaos_main hang-mysql mysql
