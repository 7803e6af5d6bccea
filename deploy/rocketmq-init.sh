#!/bin/sh
# rocketmq-init (docker-compose.yml): runs once in an apache/rocketmq
# container after the three brokers are up. It waits until the DLedger group
# has elected a leader (a master, brokerId 0, registered with the
# NameServers), then
#   - creates ORDER_PAID on the cluster's masters (read/write queues, perm 6);
#   - creates %DLQ%<fulfillment group> with perm 6 up front, so that
#     fulfillmentd's dead letter recorder has a route to subscribe to from
#     its first start: the broker creates the topic only with the first dead
#     letter (read/write then too, PERM_WRITE | PERM_READ: apache/rocketmq
#     rocketmq-all-5.3.1 broker/src/main/java/org/apache/rocketmq/broker/
#     processor/AbstractSendMessageProcessor.java:197-199; 4.9.0 and older
#     created it write-only, hence the explicit perm);
# and checks both through the NameServer route. mqadmin updateTopic with -c
# succeeds silently when the cluster has no master yet, so success is judged
# by the route, and the whole thing is retried every INIT_RETRY_SECONDS
# until INIT_TIMEOUT_SECONDS. Re-running it is harmless (updateTopic
# updates in place).
#
# mqadmin's JVM: bin/mqadmin runs bin/tools.sh, which never reads
# JAVA_OPT_EXT and puts its own "-server -Xms1g -Xmx1g -Xmn256m" after any
# JAVA_OPT (apache/rocketmq rocketmq-all-5.3.1 distribution/bin/tools.sh:57),
# so every mqadmin call would take a 1 GiB heap whatever we set. This script
# starts MQAdminStartup itself, as tools.sh would (its classpath,
# tools.sh:52; the class and logback file, distribution/bin/mqadmin:45; lib/
# and conf/rmq.tools.logback.xml are where distribution/release.xml:76,98
# put them), with ADMIN_JAVA_OPT as the heap (default 256 MiB).
# deploy/rocketmq_init_test.go runs it against a stand-in java.
set -eu

ns="${NAMESRV_ADDR:?NAMESRV_ADDR is required}"
cluster="${ROCKETMQ_CLUSTER:?ROCKETMQ_CLUSTER is required}"
topic="${ORDER_TOPIC:-ORDER_PAID}"
queues="${ORDER_TOPIC_QUEUES:-4}"
dlq="%DLQ%${FULFILLMENT_GROUP:-fulfillment}"
timeout="${INIT_TIMEOUT_SECONDS:-300}"
retry="${INIT_RETRY_SECONDS:-3}"
home="${ROCKETMQ_HOME:?ROCKETMQ_HOME is required}"
java_opt="${ADMIN_JAVA_OPT:--Xms128m -Xmx256m -Xmn64m -XX:MetaspaceSize=64m -XX:MaxMetaspaceSize=128m}"
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"

deadline=$(( $(date +%s) + timeout ))

# mqadmin ARG...: MQAdminStartup in a JVM of ADMIN_JAVA_OPT's size.
mqadmin() {
	# shellcheck disable=SC2086 # java_opt is a list of JVM flags
	"$java" -server $java_opt -cp ".:$home/conf:$home/lib/*" \
		-Drmq.logback.configurationFile="$home/conf/rmq.tools.logback.xml" \
		org.apache.rocketmq.tools.command.MQAdminStartup "$@"
}

# route_has TOPIC PATTERN: the topic's route, as the NameServer serves it,
# matches the extended regular expression PATTERN.
route_has() {
	mqadmin topicRoute -n "$ns" -t "$1" 2>/dev/null | tr -d ' \t\n' | grep -Eq "$2"
}

ensure() { # ensure TOPIC QUEUES
	mqadmin updateTopic -n "$ns" -c "$cluster" -t "$1" -r "$2" -w "$2" -p 6 >/dev/null 2>&1 || return 1
	route_has "$1" "\"writeQueueNums\":$2" && route_has "$1" '"perm":6'
}

attempt=0
until ensure "$topic" "$queues" && ensure "$dlq" 1; do
	attempt=$((attempt + 1))
	if [ "$(date +%s)" -ge "$deadline" ]; then
		echo "rocketmq-init: gave up after ${timeout}s: no master in cluster $cluster, or mqadmin failed; try: mqadmin clusterList -n '$ns'" >&2
		mqadmin clusterList -n "$ns" >&2 || true
		exit 1
	fi
	echo "rocketmq-init: cluster $cluster not ready (attempt $attempt), retrying in ${retry}s"
	sleep "$retry"
done

echo "rocketmq-init: $topic ($queues queues) and $dlq (readable) exist on cluster $cluster"
mqadmin clusterList -n "$ns" || true
