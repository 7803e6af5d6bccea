#!/usr/bin/env bash
# kill-namesrv.sh — SIGKILL the NameServer under load (in compose mode every
# NameServer in CHAOS_NAMESRVS, default both, so that none answers), keep it
# down CHAOS_OUTAGE seconds, start it again; then pay, settle and audit.
# Producers and consumers that already hold routes keep working; anything
# that needs a route meanwhile fails over to the spill queue (202 QUEUED).
# Exit status: the audit's. Settings: see chaos/lib.sh.
set -euo pipefail
# shellcheck source=chaos/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ $CHAOS_MODE == compose ]]; then
	read -r -a NAMESRVS <<<"${CHAOS_NAMESRVS:-namesrv-1 namesrv-2}"
else
	NAMESRVS=(namesrv)
fi

target_kill() { svc_kill "${NAMESRVS[@]}"; }
target_restart() { svc_start "${NAMESRVS[@]}"; }

chaos_main kill-namesrv "${NAMESRVS[*]}"
