#!/bin/sh
# rocketmq-init (docker-compose.yml): runs once in an apache/rocketmq
# container after the three brokers are up. It waits until the DLedger group
# has elected a leader (a master, brokerId 0, registered with the
# NameServers), then
#   - creates ORDER_PAID on the cluster's masters (read/write queues, perm 6);
#   - creates %DLQ%<fulfillment group> with perm 6: the broker would create
#     it write-only (perm 2) on the first dead letter, and fulfillmentd's
#     dead letter recorder must be able to read it;
# and checks both through the NameServer route. mqadmin updateTopic with -c
# succeeds silently when the cluster has no master yet, so success is judged
# by the route, and the whole thing is retried until INIT_TIMEOUT_SECONDS.
# Re-running it is harmless (updateTopic updates in place).
set -eu

ns="${NAMESRV_ADDR:?NAMESRV_ADDR is required}"
cluster="${ROCKETMQ_CLUSTER:?ROCKETMQ_CLUSTER is required}"
topic="${ORDER_TOPIC:-ORDER_PAID}"
queues="${ORDER_TOPIC_QUEUES:-4}"
dlq="%DLQ%${FULFILLMENT_GROUP:-fulfillment}"
timeout="${INIT_TIMEOUT_SECONDS:-300}"
mqadmin="${ROCKETMQ_HOME:?ROCKETMQ_HOME is required}/bin/mqadmin"

deadline=$(( $(date +%s) + timeout ))

# route_has TOPIC PATTERN: the topic's route, as the NameServer serves it,
# matches the extended regular expression PATTERN.
route_has() {
	sh "$mqadmin" topicRoute -n "$ns" -t "$1" 2>/dev/null | tr -d ' \t\n' | grep -Eq "$2"
}

ensure() { # ensure TOPIC QUEUES
	sh "$mqadmin" updateTopic -n "$ns" -c "$cluster" -t "$1" -r "$2" -w "$2" -p 6 >/dev/null 2>&1 || return 1
	route_has "$1" "\"writeQueueNums\":$2" && route_has "$1" '"perm":6'
}

attempt=0
until ensure "$topic" "$queues" && ensure "$dlq" 1; do
	attempt=$((attempt + 1))
	if [ "$(date +%s)" -ge "$deadline" ]; then
		echo "rocketmq-init: gave up after ${timeout}s: no master in cluster $cluster, or mqadmin failed; try: mqadmin clusterList -n '$ns'" >&2
		sh "$mqadmin" clusterList -n "$ns" >&2 || true
		exit 1
	fi
	echo "rocketmq-init: cluster $cluster not ready (attempt $attempt), retrying in 3s"
	sleep 3
done

echo "rocketmq-init: $topic ($queues queues) and $dlq (readable) exist on cluster $cluster"
sh "$mqadmin" clusterList -n "$ns" || true
