#!/usr/bin/env bash
# kill-orderd.sh — SIGKILL orderd itself under load, keep it down
# CHAOS_OUTAGE seconds, start it again; then pay, settle and audit. Requests
# in flight at the kill get no answer (the client does not know: they are
# not counted as accepted); every order answered 201/202 before must
# survive, and half messages left open are settled by the broker's
# check-backs to the restarted orderd. Exit status: the audit's.
#
# Compose mode: orderd's restart policy (unless-stopped) may bring it back
# before CHAOS_OUTAGE ends; `docker compose start` is then a no-op.
# Settings: see chaos/lib.sh.
set -euo pipefail
# shellcheck source=chaos/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

target_kill() { svc_kill orderd; }
target_restart() { svc_start orderd; }

chaos_main kill-orderd orderd
