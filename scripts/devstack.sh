#!/usr/bin/env bash
# devstack.sh runs the local stack that `make run` and the chaos scripts use
# (MariaDB, Redis, rmqdev's NameServer and brokers, orderd and fulfillmentd
# replicas) from the installed and built binaries, with data, logs and pid
# files under $RUN_DIR (default: .run/ in the repository, which git ignores).
#
#   devstack.sh start [SERVICE...]   start (default: all); running ones are left as they are
#   devstack.sh stop [SERVICE...]    graceful stop (SIGTERM), SIGKILL after TXO_STOP_SECONDS
#                                    (default: all, and any replica still running from an
#                                    earlier start with more replicas)
#   devstack.sh status [SERVICE...]  exit 0 if all are running, 3 otherwise
#   devstack.sh kill SERVICE...      SIGKILL, for chaos tests
#   devstack.sh start-one SERVICE    same as start SERVICE
#   devstack.sh names KIND           the instances of orderd, fulfillmentd or broker, one
#                                    per line (orderd orderd-2 orderd-3): the configured
#                                    ones and any further one running
#   devstack.sh urls                 the orderd replicas' base URLs, comma-separated, the
#                                    same way (for `ordertool load --url`)
#
# Replicas: TXO_ORDERD_REPLICAS (default 1) orderd and
# TXO_FULFILLMENTD_REPLICAS (default 1) fulfillmentd processes share the
# one MariaDB and Redis; TXO_BROKERS (default 2) rmqdev brokers, each its
# own broker group (broker-a, broker-b, ...), register with the one
# NameServer, so half messages, check-backs and consumption are spread
# over both. Instance k of a kind is named KIND for k = 1 (orderd-1 is
# accepted too) and KIND-k above, and listens on:
#   orderd k        127.0.0.1:$TXO_ORDERD_PORT + 2(k-1)   8080, 8082, 8084, ...
#   fulfillmentd k  127.0.0.1:$TXO_FULFILLMENTD_PORT + 2(k-1)  8081, 8083, ...
#   broker k        127.0.0.1:$TXO_BROKER_PORT + 10(k-1)  10911, 10921, ...
# (defaults shown; keep TXO_ORDERD_PORT and TXO_FULFILLMENTD_PORT an odd
# distance apart so the two series never meet). Each orderd replica has its
# own RocketMQ instance name (orderd-tx, orderd-2-tx, ...: the client keeps
# one instance per IP and name), each fulfillmentd too (fulfillmentd,
# fulfillmentd-2, ...). At most 9 of each.
#
# Services: mysql (127.0.0.1:$TXO_MYSQL_PORT, default 3307; database,
# user and password txorder), redis (127.0.0.1:$TXO_REDIS_PORT, default
# 6380; append-only file, fsync on every write; maxmemory
# $TXO_REDIS_MAXMEMORY, default 256mb, noeviction), namesrv and broker (rmqdev,
# 127.0.0.1:$TXO_NAMESRV_PORT and :$TXO_BROKER_PORT, defaults 9876 and 10911)
# orderd (127.0.0.1:$TXO_ORDERD_PORT, default 8080; bin/orderd from
# `make build`, API key $TXO_API_KEY, default dev-key-change-me) and
# fulfillmentd (probes on 127.0.0.1:$TXO_FULFILLMENTD_PORT, default 8081;
# bin/fulfillmentd, the ORDER_PAID consumer, same database as orderd).
#
# Environment: RUN_DIR, TXO_MYSQL_PORT, TXO_REDIS_PORT, TXO_NAMESRV_PORT,
# TXO_BROKER_PORT, TXO_ORDERD_PORT, TXO_FULFILLMENTD_PORT,
# TXO_ORDERD_REPLICAS, TXO_FULFILLMENTD_REPLICAS, TXO_BROKERS, TXO_API_KEY,
# TXO_WEBHOOK_SECRET, TXO_CHECK_INTERVAL, TXO_CHECK_MAX, TXO_REDIS_MAXMEMORY,
# TXO_WAIT_SECONDS (readiness bound, default 60), TXO_STOP_SECONDS
# (graceful stop bound, default 30), TXO_FAULT_PROXY and its ports (below).
#
# Fault proxy: with TXO_FAULT_PROXY=1 a faultproxy service
# (bin/toxiproxy-server, Shopify's toxiproxy, built by `make build` at the
# version go.mod pins) runs its API on 127.0.0.1:$TXO_FAULTPROXY_PORT
# (default 8474) and one proxy per dependency, and orderd and fulfillmentd
# reach every dependency through them: mysql on $TXO_MYSQL_PROXY_PORT
# (default 13307), redis on $TXO_REDIS_PROXY_PORT (16380), namesrv on
# $TXO_NAMESRV_PROXY_PORT (19876) and broker k on $TXO_BROKER_PROXY_PORT +
# 10(k-1) (20911, 20921, ...), which that broker advertises in its routes
# (rmqdev --advertise, a Java broker's brokerIP1), so clients reach it
# through the proxy too (keep the two series apart: the defaults are 10000
# apart). Each proxy is named as its service (mysql, redis, namesrv,
# broker, broker-2, ...).
# The chaos scripts chaos/hang-*.sh, slow-*.sh and reset-*.sh add and
# remove toxics through the API (chaos/lib.sh: fault_add, fault_clear).
#
# Configuration: start writes $RUN_DIR/orderd.yaml and
# $RUN_DIR/fulfillmentd.yaml (the ports and settings above; no secret) and
# the local secrets under $RUN_DIR/secrets/ (mode 0600), which those files
# name in their *_file settings. orderd and fulfillmentd run with them (each
# replica with its own port and instance name on top, from the
# environment), and bin/ordertool reads them by default when run from the
# repository root, so `bin/ordertool audit`, `dlq`, `spill` and `pay` need
# no environment (they reach replica 1; `ordertool load --url
# "$(scripts/devstack.sh urls)"` reaches them all).
#
# Adding a service: write NAME_launch, NAME_ready and NAME_describe (and
# NAME_init if it needs one-time setup), give it NAME_bin, and add NAME to
# services(). Each gets the instance name (e.g. orderd-2) as $1. The
# generic start/stop/kill/status below do the rest.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${RUN_DIR:-$ROOT/.run}
TXO_MYSQL_PORT=${TXO_MYSQL_PORT:-3307}
TXO_REDIS_PORT=${TXO_REDIS_PORT:-6380}
TXO_NAMESRV_PORT=${TXO_NAMESRV_PORT:-9876}
TXO_BROKER_PORT=${TXO_BROKER_PORT:-10911}
TXO_ORDERD_PORT=${TXO_ORDERD_PORT:-8080}
TXO_FULFILLMENTD_PORT=${TXO_FULFILLMENTD_PORT:-8081}
TXO_ORDERD_REPLICAS=${TXO_ORDERD_REPLICAS:-1}
TXO_FULFILLMENTD_REPLICAS=${TXO_FULFILLMENTD_REPLICAS:-1}
TXO_BROKERS=${TXO_BROKERS:-2}
# Transaction checks of the local broker, and what orderd is told about
# them: a check every 5 s (a real broker: 30 s), so a paid order's event is
# out within seconds; 100 checks cover the 5 min payment window.
TXO_CHECK_INTERVAL=${TXO_CHECK_INTERVAL:-5s}
TXO_CHECK_MAX=${TXO_CHECK_MAX:-100}
# The development webhook secret; orderd (production mode) needs a real one.
TXO_WEBHOOK_SECRET=${TXO_WEBHOOK_SECRET:-dev-webhook-secret-change-me-0123456789}
# The development API key; orderd refuses it in production mode.
TXO_API_KEY=${TXO_API_KEY:-dev-key-change-me}
# Redis's memory limit: past it Redis refuses writes (noeviction), as in
# docker-compose.yml; orderd's txorder_redis_memory_* metrics show the use.
TXO_REDIS_MAXMEMORY=${TXO_REDIS_MAXMEMORY:-256mb}
TXO_WAIT_SECONDS=${TXO_WAIT_SECONDS:-60}
TXO_STOP_SECONDS=${TXO_STOP_SECONDS:-30}
# The fault proxy (see above); its defaults collide with no default port.
TXO_FAULT_PROXY=${TXO_FAULT_PROXY:-0}
TXO_FAULTPROXY_PORT=${TXO_FAULTPROXY_PORT:-8474}
TXO_MYSQL_PROXY_PORT=${TXO_MYSQL_PROXY_PORT:-13307}
TXO_REDIS_PROXY_PORT=${TXO_REDIS_PROXY_PORT:-16380}
TXO_NAMESRV_PROXY_PORT=${TXO_NAMESRV_PROXY_PORT:-19876}
TXO_BROKER_PROXY_PORT=${TXO_BROKER_PROXY_PORT:-20911}

# The kinds of service that run as several instances, and their counts.
REPLICATED=(broker orderd fulfillmentd)

die() {
	echo "devstack: $*" >&2
	exit 1
}

for v in TXO_ORDERD_REPLICAS TXO_FULFILLMENTD_REPLICAS TXO_BROKERS; do
	[[ ${!v} =~ ^[1-9]$ ]] || die "$v must be 1 to 9, not '${!v}'"
done

# replicas KIND: how many instances of KIND are configured.
replicas() {
	case $1 in
	broker) echo "$TXO_BROKERS" ;;
	orderd) echo "$TXO_ORDERD_REPLICAS" ;;
	fulfillmentd) echo "$TXO_FULFILLMENTD_REPLICAS" ;;
	*) echo 1 ;;
	esac
}

# instance_name KIND K: KIND for the first instance, KIND-K for the others.
instance_name() {
	if (($2 == 1)); then echo "$1"; else echo "$1-$2"; fi
}

# names KIND: the configured instances of KIND.
names() {
	local k
	for ((k = 1; k <= $(replicas "$1"); k++)); do
		instance_name "$1" "$k"
	done
}

# running_names KIND: the configured instances of KIND, and any further one
# that is running (started with a larger TXO_*_REPLICAS), so that `urls`
# run without the variable still lists every replica `make run` started.
running_names() {
	local k svc
	names "$1"
	for ((k = $(replicas "$1") + 1; k <= 9; k++)); do
		svc=$(instance_name "$1" "$k")
		if svc_pid "$svc" >/dev/null; then
			echo "$svc"
		fi
	done
}

# services: every configured instance, in start order.
services() {
	printf "%s\n" mysql redis namesrv
	# The fault proxy starts before the brokers, which advertise it.
	[[ $TXO_FAULT_PROXY == 1 ]] && echo faultproxy
	names broker
	names orderd
	names fulfillmentd
}

# svc_kind SVC: orderd for orderd-2; svc_index SVC: 2 for orderd-2, 1 for orderd.
svc_kind() { echo "${1%-[1-9]}"; }
svc_index() {
	if [[ $1 =~ -([1-9])$ ]]; then echo "${BASH_REMATCH[1]}"; else echo 1; fi
}

# canonical SVC: orderd-1 is orderd.
canonical() {
	if [[ $1 == *-1 ]]; then echo "${1%-1}"; else echo "$1"; fi
}

# svc_port SVC: the port the instance listens on (empty for none).
svc_port() {
	local k
	k=$(svc_index "$1")
	case $(svc_kind "$1") in
	mysql) echo "$TXO_MYSQL_PORT" ;;
	redis) echo "$TXO_REDIS_PORT" ;;
	namesrv) echo "$TXO_NAMESRV_PORT" ;;
	faultproxy) echo "$TXO_FAULTPROXY_PORT" ;;
	broker) echo $((TXO_BROKER_PORT + 10 * (k - 1))) ;;
	orderd) echo $((TXO_ORDERD_PORT + 2 * (k - 1))) ;;
	fulfillmentd) echo $((TXO_FULFILLMENTD_PORT + 2 * (k - 1))) ;;
	esac
}

# orderd_urls: the orderd replicas' base URLs (running_names), comma-separated.
orderd_urls() {
	local svc out=()
	for svc in $(running_names orderd); do
		out+=("http://127.0.0.1:$(svc_port "$svc")")
	done
	(IFS=,; echo "${out[*]}")
}

# find_bin NAME PACKAGE: path of NAME in PATH, /usr/sbin or /usr/bin.
find_bin() {
	local name=$1 pkg=$2 dir
	if command -v "$name" >/dev/null 2>&1; then
		command -v "$name"
		return
	fi
	for dir in /usr/sbin /usr/bin /usr/local/sbin /usr/local/bin; do
		if [[ -x $dir/$name ]]; then
			echo "$dir/$name"
			return
		fi
	done
	die "$name not found in PATH, /usr/sbin or /usr/bin: install it with: apt-get install -y $pkg (or scripts/install-deps.sh)"
}

# alive PID: the process exists and is not a zombie.
alive() {
	local pid=$1 state
	[[ -n $pid ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	if [[ -r /proc/$pid/stat ]]; then
		state=$(sed -E 's/.*\) (.).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
		[[ $state != Z ]]
	fi
}

svc_dir() { echo "$RUN_DIR/$1"; }
svc_pidfile() { echo "$RUN_DIR/$1/$1.pid"; }
svc_log() { echo "$RUN_DIR/$1/$1.log"; }

# svc_pid SVC: pid of the running service, or nothing (and status 1).
svc_pid() {
	local pidfile pid comm bin
	pidfile=$(svc_pidfile "$1")
	[[ -r $pidfile ]] || return 1
	pid=$(<"$pidfile")
	alive "$pid" || return 1
	# Guard against a recycled pid: the process must be the service's binary.
	if [[ -r /proc/$pid/comm ]]; then
		comm=$(<"/proc/$pid/comm")
		bin=$(basename "$("$(svc_kind "$1")_bin")")
		# The kernel keeps the first 15 characters (toxiproxy-serve).
		[[ $comm == "${bin:0:15}" ]] || return 1
	fi
	echo "$pid"
}

port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

log_tail() {
	local log
	log=$(svc_log "$1")
	echo "--- last lines of $log ---" >&2
	tail -n 30 "$log" >&2 2>/dev/null || true
}

start_service() {
	local svc=$1 pid log deadline kind port
	kind=$(svc_kind "$svc")
	if pid=$(svc_pid "$svc"); then
		echo "$svc: already running (pid $pid)"
		"${kind}_describe" "$svc"
		return 0
	fi
	mkdir -p "$(svc_dir "$svc")"
	if declare -F "${kind}_init" >/dev/null; then
		"${kind}_init" "$svc"
	fi
	port=$(svc_port "$svc")
	if [[ -n $port ]] && port_open "$port"; then
		die "$svc: 127.0.0.1:$port is in use by another process; stop it or change the TXO_*_PORT variables (see the header of $0)"
	fi
	log=$(svc_log "$svc")
	echo "=== devstack $(date -u +%FT%TZ) start $svc" >>"$log"
	# NAME_launch execs the server under setsid in this background subshell,
	# so $! is the server's pid and it outlives this script and ignores ^C.
	"${kind}_launch" "$svc" >>"$log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$(svc_pidfile "$svc")"
	deadline=$((SECONDS + TXO_WAIT_SECONDS))
	until "${kind}_ready" "$svc"; do
		if ! alive "$pid"; then
			log_tail "$svc"
			die "$svc: exited during start-up"
		fi
		if ((SECONDS >= deadline)); then
			log_tail "$svc"
			die "$svc: not ready after ${TXO_WAIT_SECONDS}s (pid $pid still running; see the log)"
		fi
		sleep 0.1
	done
	echo "$svc: started (pid $pid)"
	"${kind}_describe" "$svc"
}

# wait_gone SVC PID SECONDS: wait until PID has exited.
wait_gone() {
	local pid=$2 deadline=$((SECONDS + $3))
	while alive "$pid"; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

stop_service() {
	local svc=$1 pid
	if ! pid=$(svc_pid "$svc"); then
		echo "$svc: not running"
		rm -f "$(svc_pidfile "$svc")"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_gone "$svc" "$pid" "$TXO_STOP_SECONDS"; then
		echo "$svc: still running ${TXO_STOP_SECONDS}s after SIGTERM, sending SIGKILL" >&2
		kill -KILL "$pid" 2>/dev/null || true
		wait_gone "$svc" "$pid" 30 || die "$svc: pid $pid survived SIGKILL"
	fi
	rm -f "$(svc_pidfile "$svc")"
	echo "$svc: stopped"
}

kill_service() {
	local svc=$1 pid
	if ! pid=$(svc_pid "$svc"); then
		echo "$svc: not running"
		return 0
	fi
	kill -KILL "$pid" 2>/dev/null || true
	wait_gone "$svc" "$pid" 30 || die "$svc: pid $pid survived SIGKILL"
	rm -f "$(svc_pidfile "$svc")"
	echo "$svc: killed (pid $pid)"
}

status_service() {
	local svc=$1 pid
	if pid=$(svc_pid "$svc"); then
		echo "$svc: running (pid $pid)"
		"$(svc_kind "$svc")_describe" "$svc"
		return 0
	fi
	echo "$svc: stopped"
	return 3
}

# --- mysql: mariadbd --------------------------------------------------------

MYSQL_USER=txorder
MYSQL_PASSWORD=txorder
MYSQL_DATABASE=txorder

mysql_bin() { find_bin mariadbd mariadb-server; }
mysql_datadir() { echo "$RUN_DIR/mysql/data"; }

# mysql_socket: the unix socket, in the run dir unless that path is too long
# for a socket address.
mysql_socket() {
	local s="$RUN_DIR/mysql/mysqld.sock"
	if ((${#s} > 100)); then
		s="${TMPDIR:-/tmp}/txorder-devstack-$(id -u)-$TXO_MYSQL_PORT.sock"
	fi
	echo "$s"
}

mysql_user_args() {
	if [[ $(id -u) -eq 0 ]]; then echo "--user=root"; fi
}

# mysql_init: on first start, create the data dir with the system tables,
# the txorder database and the txorder user. It is built aside and renamed,
# so an interrupted init is simply redone.
mysql_init() {
	local data tmp install_db bin log
	data=$(mysql_datadir)
	[[ -d $data/mysql ]] && return 0
	bin=$(mysql_bin)
	install_db=$(command -v mariadb-install-db 2>/dev/null || true)
	[[ -n $install_db ]] || install_db=$(find_bin mysql_install_db mariadb-server)
	log=$(svc_log mysql)
	tmp="$data.init"
	rm -rf "$tmp"
	echo "mysql: initialising $data"
	# shellcheck disable=SC2046 # mysql_user_args is zero or one word
	if ! "$install_db" --no-defaults --datadir="$tmp" $(mysql_user_args) \
		--skip-test-db --skip-name-resolve >>"$log" 2>&1; then
		log_tail mysql
		die "mysql: mariadb-install-db failed"
	fi
	# Bootstrap runs with grant tables off; FLUSH PRIVILEGES turns them on so
	# that CREATE USER works.
	# shellcheck disable=SC2046
	if ! "$bin" --no-defaults --bootstrap --datadir="$tmp" $(mysql_user_args) >>"$log" 2>&1 <<SQL; then
FLUSH PRIVILEGES;
DELETE FROM mysql.global_priv WHERE User = '';
DELETE FROM mysql.proxies_priv WHERE Host <> 'localhost';
CREATE DATABASE $MYSQL_DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;
CREATE USER '$MYSQL_USER'@'%' IDENTIFIED BY '$MYSQL_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$MYSQL_USER'@'%' WITH GRANT OPTION;
CREATE USER '$MYSQL_USER'@'localhost' IDENTIFIED BY '$MYSQL_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$MYSQL_USER'@'localhost' WITH GRANT OPTION;
SQL
		log_tail mysql
		die "mysql: bootstrap SQL failed"
	fi
	mv "$tmp" "$data"
}

mysql_launch() {
	local dir
	dir=$(svc_dir mysql)
	mkdir -p "$dir/tmp"
	# --no-defaults first: nothing from /etc/mysql or ~/.my.cnf. Durability as
	# in production: redo log flushed at every commit, binary log off.
	# shellcheck disable=SC2046
	exec setsid "$(mysql_bin)" --no-defaults \
		--datadir="$(mysql_datadir)" \
		--tmpdir="$dir/tmp" \
		--socket="$(mysql_socket)" \
		--pid-file="$(svc_pidfile mysql)" \
		--port="$TXO_MYSQL_PORT" \
		--bind-address=127.0.0.1 \
		--skip-name-resolve \
		--innodb-flush-log-at-trx-commit=1 \
		--character-set-server=utf8mb4 \
		--collation-server=utf8mb4_general_ci \
		--default-time-zone=+00:00 \
		$(mysql_user_args)
}

mysql_ready() {
	local client
	client=$(command -v mariadb 2>/dev/null || command -v mysql 2>/dev/null) ||
		die "mysql: the mariadb client is missing: install it with: apt-get install -y mariadb-client"
	"$client" --no-defaults --protocol=tcp -h 127.0.0.1 -P "$TXO_MYSQL_PORT" \
		-u "$MYSQL_USER" --password="$MYSQL_PASSWORD" --connect-timeout=1 \
		-e 'SELECT 1' "$MYSQL_DATABASE" >/dev/null 2>&1
}

mysql_describe() {
	echo "  mysql: 127.0.0.1:$TXO_MYSQL_PORT  dsn $MYSQL_USER:$MYSQL_PASSWORD@tcp(127.0.0.1:$TXO_MYSQL_PORT)/$MYSQL_DATABASE?parseTime=true  log $(svc_log mysql)"
}

# --- redis: redis-server ----------------------------------------------------

redis_bin() { find_bin redis-server redis-server; }

redis_launch() {
	# No config file: every setting on the command line. Every write is in
	# the append-only file and fsynced; no RDB snapshots.
	exec setsid "$(redis_bin)" \
		--port "$TXO_REDIS_PORT" \
		--bind 127.0.0.1 \
		--dir "$(svc_dir redis)" \
		--appendonly yes \
		--appendfsync always \
		--maxmemory "$TXO_REDIS_MAXMEMORY" \
		--maxmemory-policy noeviction \
		--save "" \
		--daemonize no \
		--logfile ""
}

# redis_ready: PING answers PONG (not LOADING) on a bash /dev/tcp socket,
# so that redis-cli is not needed.
redis_ready() (
	exec 3<>"/dev/tcp/127.0.0.1/$TXO_REDIS_PORT" || exit 1
	printf 'PING\r\n' >&3
	IFS= read -r -t 1 reply <&3 || exit 1
	[[ $reply == +PONG* ]]
) 2>/dev/null

redis_describe() {
	echo "  redis: 127.0.0.1:$TXO_REDIS_PORT  addr 127.0.0.1:$TXO_REDIS_PORT  maxmemory $TXO_REDIS_MAXMEMORY (noeviction)  log $(svc_log redis)"
}

# --- namesrv, broker: rmqdev's in-memory RocketMQ, as two processes ---------
# Separate processes so that chaos scripts can kill the NameServer alone. The
# broker registers with it every 10 s, like a real broker (30 s there).

rmqdev_bin() {
	[[ -x $ROOT/bin/rmqdev ]] || die "rmqdev: $ROOT/bin/rmqdev is missing: run make build"
	echo "$ROOT/bin/rmqdev"
}
namesrv_bin() { rmqdev_bin; }
broker_bin() { rmqdev_bin; }

namesrv_launch() {
	exec setsid "$(namesrv_bin)" namesrv --addr "127.0.0.1:$TXO_NAMESRV_PORT"
}

# broker_group SVC: broker-a for broker, broker-b for broker-2, ...
broker_group() {
	local letters=abcdefghi
	echo "broker-${letters:$(($(svc_index "$1") - 1)):1}"
}

broker_launch() {
	local advertise=()
	if [[ $TXO_FAULT_PROXY == 1 ]]; then
		advertise=(--advertise "127.0.0.1:$(broker_proxy_port "$1")")
	fi
	exec setsid "$(broker_bin)" broker --addr "127.0.0.1:$(svc_port "$1")" "${advertise[@]}" \
		--broker-name "$(broker_group "$1")" \
		--namesrv "127.0.0.1:$TXO_NAMESRV_PORT" --register-interval 10s \
		--check-interval "$TXO_CHECK_INTERVAL" --check-max "$TXO_CHECK_MAX" \
		--topics ORDER_PAID:4
}

namesrv_ready() { port_open "$TXO_NAMESRV_PORT"; }
broker_ready() { port_open "$(svc_port "$1")"; }

namesrv_describe() {
	echo "  namesrv: 127.0.0.1:$TXO_NAMESRV_PORT (rmqdev, in memory)  log $(svc_log namesrv)"
}
broker_describe() {
	local via=""
	[[ $TXO_FAULT_PROXY == 1 ]] && via=" advertised as 127.0.0.1:$(broker_proxy_port "$1") (the fault proxy)"
	echo "  $1: 127.0.0.1:$(svc_port "$1")$via group $(broker_group "$1") (rmqdev, in memory; checks every $TXO_CHECK_INTERVAL)  log $(svc_log "$1")"
}

# broker_proxy_port SVC: the fault proxy's port in front of broker SVC
# ($TXO_BROKER_PROXY_PORT + 10(k-1), as the brokers' own ports).
broker_proxy_port() { echo $((TXO_BROKER_PROXY_PORT + 10 * ($(svc_index "$1") - 1))); }

# --- faultproxy: toxiproxy-server in front of every dependency (opt-in) ----

faultproxy_bin() {
	[[ -x $ROOT/bin/toxiproxy-server ]] || die "faultproxy: $ROOT/bin/toxiproxy-server is missing: run make build"
	echo "$ROOT/bin/toxiproxy-server"
}

# faultproxy_init: the proxies, loaded by the server at start (-config).
# One per broker too, named as the broker (broker, broker-2, ...).
faultproxy_init() {
	local b
	{
		echo "["
		echo "  {\"name\": \"mysql\", \"listen\": \"127.0.0.1:$TXO_MYSQL_PROXY_PORT\", \"upstream\": \"127.0.0.1:$TXO_MYSQL_PORT\", \"enabled\": true},"
		echo "  {\"name\": \"redis\", \"listen\": \"127.0.0.1:$TXO_REDIS_PROXY_PORT\", \"upstream\": \"127.0.0.1:$TXO_REDIS_PORT\", \"enabled\": true},"
		echo "  {\"name\": \"namesrv\", \"listen\": \"127.0.0.1:$TXO_NAMESRV_PROXY_PORT\", \"upstream\": \"127.0.0.1:$TXO_NAMESRV_PORT\", \"enabled\": true}"
		for b in $(names broker); do
			echo "  ,{\"name\": \"$b\", \"listen\": \"127.0.0.1:$(broker_proxy_port "$b")\", \"upstream\": \"127.0.0.1:$(svc_port "$b")\", \"enabled\": true}"
		done
		echo "]"
	} >"$(svc_dir faultproxy)/proxies.json"
}

faultproxy_launch() {
	# info: one line per connection and toxic change, not per chunk.
	exec setsid env LOG_LEVEL=info "$(faultproxy_bin)" -host 127.0.0.1 -port "$TXO_FAULTPROXY_PORT" \
		-config "$(svc_dir faultproxy)/proxies.json"
}

# faultproxy_ready: the API and every proxy listen.
faultproxy_ready() {
	local port b
	for port in "$TXO_FAULTPROXY_PORT" "$TXO_MYSQL_PROXY_PORT" "$TXO_REDIS_PROXY_PORT" "$TXO_NAMESRV_PROXY_PORT"; do
		port_open "$port" || return 1
	done
	for b in $(names broker); do
		port_open "$(broker_proxy_port "$b")" || return 1
	done
}

faultproxy_describe() {
	echo "  faultproxy: API http://127.0.0.1:$TXO_FAULTPROXY_PORT/proxies; mysql :$TXO_MYSQL_PROXY_PORT redis :$TXO_REDIS_PROXY_PORT namesrv :$TXO_NAMESRV_PROXY_PORT brokers from :$TXO_BROKER_PROXY_PORT  log $(svc_log faultproxy)"
}

# dep_port NAME: the port orderd and fulfillmentd use for dependency NAME:
# its proxy's with TXO_FAULT_PROXY=1, else its own.
dep_port() {
	local own="TXO_${1^^}_PORT" proxied="TXO_${1^^}_PROXY_PORT"
	if [[ $TXO_FAULT_PROXY == 1 ]]; then echo "${!proxied}"; else echo "${!own}"; fi
}

# --- orderd: the order service (built by `make build` into bin/) -----------

orderd_bin() {
	[[ -x $ROOT/bin/orderd ]] || die "orderd: $ROOT/bin/orderd is missing: run make build"
	echo "$ROOT/bin/orderd"
}

orderd_init() { write_config; }

orderd_launch() {
	# $RUN_DIR/orderd.yaml (write_config), which bin/ordertool reads too;
	# each replica has its own port and RocketMQ instance name on top. The
	# replicas start one after the other, so migrate_on_start never runs
	# twice at once.
	exec setsid env \
		TXORDER_HTTP__ADDR="127.0.0.1:$(svc_port "$1")" \
		TXORDER_ROCKETMQ__INSTANCE_NAME="$1-tx" \
		"$(orderd_bin)" --config "$RUN_DIR/orderd.yaml"
}

orderd_ready() (
	exec 3<>"/dev/tcp/127.0.0.1/$(svc_port "$1")" || exit 1
	printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
	IFS= read -r -t 1 status <&3 || exit 1
	[[ $status == "HTTP/1."?" 200"* ]]
) 2>/dev/null

orderd_describe() {
	echo "  $1: http://127.0.0.1:$(svc_port "$1")  (API key $TXO_API_KEY; instance $1-tx)  log $(svc_log "$1")"
}

# --- fulfillmentd: the ORDER_PAID consumer (built by `make build`) ---------

fulfillmentd_bin() {
	[[ -x $ROOT/bin/fulfillmentd ]] || die "fulfillmentd: $ROOT/bin/fulfillmentd is missing: run make build"
	echo "$ROOT/bin/fulfillmentd"
}

fulfillmentd_init() { write_config; }

fulfillmentd_launch() {
	# $RUN_DIR/fulfillmentd.yaml (write_config): the shipments live in
	# orderd's database. Each replica has its own port and instance name.
	exec setsid env \
		TXORDER_FULFILLMENT__HTTP__ADDR="127.0.0.1:$(svc_port "$1")" \
		TXORDER_FULFILLMENT__ROCKETMQ__INSTANCE_NAME="$1" \
		"$(fulfillmentd_bin)" --config "$RUN_DIR/fulfillmentd.yaml"
}

fulfillmentd_ready() (
	exec 3<>"/dev/tcp/127.0.0.1/$(svc_port "$1")" || exit 1
	printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
	IFS= read -r -t 1 status <&3 || exit 1
	[[ $status == "HTTP/1."?" 200"* ]]
) 2>/dev/null

fulfillmentd_describe() {
	echo "  $1: http://127.0.0.1:$(svc_port "$1")/readyz (metrics /metrics; dead letters: bin/ordertool dlq list)  log $(svc_log "$1")"
}

# --- configuration of orderd, fulfillmentd and bin/ordertool ----------------

# write_secret NAME VALUE: $RUN_DIR/secrets/NAME, readable by this user only.
write_secret() {
	local dir="$RUN_DIR/secrets"
	mkdir -p "$dir"
	chmod 700 "$dir"
	(umask 077 && printf '%s\n' "$2" >"$dir/$1.tmp") && mv "$dir/$1.tmp" "$dir/$1"
}

# write_config: the local stack's configuration files. Only what differs
# from the shipped defaults (configs/*.yaml documents them) is written;
# secrets are referenced through *_file settings, never written into them.
write_config() {
	local secrets="$RUN_DIR/secrets"
	write_secret mysql-password "$MYSQL_PASSWORD"
	write_secret api-keys "demo:$TXO_API_KEY"
	write_secret webhook-secret "$TXO_WEBHOOK_SECRET"
	cat >"$RUN_DIR/orderd.yaml.tmp" <<YAML
# Written by scripts/devstack.sh for the local stack (make run); rewritten
# at every start. orderd runs with it; bin/ordertool reads it by default.
# Everything not set here is the default of configs/orderd.yaml.
mode: development
http:
  addr: 127.0.0.1:$TXO_ORDERD_PORT
mysql:
  addr: 127.0.0.1:$(dep_port mysql)
  user: $MYSQL_USER
  database: $MYSQL_DATABASE
  password_file: $secrets/mysql-password
redis:
  addr: 127.0.0.1:$(dep_port redis)
rocketmq:
  name_servers: [127.0.0.1:$(dep_port namesrv)]
  check_interval: $TXO_CHECK_INTERVAL
  check_max: $TXO_CHECK_MAX
auth:
  api_keys_file: $secrets/api-keys
payment:
  webhook_secret_file: $secrets/webhook-secret
YAML
	mv "$RUN_DIR/orderd.yaml.tmp" "$RUN_DIR/orderd.yaml"
	cat >"$RUN_DIR/fulfillmentd.yaml.tmp" <<YAML
# Written by scripts/devstack.sh for the local stack (make run); rewritten
# at every start. fulfillmentd runs with it; bin/ordertool reads it by
# default. Everything not set here is the default of configs/fulfillmentd.yaml.
http:
  addr: 127.0.0.1:$TXO_FULFILLMENTD_PORT
mysql:
  addr: 127.0.0.1:$(dep_port mysql)
  user: $MYSQL_USER
  database: $MYSQL_DATABASE
  password_file: $secrets/mysql-password
rocketmq:
  name_servers: [127.0.0.1:$(dep_port namesrv)]
YAML
	mv "$RUN_DIR/fulfillmentd.yaml.tmp" "$RUN_DIR/fulfillmentd.yaml"
}

# --- command line -----------------------------------------------------------

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

# check_services SVC...: prints the canonical names, or dies on an unknown one.
check_services() {
	local svc kind
	for svc in "$@"; do
		svc=$(canonical "$svc")
		kind=$(svc_kind "$svc")
		case $kind in
		mysql | redis | namesrv | faultproxy)
			[[ $svc == "$kind" ]] || die "unknown service '$svc': $kind has one instance"
			;;
		broker | orderd | fulfillmentd) ;;
		*) die "unknown service '$svc' (known: $(services | tr '\n' ' ')faultproxy, and KIND-k for k up to 9)" ;;
		esac
		echo "$svc"
	done
}

# leftovers: instances beyond the configured counts that still have a pid
# file (started earlier with more replicas), so that stop stops them too.
leftovers() {
	local kind k svc
	for kind in "${REPLICATED[@]}"; do
		for ((k = $(replicas "$kind") + 1; k <= 9; k++)); do
			svc=$(instance_name "$kind" "$k")
			[[ -e $(svc_pidfile "$svc") ]] && echo "$svc"
		done
	done
	# A fault proxy from an earlier start with TXO_FAULT_PROXY=1.
	[[ $TXO_FAULT_PROXY != 1 && -e $(svc_pidfile faultproxy) ]] && echo faultproxy
	return 0
}

main() {
	local cmd=${1:-} rc=0 svc
	local -a list
	shift || true
	case $cmd in
	start | stop | status)
		if (($# > 0)); then
			mapfile -t list < <(check_services "$@")
			((${#list[@]} == $#)) || exit 1
		else
			mapfile -t list < <(services)
			[[ $cmd == start ]] || mapfile -t -O "${#list[@]}" list < <(leftovers)
		fi
		mkdir -p "$RUN_DIR"
		if [[ $cmd == stop ]]; then
			# Stop in reverse order of start.
			local i
			for ((i = ${#list[@]} - 1; i >= 0; i--)); do
				stop_service "${list[i]}"
			done
			return 0
		fi
		for svc in "${list[@]}"; do
			"${cmd}_service" "$svc" || rc=$?
		done
		return "$rc"
		;;
	start-one)
		(($# == 1)) || die "usage: devstack.sh start-one SERVICE"
		svc=$(check_services "$1") || exit 1
		mkdir -p "$RUN_DIR"
		start_service "$svc"
		;;
	kill)
		(($# > 0)) || die "usage: devstack.sh kill SERVICE..."
		mapfile -t list < <(check_services "$@")
		((${#list[@]} == $#)) || exit 1
		for svc in "${list[@]}"; do
			kill_service "$svc"
		done
		;;
	names)
		(($# == 1)) || die "usage: devstack.sh names orderd|fulfillmentd|broker"
		running_names "$1"
		;;
	urls)
		orderd_urls
		;;
	-h | --help | help)
		usage
		;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
