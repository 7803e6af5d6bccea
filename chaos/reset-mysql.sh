#!/usr/bin/env bash
# reset-mysql.sh — every MySQL connection is cut (TCP RST) as soon as bytes
# flow on it, under load, for CHAOS_OUTAGE seconds; then pay, settle and
# audit. Writes cut before their answer are "may have committed": the order
# is cached too, and the check-back's insert is idempotent by id. Exit
# status: the audit's.
#
# Local mode only: a toxiproxy reset_peer toxic on the mysql proxy. In
# compose mode put a toxiproxy container in front of MySQL (README,
# "Network faults"). Settings: see chaos/lib.sh.
set -euo pipefail
CHAOS_FAULT=reset
CHAOS_NEEDS_FAULTPROXY=1
# shellcheck source=chaos/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $CHAOS_MODE == local ]] ||
	chaos_die "reset-mysql.sh runs in local mode; in compose mode put a toxiproxy container in front of MySQL (README, Network faults)"

target_kill() { fault_add mysql reset_peer both '{"timeout":0}'; }
target_restart() { fault_clear mysql; }

chaos_main reset-mysql mysql
