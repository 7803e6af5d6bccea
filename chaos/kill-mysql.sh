#!/usr/bin/env bash
# kill-mysql.sh — SIGKILL MySQL under load, keep it down CHAOS_OUTAGE
# seconds, start it again; then pay, settle and audit. While MySQL is down
# orderd answers 202 (the order is held in the Redis order cache) and the
# check-backs copy those orders into MySQL once it is back. Exit status: the
# audit's. Settings: see chaos/lib.sh.
set -euo pipefail
# shellcheck source=chaos/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

target_kill() { svc_kill mysql; }
target_restart() { svc_start mysql; }

chaos_main kill-mysql mysql
