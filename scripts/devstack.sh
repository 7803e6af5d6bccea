#!/usr/bin/env bash
# devstack.sh runs the local stack that `make run` and the chaos scripts use
# (MariaDB, Redis, rmqdev's NameServer and broker, orderd) from the installed
# and built binaries, with data, logs and pid files
# under $RUN_DIR (default: .run/ in the repository, which git ignores).
#
#   devstack.sh start [SERVICE...]   start (default: all); running ones are left as they are
#   devstack.sh stop [SERVICE...]    graceful stop (SIGTERM), SIGKILL after TXO_STOP_SECONDS
#   devstack.sh status [SERVICE...]  exit 0 if all are running, 3 otherwise
#   devstack.sh kill SERVICE...      SIGKILL, for chaos tests
#   devstack.sh start-one SERVICE    same as start SERVICE
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
# TXO_BROKER_PORT, TXO_ORDERD_PORT, TXO_FULFILLMENTD_PORT, TXO_API_KEY,
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
# $TXO_NAMESRV_PROXY_PORT (19876) and the broker on $TXO_BROKER_PROXY_PORT
# (20911), which the broker advertises in its routes (rmqdev --advertise,
# a Java broker's brokerIP1), so clients reach it through the proxy too.
# The chaos scripts chaos/hang-*.sh, slow-*.sh and reset-*.sh add and
# remove toxics through the API (chaos/lib.sh: fault_add, fault_clear).
#
# Configuration: start writes $RUN_DIR/orderd.yaml and
# $RUN_DIR/fulfillmentd.yaml (the ports and settings above; no secret) and
# the local secrets under $RUN_DIR/secrets/ (mode 0600), which those files
# name in their *_file settings. orderd and fulfillmentd run with them, and
# bin/ordertool reads them by default when run from the repository root, so
# `bin/ordertool audit`, `dlq`, `spill` and `pay` need no environment.
#
# Adding a service: write NAME_launch, NAME_ready and NAME_describe (and
# NAME_init if it needs one-time setup), give it NAME_bin, and append NAME
# to SERVICES. The generic start/stop/kill/status below do the rest.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${RUN_DIR:-$ROOT/.run}
TXO_MYSQL_PORT=${TXO_MYSQL_PORT:-3307}
TXO_REDIS_PORT=${TXO_REDIS_PORT:-6380}
TXO_NAMESRV_PORT=${TXO_NAMESRV_PORT:-9876}
TXO_BROKER_PORT=${TXO_BROKER_PORT:-10911}
TXO_ORDERD_PORT=${TXO_ORDERD_PORT:-8080}
TXO_FULFILLMENTD_PORT=${TXO_FULFILLMENTD_PORT:-8081}
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

# Start order. The fault proxy, when used, starts before the broker, which
# advertises it.
if [[ $TXO_FAULT_PROXY == 1 ]]; then
	SERVICES=(mysql redis namesrv faultproxy broker orderd fulfillmentd)
else
	SERVICES=(mysql redis namesrv broker orderd fulfillmentd)
fi
# Every service stop may find running (a fault proxy from an earlier start).
ALL_SERVICES=(mysql redis namesrv faultproxy broker orderd fulfillmentd)

die() {
	echo "devstack: $*" >&2
	exit 1
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
		bin=$(basename "$("$1_bin")")
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
	local svc=$1 pid log deadline
	if pid=$(svc_pid "$svc"); then
		echo "$svc: already running (pid $pid)"
		"${svc}_describe"
		return 0
	fi
	mkdir -p "$(svc_dir "$svc")"
	if declare -F "${svc}_init" >/dev/null; then
		"${svc}_init"
	fi
	local port_var="TXO_${svc^^}_PORT"
	if [[ -n ${!port_var:-} ]] && port_open "${!port_var}"; then
		die "$svc: 127.0.0.1:${!port_var} is in use by another process; stop it or set $port_var"
	fi
	log=$(svc_log "$svc")
	echo "=== devstack $(date -u +%FT%TZ) start $svc" >>"$log"
	# NAME_launch execs the server under setsid in this background subshell,
	# so $! is the server's pid and it outlives this script and ignores ^C.
	"${svc}_launch" >>"$log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$(svc_pidfile "$svc")"
	deadline=$((SECONDS + TXO_WAIT_SECONDS))
	until "${svc}_ready"; do
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
	"${svc}_describe"
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
		"${svc}_describe"
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

broker_launch() {
	local advertise=()
	if [[ $TXO_FAULT_PROXY == 1 ]]; then
		advertise=(--advertise "127.0.0.1:$TXO_BROKER_PROXY_PORT")
	fi
	exec setsid "$(broker_bin)" broker --addr "127.0.0.1:$TXO_BROKER_PORT" "${advertise[@]}" \
		--namesrv "127.0.0.1:$TXO_NAMESRV_PORT" --register-interval 10s \
		--check-interval "$TXO_CHECK_INTERVAL" --check-max "$TXO_CHECK_MAX" \
		--topics ORDER_PAID:4
}

namesrv_ready() { port_open "$TXO_NAMESRV_PORT"; }
broker_ready() { port_open "$TXO_BROKER_PORT"; }

namesrv_describe() {
	echo "  namesrv: 127.0.0.1:$TXO_NAMESRV_PORT (rmqdev, in memory)  log $(svc_log namesrv)"
}
broker_describe() {
	local via=""
	[[ $TXO_FAULT_PROXY == 1 ]] && via=" advertised as 127.0.0.1:$TXO_BROKER_PROXY_PORT (the fault proxy)"
	echo "  broker: 127.0.0.1:$TXO_BROKER_PORT$via (rmqdev, in memory; checks every $TXO_CHECK_INTERVAL)  log $(svc_log broker)"
}

# --- faultproxy: toxiproxy-server in front of every dependency (opt-in) ----

faultproxy_bin() {
	[[ -x $ROOT/bin/toxiproxy-server ]] || die "faultproxy: $ROOT/bin/toxiproxy-server is missing: run make build"
	echo "$ROOT/bin/toxiproxy-server"
}

# faultproxy_init: the proxies, loaded by the server at start (-config).
faultproxy_init() {
	cat >"$(svc_dir faultproxy)/proxies.json" <<JSON
[
  {"name": "mysql", "listen": "127.0.0.1:$TXO_MYSQL_PROXY_PORT", "upstream": "127.0.0.1:$TXO_MYSQL_PORT", "enabled": true},
  {"name": "redis", "listen": "127.0.0.1:$TXO_REDIS_PROXY_PORT", "upstream": "127.0.0.1:$TXO_REDIS_PORT", "enabled": true},
  {"name": "namesrv", "listen": "127.0.0.1:$TXO_NAMESRV_PROXY_PORT", "upstream": "127.0.0.1:$TXO_NAMESRV_PORT", "enabled": true},
  {"name": "broker", "listen": "127.0.0.1:$TXO_BROKER_PROXY_PORT", "upstream": "127.0.0.1:$TXO_BROKER_PORT", "enabled": true}
]
JSON
}

faultproxy_launch() {
	# info: one line per connection and toxic change, not per chunk.
	exec setsid env LOG_LEVEL=info "$(faultproxy_bin)" -host 127.0.0.1 -port "$TXO_FAULTPROXY_PORT" \
		-config "$(svc_dir faultproxy)/proxies.json"
}

# faultproxy_ready: the API answers and lists the four proxies.
faultproxy_ready() {
	local port
	for port in "$TXO_FAULTPROXY_PORT" "$TXO_MYSQL_PROXY_PORT" "$TXO_REDIS_PROXY_PORT" "$TXO_NAMESRV_PROXY_PORT" "$TXO_BROKER_PROXY_PORT"; do
		port_open "$port" || return 1
	done
}

faultproxy_describe() {
	echo "  faultproxy: API http://127.0.0.1:$TXO_FAULTPROXY_PORT/proxies; mysql :$TXO_MYSQL_PROXY_PORT redis :$TXO_REDIS_PROXY_PORT namesrv :$TXO_NAMESRV_PROXY_PORT broker :$TXO_BROKER_PROXY_PORT  log $(svc_log faultproxy)"
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
	# $RUN_DIR/orderd.yaml (write_config), which bin/ordertool reads too.
	exec setsid "$(orderd_bin)" --config "$RUN_DIR/orderd.yaml"
}

orderd_ready() (
	exec 3<>"/dev/tcp/127.0.0.1/$TXO_ORDERD_PORT" || exit 1
	printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
	IFS= read -r -t 1 status <&3 || exit 1
	[[ $status == "HTTP/1."?" 200"* ]]
) 2>/dev/null

orderd_describe() {
	echo "  orderd: http://127.0.0.1:$TXO_ORDERD_PORT  (API key $TXO_API_KEY)  log $(svc_log orderd)"
}

# --- fulfillmentd: the ORDER_PAID consumer (built by `make build`) ---------

fulfillmentd_bin() {
	[[ -x $ROOT/bin/fulfillmentd ]] || die "fulfillmentd: $ROOT/bin/fulfillmentd is missing: run make build"
	echo "$ROOT/bin/fulfillmentd"
}

fulfillmentd_init() { write_config; }

fulfillmentd_launch() {
	# $RUN_DIR/fulfillmentd.yaml (write_config): the shipments live in
	# orderd's database.
	exec setsid "$(fulfillmentd_bin)" --config "$RUN_DIR/fulfillmentd.yaml"
}

fulfillmentd_ready() (
	exec 3<>"/dev/tcp/127.0.0.1/$TXO_FULFILLMENTD_PORT" || exit 1
	printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
	IFS= read -r -t 1 status <&3 || exit 1
	[[ $status == "HTTP/1."?" 200"* ]]
) 2>/dev/null

fulfillmentd_describe() {
	echo "  fulfillmentd: http://127.0.0.1:$TXO_FULFILLMENTD_PORT/readyz (metrics /metrics; dead letters: bin/ordertool dlq list)  log $(svc_log fulfillmentd)"
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

check_services() {
	local svc known
	for svc in "$@"; do
		for known in "${ALL_SERVICES[@]}"; do
			[[ $svc == "$known" ]] && continue 2
		done
		die "unknown service '$svc' (known: ${SERVICES[*]})"
	done
}

main() {
	local cmd=${1:-} rc=0 svc
	shift || true
	case $cmd in
	start | stop | status)
		if (($# == 0)); then
			if [[ $cmd == stop ]]; then set -- "${ALL_SERVICES[@]}"; else set -- "${SERVICES[@]}"; fi
		fi
		check_services "$@"
		mkdir -p "$RUN_DIR"
		if [[ $cmd == stop ]]; then
			# Stop in reverse order of start.
			local i
			for ((i = $# ; i >= 1; i--)); do
				stop_service "${!i}"
			done
			return 0
		fi
		for svc in "$@"; do
			"${cmd}_service" "$svc" || rc=$?
		done
		return "$rc"
		;;
	start-one)
		(($# == 1)) || die "usage: devstack.sh start-one SERVICE"
		check_services "$1"
		mkdir -p "$RUN_DIR"
		start_service "$1"
		;;
	kill)
		(($# > 0)) || die "usage: devstack.sh kill SERVICE..."
		check_services "$@"
		for svc in "$@"; do
			kill_service "$svc"
		done
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
