# shellcheck shell=bash
# chaos/lib.sh — shared by the chaos scripts (chaos/*.sh); source it,
# define target_kill and target_restart (or target_disrupt, which does the
# whole disruption itself and records its outages with outage_begin /
# outage_end), then call chaos_main NAME LABEL.
#
# One run: start `ordertool load` (bounded by CHAOS_COUNT and
# CHAOS_DURATION), let it run CHAOS_BEFORE seconds, SIGKILL the target,
# keep it down CHAOS_OUTAGE seconds, start it again, wait for the load to
# end, pay the accepted orders the load could not pay (the ones accepted
# into Redis, and those whose payment failed during the outage), let the
# system settle and run `ordertool audit --accepted`. The exit status is the
# audit's: 0 only when lost = duplicated = phantom = absent = 0.
#
# Every run writes reports/<name>-<UTC timestamp>/: accepted.txt,
# load-summary.json, metrics.csv (orderd's fallback depths, once a second),
# outages.csv, load.out, pay.log, audit.json, timeline.png and timeline.html
# (drawn by `ordertool report`), summary.txt (the figures), run.log (this
# script's output) and, in local mode, orderd.log, orderd-2.log, ...,
# fulfillmentd.log, ... (each replica's log lines during the run).
#
# Replicas (local mode): with TXO_ORDERD_REPLICAS > 1 the load goes to
# every orderd replica (scripts/devstack.sh urls): each placement to the
# next ready one, each payment to another replica than its placement, and
# the summary counts 201/202/503/no answer per replica. In compose mode
# the load goes to the API's one published address (the load balancer).
#
# Environment (defaults in brackets):
#   CHAOS_MODE         local (the `make run` stack, started if down) or
#                      compose (docker compose in the repository) [local]
#   CHAOS_COUNT        placements at most [600]
#   CHAOS_DURATION     load time at most, seconds [60]
#   CHAOS_RATE         placements started per second [25]
#   CHAOS_CONCURRENCY  requests in flight at most [16]
#   CHAOS_PAY          fraction of the accepted orders the load pays at once
#                      (older loads: of the 201 orders) [0.8]
#   CHAOS_PAY_RETRY    how long the load retries a failed payment, when its
#                      ordertool has --pay-retry; 0s keeps the workers placing
#                      orders through the outage [0s]
#   CHAOS_RETRY_FOR    how long the load retries a placement that got no
#                      answer, 503 or 409 in progress, with the same key on
#                      the next ready replica (ordertool load --retry-for) [0s]
#   CHAOS_BEFORE       seconds of load before the kill [5]
#   CHAOS_OUTAGE       seconds the target stays down [6]
#   CHAOS_PAY_WAIT     seconds to wait for orders held in Redis to reach
#                      MySQL so they can be paid [90]
#   CHAOS_PAY_PARALLEL payments in flight at most afterwards [8]
#   CHAOS_SETTLE       the audit's --settle [120s]
#   CHAOS_REPORTS      where report folders go [reports/ in the repository]
#   CHAOS_DRY_RUN      1: print the docker / ordertool commands, run nothing
#                      (compose mode only) [0]
#   COMPOSE            the compose command [docker compose]
#   CHAOS_COMPOSE_ORDERD, CHAOS_COMPOSE_FULFILLMENTD
#                      replicas `docker compose up --scale` starts (compose
#                      mode) [1, 1; kill-replica and rolling-restart: 3, 2]
# Local mode also honours scripts/devstack.sh's TXO_* variables (ports, API
# key, webhook secret); everything is on 127.0.0.1.
#
# Orders whose id ends in 0, 1, 2 or 3 that the load left unpaid stay
# unpaid on purpose (the payment window closes them later): the audit then
# also checks that nothing is announced for an unpaid order.
#
# Network faults (chaos/hang-*.sh, slow-mysql.sh, reset-mysql.sh,
# combined.sh) set CHAOS_FAULT (the verb in logs and titles: "hang",
# "slow", ...) and CHAOS_NEEDS_FAULTPROXY=1: in local mode the stack then
# runs with the fault proxy (scripts/devstack.sh, TXO_FAULT_PROXY=1; a
# stack running without it is restarted with it: broker, orderd and
# fulfillmentd), and the faults are toxics added through its API
# (fault_add, fault_clear). They also record orderd's goroutines, RSS,
# open files and pool connections just before the fault ends
# (at-fault-end.txt), and `ordertool report` prints how long after the
# fault placements were all 201 again and Redis held nothing.
#   TXO_FAULTPROXY_PORT   the proxy's API port [8474]
#   CHAOS_BOUND_SECONDS   the placement bound the longest request is held
#                         to: redis.timeout + rocketmq.send_timeout +
#                         transaction.execute_timeout + 2 x redis.timeout
#                         with orderd's defaults [4.5]

set -euo pipefail

CHAOS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHAOS_MODE=${CHAOS_MODE:-local}
CHAOS_COUNT=${CHAOS_COUNT:-600}
CHAOS_DURATION=${CHAOS_DURATION:-60}
CHAOS_RATE=${CHAOS_RATE:-25}
CHAOS_CONCURRENCY=${CHAOS_CONCURRENCY:-16}
CHAOS_PAY=${CHAOS_PAY:-0.8}
CHAOS_PAY_RETRY=${CHAOS_PAY_RETRY:-0s}
CHAOS_RETRY_FOR=${CHAOS_RETRY_FOR:-0s}
CHAOS_BEFORE=${CHAOS_BEFORE:-5}
CHAOS_OUTAGE=${CHAOS_OUTAGE:-6}
CHAOS_PAY_WAIT=${CHAOS_PAY_WAIT:-90}
CHAOS_PAY_PARALLEL=${CHAOS_PAY_PARALLEL:-8}
CHAOS_SETTLE=${CHAOS_SETTLE:-120s}
CHAOS_REPORTS=${CHAOS_REPORTS:-$CHAOS_ROOT/reports}
CHAOS_DRY_RUN=${CHAOS_DRY_RUN:-0}
COMPOSE=${COMPOSE:-docker compose}
# The longest a sampler or watchdog loop runs, whatever happens.
CHAOS_MAX_SECONDS=${CHAOS_MAX_SECONDS:-900}

TXO_ORDERD_PORT=${TXO_ORDERD_PORT:-8080}
TXO_MYSQL_PORT=${TXO_MYSQL_PORT:-3307}
TXO_REDIS_PORT=${TXO_REDIS_PORT:-6380}
TXO_NAMESRV_PORT=${TXO_NAMESRV_PORT:-9876}
TXO_FULFILLMENTD_PORT=${TXO_FULFILLMENTD_PORT:-8081}
TXO_FAULTPROXY_PORT=${TXO_FAULTPROXY_PORT:-8474}
CHAOS_FAULT=${CHAOS_FAULT:-SIGKILL}
CHAOS_NEEDS_FAULTPROXY=${CHAOS_NEEDS_FAULTPROXY:-0}
CHAOS_BOUND_SECONDS=${CHAOS_BOUND_SECONDS:-4.5}
FAULTPROXY_URL=http://127.0.0.1:$TXO_FAULTPROXY_PORT

ORDERTOOL=$CHAOS_ROOT/bin/ordertool
DEVSTACK=$CHAOS_ROOT/scripts/devstack.sh
ORDERD_URL=http://127.0.0.1:$TXO_ORDERD_PORT
# Every orderd the load goes to, comma-separated: the replicas (local) or
# the load balancer (compose).
if [[ $CHAOS_MODE == local ]]; then
	ORDERD_URLS=$("$DEVSTACK" urls)
else
	ORDERD_URLS=$ORDERD_URL
fi

chaos_log() { printf '%s chaos: %s\n' "$(date -u +%T)" "$*" >&2; }
chaos_die() {
	chaos_log "$*"
	exit 2
}

# now: unix time with milliseconds.
now() { date +%s.%3N; }

dry() { [[ $CHAOS_DRY_RUN == 1 ]]; }

# x CMD...: run CMD, or print it in a dry run.
x() {
	if dry; then
		printf '+ %s\n' "$*" >&2
		return 0
	fi
	"$@"
}

# compose ARGS...: docker compose in the repository.
compose() {
	# shellcheck disable=SC2086 # COMPOSE is a command and its words
	(cd "$CHAOS_ROOT" && x $COMPOSE "$@")
}

# pause SECONDS: sleep, or not at all in a dry run.
pause() { dry || sleep "$1"; }

# --- the stack ---------------------------------------------------------------

# svc_kill SERVICE...: SIGKILL, as a crash would.
svc_kill() {
	case $CHAOS_MODE in
	local) "$DEVSTACK" kill "$@" ;;
	compose) compose kill -s SIGKILL "$@" ;;
	esac
}

# replica_container SERVICE: the container of a compose replica: orderd-2
# is txorder-orderd-2 (project name "txorder", docker-compose.yml), orderd
# is txorder-orderd-1.
replica_container() {
	local svc=$1
	[[ $svc =~ -[0-9]+$ ]] || svc=$svc-1
	echo "${COMPOSE_PROJECT_NAME:-txorder}-$svc"
}

# compose_wait_healthy CONTAINER SECONDS: until its healthcheck passes.
compose_wait_healthy() {
	local deadline=$((SECONDS + $2)) st
	dry && return 0
	while st=$(docker inspect --format '{{.State.Health.Status}}' "$1" 2>/dev/null) && [[ $st != healthy ]]; do
		((SECONDS < deadline)) || {
			chaos_log "$1 not healthy after $2 s ($st)"
			return 1
		}
		sleep 1
	done
}

# replica_kill / replica_stop / replica_start SERVICE: one replica (orderd-2)
# SIGKILLed, stopped gracefully (SIGTERM: readiness down, drain, exit) or
# started and waited for. Local: devstack; compose: the replica's container.
replica_kill() {
	case $CHAOS_MODE in
	local) "$DEVSTACK" kill "$1" ;;
	compose) x docker kill -s SIGKILL "$(replica_container "$1")" ;;
	esac
}
replica_stop() {
	case $CHAOS_MODE in
	local) "$DEVSTACK" stop "$1" ;;
	compose) x docker stop -t 40 "$(replica_container "$1")" ;;
	esac
}
replica_start() {
	case $CHAOS_MODE in
	local) "$DEVSTACK" start-one "$1" ;;
	compose)
		x docker start "$(replica_container "$1")"
		compose_wait_healthy "$(replica_container "$1")" 90
		;;
	esac
}

# orderd_replicas: the orderd instances (local: devstack's names; compose:
# orderd, orderd-2, ... up to CHAOS_COMPOSE_ORDERD, default 3).
orderd_replicas() {
	local k
	if [[ $CHAOS_MODE == local ]]; then
		"$DEVSTACK" names orderd
		return
	fi
	echo orderd
	for ((k = 2; k <= ${CHAOS_COMPOSE_ORDERD:-3}; k++)); do
		echo "orderd-$k"
	done
}

# svc_start SERVICE...: start again and wait until it is ready.
svc_start() {
	local svc
	case $CHAOS_MODE in
	local)
		for svc in "$@"; do
			"$DEVSTACK" start-one "$svc"
		done
		;;
	compose)
		compose start "$@"
		# orderd has a healthcheck; for the rest, start returning is all
		# compose tells us.
		for svc in "$@"; do
			if [[ $svc == orderd ]]; then
				wait_http "$ORDERD_URL/healthz" 90
			fi
		done
		;;
	esac
}

# wait_http URL SECONDS: until URL answers 200.
wait_http() {
	local url=$1 deadline=$((SECONDS + $2))
	dry && return 0
	until curl -fsS -o /dev/null -m 2 "$url" 2>/dev/null; do
		((SECONDS < deadline)) || {
			chaos_log "$url not ready after $2 s"
			return 1
		}
		sleep 0.5
	done
}

# stack_up: make sure the stack runs and is ready.
stack_up() {
	# ordertool runs here in both modes (the load, the payments, the chart).
	if [[ ! -x $ORDERTOOL ]] || [[ $CHAOS_MODE == local && ! (-x $CHAOS_ROOT/bin/orderd && -x $CHAOS_ROOT/bin/rmqdev) ]]; then
		x make -C "$CHAOS_ROOT" build >&2
	fi
	case $CHAOS_MODE in
	local)
		if [[ $CHAOS_NEEDS_FAULTPROXY == 1 ]]; then
			faultproxy_up
		elif ! "$DEVSTACK" status >/dev/null; then
			chaos_log "the local stack is not (fully) running: make run"
			(cd "$CHAOS_ROOT" && make run) >&2
		fi
		wait_http "http://127.0.0.1:$TXO_FULFILLMENTD_PORT/readyz" 60
		local url
		for url in ${ORDERD_URLS//,/ }; do
			wait_http "$url/readyz" 90
		done
		;;
	compose)
		command -v docker >/dev/null || dry || chaos_die "compose mode needs docker"
		local -a scale=()
		((${CHAOS_COMPOSE_ORDERD:-1} > 1)) && scale+=(--scale "orderd=$CHAOS_COMPOSE_ORDERD")
		((${CHAOS_COMPOSE_FULFILLMENTD:-1} > 1)) && scale+=(--scale "fulfillmentd=$CHAOS_COMPOSE_FULFILLMENTD")
		compose up -d --wait "${scale[@]}"
		;;
	*) chaos_die "CHAOS_MODE must be local or compose, not '$CHAOS_MODE'" ;;
	esac
	wait_http "$ORDERD_URL/readyz" 90
}

# --- network faults (local mode: the fault proxy) --------------------------------

# faultproxy_up: the local stack with every dependency behind the fault
# proxy. A stack started without it is restarted with it where it matters:
# the broker (it must advertise its proxy), orderd and fulfillmentd (their
# configuration names the proxies); MySQL, Redis and the NameServer keep
# running.
faultproxy_up() {
	export TXO_FAULT_PROXY=1
	local -a restart=()
	local b missing=0
	for b in $(broker_proxies); do
		curl -fsS -m 2 -o /dev/null "$FAULTPROXY_URL/proxies/$b" 2>/dev/null || missing=1
	done
	if ((missing)) ||
		! grep -q "127.0.0.1:${TXO_MYSQL_PROXY_PORT:-13307}" "${RUN_DIR:-$CHAOS_ROOT/.run}/orderd.yaml" 2>/dev/null; then
		chaos_log "the local stack is not running behind the fault proxy (or it has no proxy for some broker): (re)starting it with TXO_FAULT_PROXY=1"
		mapfile -t restart < <("$DEVSTACK" names fulfillmentd && "$DEVSTACK" names orderd && "$DEVSTACK" names broker)
		"$DEVSTACK" stop "${restart[@]}" faultproxy >&2
	fi
	if ! "$DEVSTACK" status >/dev/null; then
		(cd "$CHAOS_ROOT" && make run) >&2
	fi
	# make run starts the configured replicas only: bring back the others
	# that were stopped above (an earlier replica script started them), so
	# that every orderd the load was set to reach (ORDERD_URLS) serves again.
	local svc
	for svc in "${restart[@]}"; do
		"$DEVSTACK" status "$svc" >/dev/null 2>&1 || "$DEVSTACK" start "$svc" >&2
	done
	# shellcheck disable=SC2046 # one proxy name per line
	fault_clear mysql redis namesrv $(broker_proxies)
}

# broker_proxies: the brokers' proxies, named as the brokers (broker,
# broker-2, ...).
broker_proxies() { "$DEVSTACK" names broker; }

# fault_add PROXY TYPE STREAM ATTRIBUTES: add a toxic (toxiproxy's types:
# timeout, latency, reset_peer, bandwidth, slicer) to one direction of one
# proxy; STREAM is upstream, downstream or both. ATTRIBUTES is JSON.
fault_add() {
	local proxy=$1 type=$2 stream=$3 attrs=$4 s
	local -a streams=("$stream")
	[[ $stream == both ]] && streams=(upstream downstream)
	for s in "${streams[@]}"; do
		curl -fsS -m 5 -o /dev/null -X POST "$FAULTPROXY_URL/proxies/$proxy/toxics" \
			-H 'Content-Type: application/json' \
			-d "{\"name\":\"chaos_${type}_$s\",\"type\":\"$type\",\"stream\":\"$s\",\"toxicity\":1,\"attributes\":$attrs}" ||
			chaos_die "fault proxy: could not add $type/$s to $proxy"
	done
	chaos_log "fault: $proxy $type $stream $attrs"
}

# fault_clear PROXY...: remove every toxic of each proxy and enable it.
fault_clear() {
	local proxy name
	for proxy in "$@"; do
		for name in $(curl -fsS -m 5 "$FAULTPROXY_URL/proxies/$proxy/toxics" 2>/dev/null |
			grep -o '"name":"[^"]*"' | cut -d'"' -f4); do
			curl -fsS -m 5 -o /dev/null -X DELETE "$FAULTPROXY_URL/proxies/$proxy/toxics/$name" ||
				chaos_log "fault proxy: could not remove $name from $proxy"
		done
		fault_enable "$proxy"
	done
}

# fault_disable PROXY / fault_enable PROXY: close the proxy's port and its
# connections (the dependency refuses, as if down) / open it again.
fault_disable() {
	curl -fsS -m 5 -o /dev/null -X POST "$FAULTPROXY_URL/proxies/$1" -d '{"enabled":false}' ||
		chaos_die "fault proxy: could not disable $1"
	chaos_log "fault: $1 refuses connections"
}
fault_enable() {
	curl -fsS -m 5 -o /dev/null -X POST "$FAULTPROXY_URL/proxies/$1" -d '{"enabled":true}' ||
		chaos_log "fault proxy: could not enable $1"
}

# fault_snapshot FILE: orderd's process figures now (goroutines, RSS, open
# files, MySQL and Redis pool connections), as name value lines.
fault_snapshot() {
	curl -fsS -m 5 "$ORDERD_URL/metrics" 2>/dev/null |
		grep -E '^(go_goroutines|process_resident_memory_bytes|process_open_fds|go_sql_open_connections|go_sql_in_use_connections|txorder_redis_pool_connections|txorder_redis_breaker_state|txorder_tx_mysql_breaker_state)[ {]' >"$1" || true
}

# compose_pause SERVICE... / compose_unpause: compose mode's hang: the
# containers' processes are frozen (cgroup freezer) while the kernel keeps
# their connections open, so clients see a peer that stops answering.
compose_pause() { compose pause "$@"; }
compose_unpause() { compose unpause "$@"; }

# hang_targets SERVICE: target_kill / target_restart that hang SERVICE
# (every byte swallowed both ways, connections kept open): its proxy's
# timeout toxic in local mode, docker compose pause in compose mode.
# shellcheck disable=SC2317 # the targets are called by chaos_main
hang_targets() {
	HANG_SERVICE=$1
	case $CHAOS_MODE in
	compose)
		target_kill() { compose_pause "$HANG_SERVICE"; }
		target_restart() { compose_unpause "$HANG_SERVICE"; }
		;;
	*)
		target_kill() { fault_add "$HANG_SERVICE" timeout both '{"timeout":0}'; }
		target_restart() { fault_clear "$HANG_SERVICE"; }
		;;
	esac
}

# compose_env KEY: a value from the repository's .env (compose mode).
compose_env() {
	local line
	line=$(grep -E "^$1=" "$CHAOS_ROOT/.env" 2>/dev/null | tail -n 1) || true
	line=${line#*=}
	line=${line%\"}
	line=${line#\"}
	echo "$line"
}

# credentials: API key and webhook secret for the load and the payments.
credentials() {
	case $CHAOS_MODE in
	local)
		API_KEY=${TXO_API_KEY:-dev-key-change-me}
		WEBHOOK_SECRET=${TXO_WEBHOOK_SECRET:-dev-webhook-secret-change-me-0123456789}
		;;
	compose)
		local keys
		keys=$(compose_env TXORDER_API_KEYS)
		keys=${keys%%,*}
		API_KEY=${keys#*:}
		WEBHOOK_SECRET=$(compose_env TXORDER_WEBHOOK_SECRET)
		if ! dry && [[ -z $API_KEY || -z $WEBHOOK_SECRET ]]; then
			chaos_die "compose mode reads TXORDER_API_KEYS and TXORDER_WEBHOOK_SECRET from .env; set them"
		fi
		;;
	esac
	export TXORDER_PAYMENT__WEBHOOK_SECRET=$WEBHOOK_SECRET
}

# --- measuring -----------------------------------------------------------------

# any_replica_metrics: /metrics of the first orderd that answers.
any_replica_metrics() {
	local url
	for url in ${ORDERD_URLS//,/ }; do
		curl -fsS -m 0.8 "$url/metrics" 2>/dev/null && return 0
	done
	return 1
}

# live_url: the first orderd whose /healthz answers (or the first one).
live_url() {
	local url
	for url in ${ORDERD_URLS//,/ }; do
		if curl -fsS -o /dev/null -m 2 "$url/healthz" 2>/dev/null; then
			echo "$url"
			return 0
		fi
	done
	echo "${ORDERD_URLS%%,*}"
}

# sampler FILE STOPFILE: scrape orderd's fallback depths once a second until
# STOPFILE exists (bounded by CHAOS_MAX_SECONDS). A failed scrape (orderd
# down) writes nothing: the chart shows a gap.
sampler() {
	local out=$1 stop=$2 i t m
	echo "unix_seconds,order_cache_size,spill_pending" >"$out"
	for ((i = 0; i < CHAOS_MAX_SECONDS; i++)); do
		[[ -e $stop ]] && return 0
		t=$(now)
		# The depths are Redis's, the same from any replica: ask the
		# first one that answers.
		if m=$(any_replica_metrics); then
			awk -v t="$t" '
				/^txorder_order_cache_size / { c = $2 }
				/^txorder_spill_depth\{state="pending"\} / { s = $2 }
				END { if (c != "" || s != "") printf "%s,%s,%s\n", t, (c == "" ? 0 : c), (s == "" ? 0 : s) }
			' <<<"$m" >>"$out"
		fi
		sleep 1
	done
}

# --- paying --------------------------------------------------------------------

# statuses FILE: "ID STATUS" for each order id in FILE that orderd shows
# (PENDING_PAYMENT, PAID, CLOSED, or ACCEPTED / QUEUED while held in Redis);
# one curl for all of them, on one kept-alive connection.
statuses() {
	local url
	url=$(live_url)
	sed "s|.*|url = \"$url/v1/orders/&\"|" "$1" |
		curl -sS -m 60 -H "Authorization: Bearer $API_KEY" -w '\n' -K - 2>/dev/null |
		sed -nE 's/.*"id":"([0-9a-f-]+)","status":"([A-Z_]+)".*/\1 \2/p' || true
}

# pay_one ID LOG: pay one order; prints "paid ID" or "retry ID".
pay_one() {
	if "$ORDERTOOL" pay "$1" --url "$PAY_URL" --api-key "$API_KEY" --config "" \
		--txn-id "chaos-$1" >>"$2" 2>&1; then
		echo "paid $1"
	else
		echo "retry $1"
	fi
}

# pay_rest ACCEPTED LOG: pay every accepted order still waiting for a payment,
# except the ids ending in 0-3 (left unpaid on purpose), CHAOS_PAY_PARALLEL at
# a time. Orders still held in Redis (not payable yet) are retried until
# CHAOS_PAY_WAIT runs out. The provider transaction id is derived from the
# order id, so a payment sent twice is a replay, not a second payment.
pay_rest() {
	local accepted=$1 log=$2 deadline=$((SECONDS + CHAOS_PAY_WAIT)) round i j id st todo out
	local -a topay pids
	local -A status
	todo=$(mktemp "${TMPDIR:-/tmp}/chaos-todo.XXXXXX")
	out=$(mktemp "${TMPDIR:-/tmp}/chaos-pay.XXXXXX")
	cp "$accepted" "$todo"
	PAID_LATER=0 LEFT_UNPAID=0 NOT_PAYABLE=0
	for ((round = 1; ; round++)); do
		PAY_URL=$(live_url)
		status=()
		while read -r id st; do
			status[$id]=$st
		done < <(statuses "$todo")
		topay=()
		: >"$out"
		while read -r id || [[ -n $id ]]; do
			[[ -n $id ]] || continue
			case ${status[$id]:-} in
			PAID | CLOSED) ;;
			PENDING_PAYMENT)
				if [[ $id == *[0-3] ]]; then
					LEFT_UNPAID=$((LEFT_UNPAID + 1))
				else
					topay+=("$id")
				fi
				;;
			*) echo "retry $id" >>"$out" ;; # held in Redis, or no answer
			esac
		done <"$todo"
		for ((i = 0; i < ${#topay[@]}; i += CHAOS_PAY_PARALLEL)); do
			pids=()
			for ((j = i; j < i + CHAOS_PAY_PARALLEL && j < ${#topay[@]}; j++)); do
				pay_one "${topay[j]}" "$log" >>"$out" &
				pids+=($!)
			done
			for j in "${pids[@]}"; do
				wait "$j" || true
			done
		done
		PAID_LATER=$((PAID_LATER + $(grep -c '^paid ' "$out" || true)))
		sed -n 's/^retry //p' "$out" >"$todo"
		[[ -s $todo ]] || break
		if ((SECONDS >= deadline)); then
			NOT_PAYABLE=$(wc -l <"$todo")
			chaos_log "pay: $NOT_PAYABLE orders still not payable after ${CHAOS_PAY_WAIT}s (held in Redis?); the audit decides"
			sed 's/^/not payable: /' "$todo" >>"$log"
			break
		fi
		chaos_log "pay: round $round: $(wc -l <"$todo") orders not payable yet (held in Redis?), retrying in 2 s"
		sleep 2
	done
	rm -f "$todo" "$out"
	chaos_log "pay: paid $PAID_LATER more orders; $LEFT_UNPAID left unpaid on purpose"
}

# --- auditing ------------------------------------------------------------------

# audit ACCEPTED OUT: run the audit, JSON to OUT; its exit status.
audit() {
	local accepted=$1 out=$2
	case $CHAOS_MODE in
	local)
		# The configuration devstack.sh wrote for this stack (its ports and
		# secrets), as orderd and fulfillmentd run with it.
		"$ORDERTOOL" audit --config "${RUN_DIR:-$CHAOS_ROOT/.run}/orderd.yaml" \
			--fulfillment-config "${RUN_DIR:-$CHAOS_ROOT/.run}/fulfillmentd.yaml" \
			--accepted "$accepted" --settle "$CHAOS_SETTLE" --json >"$out"
		;;
	compose)
		# MySQL and Redis are not published: audit from inside orderd's
		# container (its image has ordertool), fed the ids on stdin.
		# shellcheck disable=SC2016 # expanded in the container
		if dry; then
			compose exec -T orderd sh -c 'cat >/tmp/chaos-accepted.txt' </dev/null
		else
			compose exec -T orderd sh -c 'cat >/tmp/chaos-accepted.txt' <"$accepted"
		fi
		# shellcheck disable=SC2016
		compose exec -T orderd sh -c 'exec ordertool audit --accepted /tmp/chaos-accepted.txt --settle "$1" --json \
			--fulfillment-dsn "txorder:${TXORDER_MYSQL__PASSWORD}@tcp(${TXORDER_MYSQL__ADDR})/txorder?parseTime=true"' \
			audit "$CHAOS_SETTLE" >"$out"
		;;
	esac
}

# json_num FILE KEY: a top-level number from a JSON file (no jq needed).
json_num() {
	sed -nE "s/^  \"$2\": ([0-9.]+),?$/\1/p" "$1" | head -n 1
}

# json_max SUMMARY KEY: the "max" of a latency object (place_latency_ms,
# pay_latency_ms) in the load summary.
json_max() {
	awk -v k="\"$2\":" 'index($1, k) == 1 { inside = 1; next }
		inside && /"max":/ { gsub(/[^0-9.]/, "", $2); print $2; exit }
		inside && /}/ { print "?"; exit }' "$1"
}

# code_count SUMMARY CODE: how many placements got CODE.
code_count() {
	awk -v k="\"$2\":" '/"place_status_codes"/ { in_codes = 1; next }
		in_codes && /}/ { exit }
		in_codes && index($1, k) == 1 { gsub(/[^0-9]/, "", $2); print $2; found = 1; exit }
		END { if (!found) print 0 }' "$1"
}

# --- the run -------------------------------------------------------------------

# chaos_cleanup: on any exit, stop the sampler and interrupt a running load
# (it still writes its files). Only this run's own children are signalled.
chaos_cleanup() {
	set +e # best effort: one failing step must not skip the rest
	[[ -n ${CHAOS_DIR:-} ]] && touch "$CHAOS_DIR/.stop-sampler"
	if [[ -n ${load_pid:-} ]] && kill -0 "$load_pid" 2>/dev/null; then
		kill -INT "$load_pid" 2>/dev/null || true
		wait "$load_pid" 2>/dev/null || true
	fi
	[[ -n ${sampler_pid:-} ]] && wait "$sampler_pid" 2>/dev/null
	# Interrupted during the outage: leave the stack as it was found.
	if [[ ${TARGET_DOWN:-0} == 1 ]]; then
		TARGET_DOWN=0
		chaos_log "interrupted during the outage: starting the target again"
		target_restart || chaos_log "could not restart the target: start it by hand"
	fi
	return 0
}

# outage_begin LABEL / outage_end: record that LABEL is down from now
# until outage_end, for the chart's red band.
outage_begin() {
	OUTAGE_LABEL=$1
	OUTAGE_FROM=$(now)
}
outage_end() {
	local up
	up=$(now)
	local state=down
	[[ $CHAOS_FAULT == SIGKILL ]] || state=$CHAOS_FAULT
	echo "$OUTAGE_LABEL $state,$OUTAGE_FROM,$up" >>"$CHAOS_DIR/outages.csv"
	chaos_log "$OUTAGE_LABEL back after $(awk -v a="$OUTAGE_FROM" -v b="$up" 'BEGIN { printf "%.1f", b - a }')s"
}

# chaos_main NAME LABEL: the whole run; exits with the audit's status (or
# with CHAOS_EXTRA_VERDICT's, when the script sets that function and the
# audit passed). The calling script defines target_kill and target_restart,
# or target_disrupt.
chaos_main() {
	local name=$1 label=$2 started=$SECONDS
	local dir rc=0 load_rc=0 stop v
	load_pid='' sampler_pid=''
	if ! declare -F target_disrupt >/dev/null && { ! declare -F target_kill >/dev/null || ! declare -F target_restart >/dev/null; }; then
		chaos_die "$name: define target_kill and target_restart (or target_disrupt) before chaos_main"
	fi
	[[ $CHAOS_MODE == local || $CHAOS_MODE == compose ]] ||
		chaos_die "CHAOS_MODE must be local or compose, not '$CHAOS_MODE'"
	if dry && [[ $CHAOS_MODE != compose ]]; then
		chaos_die "CHAOS_DRY_RUN is for compose mode (local mode runs for real)"
	fi
	for v in CHAOS_COUNT CHAOS_DURATION CHAOS_BEFORE CHAOS_OUTAGE CHAOS_PAY_WAIT CHAOS_PAY_PARALLEL CHAOS_CONCURRENCY; do
		[[ ${!v} =~ ^[0-9]+$ ]] || chaos_die "$v must be a whole number, not '${!v}'"
	done
	((CHAOS_PAY_PARALLEL > 0)) || chaos_die "CHAOS_PAY_PARALLEL must be positive"
	((CHAOS_COUNT > 0 && CHAOS_DURATION > 0)) || chaos_die "CHAOS_COUNT and CHAOS_DURATION must be positive (the load is bounded by both)"
	((CHAOS_BEFORE + CHAOS_OUTAGE < CHAOS_DURATION)) ||
		chaos_die "CHAOS_BEFORE + CHAOS_OUTAGE must end before CHAOS_DURATION, or the outage falls after the load"

	dir=$CHAOS_REPORTS/$name-$(date -u +%Y%m%dT%H%M%SZ)
	mkdir -p "$dir"
	CHAOS_DIR=$dir
	# tee ignores INT and TERM (timeout(1) signals the whole process group)
	# so that the cleanup's messages still reach the log.
	exec > >(
		trap '' INT TERM
		exec tee -a "$dir/run.log"
	) 2>&1
	chaos_log "$name ($CHAOS_MODE mode): report in $dir"
	chaos_log "load: $CHAOS_COUNT orders at most in ${CHAOS_DURATION}s at most, ${CHAOS_RATE}/s, concurrency $CHAOS_CONCURRENCY; kill after ${CHAOS_BEFORE}s, outage ${CHAOS_OUTAGE}s"

	stack_up
	credentials
	stop=$dir/.stop-sampler
	if dry; then
		x "$ORDERTOOL" load --url "$ORDERD_URL" --api-key "<from .env>" --count "$CHAOS_COUNT" --duration "${CHAOS_DURATION}s" \
			--rate "$CHAOS_RATE" --concurrency "$CHAOS_CONCURRENCY" --pay "$CHAOS_PAY" --config "" \
			--accepted-out "$dir/accepted.txt" --summary-out "$dir/load-summary.json"
		if declare -F target_disrupt >/dev/null; then
			target_disrupt
		else
			target_kill
			target_restart
		fi
		audit "$dir/accepted.txt" "$dir/audit.json"
		chaos_log "dry run: nothing ran"
		return 0
	fi

	# Where each replica's log stands, so that only the run's lines are kept.
	local -A log_mark=()
	local svc
	if [[ $CHAOS_MODE == local ]]; then
		for svc in $("$DEVSTACK" names orderd) $("$DEVSTACK" names fulfillmentd); do
			log_mark[$svc]=$(wc -l <"${RUN_DIR:-$CHAOS_ROOT/.run}/$svc/$svc.log" 2>/dev/null || echo 0)
		done
	fi

	sampler "$dir/metrics.csv" "$stop" &
	sampler_pid=$!
	# Whatever happens from here on, the sampler stops and the load is
	# interrupted (it still writes its files).
	trap 'chaos_cleanup' EXIT
	# A signal ends the run through the EXIT trap (timeout(1) sends TERM).
	trap 'exit 130' INT
	trap 'exit 143' TERM

	# A payment retried inside the load holds its worker, so during an
	# outage the load would stop placing orders; the pay phase below
	# retries instead.
	local -a retry=()
	if "$ORDERTOOL" load --help 2>&1 | grep -q -- '-pay-retry'; then
		retry=(--pay-retry "$CHAOS_PAY_RETRY")
	fi
	if "$ORDERTOOL" load --help 2>&1 | grep -q -- '-retry-for'; then
		retry+=(--retry-for "$CHAOS_RETRY_FOR")
	fi
	"$ORDERTOOL" load --url "$ORDERD_URLS" --api-key "$API_KEY" --config "" \
		--count "$CHAOS_COUNT" --duration "${CHAOS_DURATION}s" --rate "$CHAOS_RATE" \
		--concurrency "$CHAOS_CONCURRENCY" --pay "$CHAOS_PAY" "${retry[@]}" --timeout 10s \
		--accepted-out "$dir/accepted.txt" --summary-out "$dir/load-summary.json" \
		>"$dir/load.out" 2>&1 &
	load_pid=$!

	sleep "$CHAOS_BEFORE"
	echo "label,from_unix,to_unix" >"$dir/outages.csv"
	if declare -F target_disrupt >/dev/null; then
		target_disrupt
	else
		[[ $CHAOS_FAULT == SIGKILL ]] || fault_snapshot "$dir/before-fault.txt"
		outage_begin "$label"
		chaos_log "$CHAOS_FAULT $label"
		TARGET_DOWN=1
		target_kill
		sleep "$CHAOS_OUTAGE"
		if [[ $CHAOS_FAULT != SIGKILL ]]; then
			fault_snapshot "$dir/at-fault-end.txt"
			chaos_log "ending the fault on $label"
		else
			chaos_log "restarting $label"
		fi
		target_restart
		TARGET_DOWN=0
		outage_end
	fi

	# The load ends by itself (count or duration, each request bounded by
	# its timeout, payments by their retries); the watchdog is for a hung one.
	local deadline=$((SECONDS + CHAOS_DURATION + 60))
	while kill -0 "$load_pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			chaos_log "the load outlived its bounds: interrupting it"
			kill -INT "$load_pid" 2>/dev/null || true
			break
		fi
		sleep 0.5
	done
	wait "$load_pid" || load_rc=$?
	load_pid=
	cat "$dir/load.out"
	((load_rc == 0)) || chaos_log "ordertool load exited $load_rc"
	[[ -s $dir/load-summary.json ]] || chaos_die "the load wrote no summary (see $dir/load.out)"

	pay_rest "$dir/accepted.txt" "$dir/pay.log"

	chaos_log "audit (settle up to $CHAOS_SETTLE)"
	audit "$dir/accepted.txt" "$dir/audit.json" || rc=$?
	touch "$stop"
	wait "$sampler_pid" 2>/dev/null || true
	rm -f "$stop"

	if [[ $CHAOS_MODE == local ]]; then
		for svc in "${!log_mark[@]}"; do
			tail -n +"$((log_mark[$svc] + 1))" "${RUN_DIR:-$CHAOS_ROOT/.run}/$svc/$svc.log" >"$dir/$svc.log" 2>/dev/null || true
		done
	fi
	local what="$label SIGKILLed"
	[[ $CHAOS_FAULT == SIGKILL ]] || what="$CHAOS_FAULT: $label"
	"$ORDERTOOL" report --dir "$dir" --title "$name ($CHAOS_MODE): ${CHAOS_TITLE:-$what for ${CHAOS_OUTAGE}s under load}" >"$dir/report.out" ||
		chaos_log "the chart could not be drawn (the audit's verdict stands)"
	cat "$dir/report.out" 2>/dev/null || true

	local s=$dir/load-summary.json a=$dir/audit.json verdict=PASS extra=''
	if ((rc == 0)) && declare -F chaos_extra_verdict >/dev/null; then
		extra=$(chaos_extra_verdict "$s") || rc=$?
	fi
	((rc == 0)) || verdict=FAIL
	{
		echo "$name ($CHAOS_MODE) $verdict in $((SECONDS - started))s wall time"
		echo "placed $(json_num "$s" placed), accepted $(json_num "$s" accepted):" \
			"201×$(code_count "$s" 201) 202×$(code_count "$s" 202) 200×$(code_count "$s" 200) 503×$(code_count "$s" 503) no-answer×$(code_count "$s" error)" \
			"(final answers; retried $(json_num "$s" retried))"
		# Every attempt, by the replica it went to (ordertool load prints
		# these lines when there are several).
		grep '^replica ' "$dir/load.out" || true
		echo "paid by the load $(json_num "$s" paid), paid afterwards $PAID_LATER, left unpaid on purpose $LEFT_UNPAID, not payable $NOT_PAYABLE"
		echo "audit: paid $(json_num "$a" paid) applied $(json_num "$a" applied)" \
			"lost $(json_num "$a" lost) duplicated $(json_num "$a" duplicated)" \
			"phantom $(json_num "$a" phantom) absent $(json_num "$a" absent) (exit $rc)"
		echo "payment → shipment over $(json_num "$a" payment_to_shipment_count) orders:" \
			"p50 $(json_num "$a" payment_to_shipment_p50_ms) ms, p99 $(json_num "$a" payment_to_shipment_p99_ms) ms," \
			"max $(json_num "$a" payment_to_shipment_max_ms) ms (from the payment's record to the first shipment row)"
		echo "longest placement of the run $(json_max "$s" place_latency_ms) ms (the bound: ${CHAOS_BOUND_SECONDS} s + 1 s);" \
			"longest payment $(json_max "$s" pay_latency_ms) ms"
		grep -h '^recovery' "$dir/report.out" 2>/dev/null || true
		if [[ -s $dir/at-fault-end.txt ]]; then
			echo "orderd at the end of the fault (before it: see before-fault.txt): $(tr '\n' ' ' <"$dir/at-fault-end.txt")"
		fi
		[[ -z $extra ]] || echo "$extra"
		echo "report: $dir/timeline.png  $dir/timeline.html"
	} | tee "$dir/summary.txt"
	if ((rc != 0)); then
		chaos_log "AUDIT FAILED: see $dir/audit.json, orderd.log and fulfillmentd.log there"
	fi
	return "$rc"
}
