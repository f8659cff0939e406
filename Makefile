GO ?= go

.PHONY: run build test test-cassandra postgresql vet fmt-check clean bench bench-cluster fuzz

## run: start chatd on embedded defaults (MQTT :1883, WebSocket :8083/mqtt, REST :8080, data in ./data)
run:
	$(GO) run ./cmd/chatd serve

## build: build the binary into bin/chatd
build:
	$(GO) build -o bin/chatd ./cmd/chatd

## test: the whole suite: formatting, vet, every test with the race detector,
## then every fuzz target for TEST_FUZZTIME each.
## PostgreSQL tests start a throwaway server from the postgresql package's binaries.
TEST_FUZZTIME ?= 2s
test: fmt-check vet postgresql
	$(GO) test -race -count=1 -timeout 15m ./...
	GO="$(GO)" FUZZTIME=$(TEST_FUZZTIME) ./scripts/fuzz.sh

## fuzz: every fuzz target for FUZZTIME each (default 10s; FUZZ=regexp picks targets; see scripts/fuzz.sh)
fuzz:
	GO="$(GO)" ./scripts/fuzz.sh

## postgresql: install the Debian postgresql package when its server binaries are missing (as root)
postgresql:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing postgresql: the tests run a throwaway PostgreSQL server"; \
		export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq postgresql; \
	else \
		echo "PostgreSQL server binaries not found: install the postgresql package (apt-get install postgresql)."; \
		echo "Without it the PostgreSQL tests skip (and fail when CI=true)."; \
	fi

## test-cassandra: the Cassandra conformance run against the compose file's Cassandra (needs Docker)
COMPOSE ?= docker compose -f deploy/docker-compose.yml
test-cassandra:
	$(COMPOSE) up -d cassandra
	@echo "waiting for Cassandra to accept CQL (first start takes a minute)..."
	@for i in $$(seq 1 90); do \
		$(COMPOSE) exec -T cassandra cqlsh -e 'SELECT release_version FROM system.local' >/dev/null 2>&1 && exit 0; \
		sleep 2; \
	done; echo "Cassandra did not come up"; exit 1
	CASSANDRA_HOSTS=127.0.0.1 $(GO) test -count=1 -v ./store/cassandra/...

## bench: chatd vs Mosquitto vs bare mochi on loopback, alternating rounds; BENCH_QUICK=1 for a ~5 minute run (see scripts/bench.sh)
bench:
	./scripts/bench.sh

## bench-cluster: three chatd nodes on one nats-server and a throwaway PostgreSQL, same-node vs cross-node pairs; BENCH_QUICK=1 for a quick run (see scripts/bench-cluster.sh)
bench-cluster:
	./scripts/bench-cluster.sh

vet:
	$(GO) vet ./...

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

clean:
	rm -rf bin data
