#!/usr/bin/env bash
# hang-redis.sh — Redis stops answering under load with its connections open
# (a Redis paused by a fork or a full disk), for CHAOS_OUTAGE seconds; then
# pay, settle and audit. Key claims time out until the Redis breaker opens
# (redis.breaker_failures unanswered calls); from then on every Redis call
# fails at once and placements go on with 201 (MySQL's unique key decides
# replays) until a background PING gets an answer. Exit status: the
# audit's.
#
# Local mode: a toxiproxy timeout toxic on the redis proxy. Compose mode:
# `docker compose pause redis`. Settings: see chaos/lib.sh.
set -euo pipefail
CHAOS_FAULT=hang
CHAOS_NEEDS_FAULTPROXY=1
# shellcheck source=chaos/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hang_targets redis

chaos_main hang-redis redis
