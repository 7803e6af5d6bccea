#!/usr/bin/env bash
# install-deps.sh makes sure the servers that the tests (internal/testenv)
# and `make run` (scripts/devstack.sh) start are installed:
#   mariadbd, mariadb-install-db, mariadb  -> package mariadb-server
#   redis-server                           -> package redis-server
#   haproxy                                -> package haproxy (deploy/haproxy_test.go
#                                             checks and runs the compose load balancer's config)
# It installs only what is missing, so running it again is cheap. It can
# install only as root on Debian/Ubuntu (apt-get); anywhere else it exits
# non-zero saying what to install.
#
# A system MariaDB, Redis or HAProxy that the packages' postinst may start is
# left alone: the tests and the dev stack use their own ports and data dirs.
set -euo pipefail

# have NAME: NAME is an executable in PATH, /usr/sbin or /usr/bin (Debian's
# mariadbd is in /usr/sbin, outside a normal user's PATH).
have() {
	command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 ]] || [[ -x /usr/bin/$1 ]]
}

missing=()
add() {
	local pkg=$1 p
	for p in "${missing[@]}"; do
		[[ $p == "$pkg" ]] && return 0
	done
	missing+=("$pkg")
}

have mariadbd || add mariadb-server
have mariadb-install-db || have mysql_install_db || add mariadb-server
have mariadb || have mysql || add mariadb-server
have redis-server || add redis-server
have haproxy || add haproxy

if ((${#missing[@]} == 0)); then
	echo "install-deps: mariadb-server, redis-server and haproxy already installed"
	exit 0
fi

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: missing packages: ${missing[*]}" >&2
	if command -v apt-get >/dev/null 2>&1; then
		echo "install-deps: run as root, or install them with: sudo apt-get install -y ${missing[*]}" >&2
	else
		echo "install-deps: no apt-get here; install MariaDB server (mariadbd, mariadb-install-db), redis-server and haproxy with your package manager" >&2
	fi
	exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"

for bin in mariadbd redis-server haproxy; do
	if ! have "$bin"; then
		echo "install-deps: $bin still missing after apt-get install ${missing[*]}" >&2
		exit 1
	fi
done
echo "install-deps: done"
