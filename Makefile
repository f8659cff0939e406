GO ?= go

.PHONY: run build test vet fmt-check clean bench

## run: start chatd on embedded defaults (MQTT :1883, WebSocket :8083/mqtt, REST :8080, data in ./data)
run:
	$(GO) run ./cmd/chatd serve

## build: build the binary into bin/chatd
build:
	$(GO) build -o bin/chatd ./cmd/chatd

## test: the whole suite: formatting, vet, and every test with the race detector
test: fmt-check vet
	$(GO) test -race -count=1 -timeout 15m ./...

## bench: chatd vs Mosquitto vs bare mochi on loopback, alternating rounds; BENCH_QUICK=1 for a ~2 minute run (see scripts/bench.sh)
bench:
	./scripts/bench.sh

vet:
	$(GO) vet ./...

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

clean:
	rm -rf bin data
