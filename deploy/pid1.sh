#!/bin/sh
# pid1.sh COMMAND [ARG...] — PID 1 of the RocketMQ containers
# (docker-compose.yml: the NameServers and the brokers).
#
# Why: the apache/rocketmq:5.3.1 image runs its entrypoint, which execs our
# command (rocketmq-docker image-build/Dockerfile-ubuntu:105 ENTRYPOINT
# ["./docker-entrypoint.sh"]; image-build/scripts/docker-entrypoint.sh:16
# exec "$@"), so `sh mqbroker …` becomes PID 1. mqbroker does not exec:
# it runs `sh runbroker.sh …` as a child (apache/rocketmq
# rocketmq-all-5.3.1 distribution/bin/mqbroker:77), which runs java as a
# child (rocketmq-docker image-build/scripts/runbroker-customize.sh:75/80);
# mqnamesrv → runserver.sh → java likewise (distribution/bin/mqnamesrv:45,
# runserver-customize.sh:67). A shell that is PID 1 of a PID namespace and
# has no TERM trap never sees SIGTERM (the kernel drops signals an init
# process has no handler for), so `docker compose stop` waited its grace
# period and SIGKILLed the JVM: no shutdown hook, no flush, no unregister,
# and the next start recovered from the abort file.
#
# What: COMMAND runs in a process group of its own. TERM, INT and HUP are
# forwarded to that whole group (the shells and java; tini, which signals
# only its direct child, would stop at the first shell). pid1.sh then waits
# until every process of the group has exited, reaping orphans as init
# must, and exits with COMMAND's status (128 + the signal when a signal
# ended it).
#
# Tested as PID 1 of a new PID namespace by deploy/pid1_test.go.
set -u

if [ "$#" -eq 0 ]; then
	echo "usage: pid1.sh COMMAND [ARG...]" >&2
	exit 2
fi
if ! command -v setsid >/dev/null 2>&1; then
	echo "pid1.sh: setsid (util-linux) not found; cannot give COMMAND a process group" >&2
	exit 127
fi

child=
pending=

# forward SIG: send SIG to COMMAND's whole process group (just COMMAND if
# the group is gone); remembered when it arrives before COMMAND started.
forward() {
	if [ -z "$child" ]; then
		pending=$1
		return
	fi
	kill -s "$1" -- "-$child" 2>/dev/null || kill -s "$1" "$child" 2>/dev/null || :
}
trap 'forward TERM' TERM
trap 'forward INT' INT
trap 'forward HUP' HUP

# A background command of a shell without job control starts with INT and
# QUIT ignored (POSIX), and neither a shell nor the JVM will handle a
# signal ignored on entry: env --default-signal (GNU coreutils 8.31+)
# restores them. Without it only TERM and HUP reach COMMAND.
restore="env --default-signal=INT,QUIT"
if ! $restore true 2>/dev/null; then
	echo "pid1.sh: env --default-signal unsupported; INT will not reach COMMAND" >&2
	restore=
fi
# That background command is not a process group leader either, so
# setsid(1) makes it the leader of a new session and group without
# forking: $! is the group's id.
# shellcheck disable=SC2086 # $restore is empty or three words
setsid $restore "$@" &
child=$!
if [ -n "$pending" ]; then
	forward "$pending"
fi

# wait returns early (above 128) when a trapped signal arrives; wait again
# while COMMAND still exists (a zombie counts until it is reaped).
while :; do
	wait "$child"
	status=$?
	kill -s 0 "$child" 2>/dev/null || break
done
# A shell that reaped COMMAND on its own still knows its status (bash);
# one that handed it to the last wait answers 127 here (dash).
wait "$child" 2>/dev/null
last=$?
if [ "$last" -ne 127 ]; then
	status=$last
fi

# COMMAND's shell may be gone while java still runs its shutdown hook:
# wait for the whole group. Waiting for sleep also reaps orphans that
# were re-parented to this process.
while kill -s 0 -- "-$child" 2>/dev/null; do
	sleep 0.2
done
exit "$status"
