# txorder — make targets. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
GOTEST_FLAGS ?= -race -count=1 -timeout 20m
BIN := bin

.PHONY: all build deps vet test fuzz bench run stop status clean

all: build

# TOXIPROXY is the fault proxy of the chaos stack (TXO_FAULT_PROXY=1, see
# scripts/devstack.sh), built from the module version go.mod pins (a go.mod
# tool), never from vendored code.
TOXIPROXY_VERSION = $(shell $(GO) list -m -f '{{.Version}}' github.com/Shopify/toxiproxy/v2)

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...
	$(GO) build -o $(BIN)/toxiproxy-server \
		-ldflags "-X github.com/Shopify/toxiproxy/v2.Version=$(TOXIPROXY_VERSION)" github.com/Shopify/toxiproxy/v2/cmd/server

# deps installs mariadb-server, redis-server and chromium when missing (apt-get, as root).
deps:
	scripts/install-deps.sh

vet:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

# test: vet, every test with -race, then every fuzz target for
# TEST_FUZZTIME (10s) each, so that CI fuzzes the decoders on every run.
TEST_FUZZTIME ?= 10s
test: deps vet
	$(GO) test $(GOTEST_FLAGS) ./...
	FUZZTIME=$(TEST_FUZZTIME) GO=$(GO) scripts/fuzz.sh

# fuzz runs every fuzz target (scripts/fuzz.sh finds them) for FUZZTIME
# each (default 30s); e.g. make fuzz FUZZTIME=10m.
FUZZTIME ?= 30s
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz.sh

# bench starts its own MariaDB, Redis (free ports), RocketMQ (in-process),
# orderd and fulfillmentd, and measures placement, check-backs, degraded
# modes, recovery and end-to-end latency; under 10 minutes on 2 cores.
# Output in .bench/ (bench.json, bench.md, bench.png). BENCH_FLAGS: see
# bin/ordertool bench --help.
BENCH_FLAGS ?=
bench: deps build
	$(BIN)/ordertool bench --out .bench $(BENCH_FLAGS)

# run starts MariaDB, Redis, rmqdev (NameServer + TXO_BROKERS brokers),
# TXO_ORDERD_REPLICAS orderd and TXO_FULFILLMENTD_REPLICAS fulfillmentd
# from .run/ (see scripts/devstack.sh for the ports of each replica).
run: deps build
	scripts/devstack.sh start
	@echo
	@echo "orderd:  $$(scripts/devstack.sh urls | sed 's/,/ /g')  (health /healthz, readiness /readyz, metrics /metrics, API doc /openapi.yaml)"
	@echo "fulfillmentd: http://127.0.0.1:$${TXO_FULFILLMENTD_PORT:-8081}  (/healthz, /readyz, /metrics)"
	@echo "Place an order:"
	@echo "  curl -s -X POST http://127.0.0.1:$${TXO_ORDERD_PORT:-8080}/v1/orders \\"
	@echo "    -H 'Authorization: Bearer $${TXO_API_KEY:-dev-key-change-me}' -H 'Content-Type: application/json' -H 'Idempotency-Key: demo-1' \\"
	@echo "    -d '{\"customer_id\":\"c-1\",\"currency\":\"EUR\",\"items\":[{\"sku\":\"SKU-1\",\"name\":\"Widget\",\"quantity\":2,\"unit_price\":1250}]}'"
	@echo "Pay it, then check the promise (ordertool reads .run/orderd.yaml and .run/fulfillmentd.yaml):"
	@echo "  bin/ordertool pay <order-id>"
	@echo "  bin/ordertool audit --settle 30s"
	@echo "Stop everything with: make stop"

# chaos-local runs chaos/kill-mysql.sh and chaos/kill-namesrv.sh (one orderd),
# then chaos/kill-replica.sh and chaos/rolling-restart.sh (three orderd, two
# fulfillmentd: the scripts start the missing replicas), then
# chaos/hang-redis.sh and slow-mysql.sh (the two fastest network-fault runs:
# the stack is restarted behind the fault proxy for them) on the local stack
# (started when down; `make stop` stops it, replicas and fault proxy
# included) with small counts, each bounded to 3-4 minutes, and fails when
# any audit fails. Reports: reports/.
.PHONY: chaos-local
CHAOS_LOCAL_ENV := CHAOS_MODE=local CHAOS_RATE=20 CHAOS_BEFORE=4 CHAOS_OUTAGE=6 CHAOS_PAY_WAIT=60 CHAOS_SETTLE=60s
chaos-local: build
	@rc=0; \
	for run in kill-mysql:300:30:180 kill-namesrv:300:30:180 kill-replica:300:30:240 rolling-restart:1000:50:240 \
		hang-redis:300:30:180 slow-mysql:300:30:180; do \
		IFS=: read -r script count duration bound <<<"$$run"; \
		echo "=== chaos/$$script.sh"; \
		$(CHAOS_LOCAL_ENV) CHAOS_COUNT=$$count CHAOS_DURATION=$$duration \
			timeout --kill-after=10s $${bound}s chaos/$$script.sh || { echo "chaos/$$script.sh FAILED (exit $$?)"; rc=1; }; \
	done; \
	exit $$rc

stop:
	scripts/devstack.sh stop

status:
	scripts/devstack.sh status

clean: stop
	rm -rf $(BIN) .run
