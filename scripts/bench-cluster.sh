#!/usr/bin/env bash
# make bench-cluster: three chatd nodes in cluster mode on loopback, sharing
# a nats-server (JetStream) and a throwaway PostgreSQL, measured by
# `chatbench cluster`: same-node pairs (sender and recipient on the node
# that owns their chat) against cross-node pairs (sender, recipient and
# owner three different nodes), at a fixed rate and at saturation, with
# MQTT 3.1.1 and MQTT 5 clients.
#
# Everything listens on 127.0.0.1 only, runs from a temporary directory and
# is stopped when the script ends or is interrupted.
#
# Environment (defaults in brackets):
#   BENCH_QUICK=1          small counts, for a 1–1.5 minute run (full: ~6 minutes)
#   BENCH_ROUNDS [3]       rounds (quick: 1); each runs every combination
#   BENCH_PAIRS [30]       sender→recipient pairs per run (quick: 12)
#   BENCH_RATE [150]       the fixed load, messages/s over all pairs (quick: 60)
#   BENCH_SECONDS [10]     how long a fixed-load run sends (quick: 6)
#   BENCH_MESSAGES [600]   messages per pair of a saturation run (quick: 400)
#   BENCH_VERSIONS ["3.1.1 5"]  MQTT versions
#   BENCH_OUT [bench-results/cluster-<time>]   JSON results and logs
#   BENCH_PG_DSN           use this PostgreSQL (an empty database chatd may
#                          migrate) instead of starting one
set -euo pipefail
cd "$(dirname "$0")/.."

quick=${BENCH_QUICK:-0}
if [[ $quick == 1 ]]; then
	d_rounds=1 d_pairs=12 d_rate=60 d_secs=6 d_msgs=400
else
	d_rounds=3 d_pairs=30 d_rate=150 d_secs=10 d_msgs=600
fi
rounds=${BENCH_ROUNDS:-$d_rounds}
pairs=${BENCH_PAIRS:-$d_pairs}
rate=${BENCH_RATE:-$d_rate}
secs=${BENCH_SECONDS:-$d_secs}
msgs=${BENCH_MESSAGES:-$d_msgs}
versions=${BENCH_VERSIONS:-3.1.1 5}
out=${BENCH_OUT:-bench-results/cluster-$(date -u +%Y%m%dT%H%M%SZ)}

NATS_PORT=24222 NATS_MON=28222 PG_PORT=25432
NODES=(n1 n2 n3)
MQTT=(127.0.0.1:21981 127.0.0.1:21982 127.0.0.1:21983)
HTTP=(127.0.0.1:28181 127.0.0.1:28182 127.0.0.1:28183)

log() { printf '== %s\n' "$*" >&2; }

log "building"
mkdir -p bin "$out"
go build -o bin/chatd ./cmd/chatd
go build -o bin/chatbench ./cmd/chatbench
go build -o bin/nats-server github.com/nats-io/nats-server/v2

work=$(mktemp -d /tmp/mqchat-bench-cluster.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
	local i p
	# Newest first: the nodes leave the cluster while NATS and PostgreSQL
	# are still there to hear it. Bounded: whatever has not stopped 20 s
	# after its signal is killed.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		p=${pids[$i]}
		kill -INT "$p" 2>/dev/null || true
		for _ in $(seq 1 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	cp "$work"/*.log "$out"/ 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_until() { # seconds description command...
	local secs=$1 what=$2; shift 2
	for _ in $(seq 1 $((secs * 10))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	log "timed out after ${secs}s waiting for $what"
	return 1
}
port_open() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}"); }

log "starting nats-server (JetStream) on 127.0.0.1:$NATS_PORT, monitoring on :$NATS_MON"
bin/nats-server -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MON" -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)
wait_until 20 "nats-server" port_open "127.0.0.1:$NATS_PORT"

if [[ -n ${BENCH_PG_DSN:-} ]]; then
	dsn=$BENCH_PG_DSN
	pg_note="given by BENCH_PG_DSN"
else
	# A throwaway server, as internal/pgtest starts one: the newest
	# installed binaries, trust auth on loopback, the postgres user when we
	# are root (the server refuses to run as root). Durability stays on
	# (fsync, synchronous commit): a PUBACK means a committed row.
	pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
	[[ -x $pgbin/initdb ]] || pgbin=$(dirname "$(command -v initdb)")
	as=()
	mkdir -p "$work/pg"
	if [[ $(id -u) == 0 ]]; then
		chown postgres: "$work/pg"
		as=(setpriv --reuid=postgres --regid=postgres --init-groups)
	fi
	log "starting PostgreSQL from $pgbin on 127.0.0.1:$PG_PORT"
	"${as[@]}" "$pgbin/initdb" -D "$work/pg/data" -U postgres -A trust -E UTF8 --locale=C >"$work/initdb.log" 2>&1
	"${as[@]}" "$pgbin/postgres" -D "$work/pg/data" -p "$PG_PORT" -k "$work/pg" -c listen_addresses=127.0.0.1 \
		-c max_connections=300 -c shared_buffers=128MB >"$work/postgres.log" 2>&1 &
	pids+=($!)
	wait_until 60 "PostgreSQL" port_open "127.0.0.1:$PG_PORT"
	dsn="postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
	pg_note="PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}'), fsync on"
fi

# Only the limits that would throttle the load generator are lifted, as in
# make bench; the nodes share the JWT secret, NATS and the database.
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
start_node() { # index
	local i=$1
	MQCHAT_AUTH_JWT_SECRET=$secret MQCHAT_STORE_POSTGRES_DSN=$dsn \
		MQCHAT_LIMITS_SEND_RATE=0 MQCHAT_LIMITS_AUTH_RATE=0 MQCHAT_AUTH_BCRYPT_COST=4 MQCHAT_LOG_LEVEL=warn \
		bin/chatd serve --data_dir "$work/${NODES[$i]}" --mqtt.addr "${MQTT[$i]}" --mqtt.ws_addr= --http.addr "${HTTP[$i]}" \
		--store.relational postgres --store.messages postgres \
		--cluster.enabled --cluster.node_id "${NODES[$i]}" --cluster.nats.url "nats://127.0.0.1:$NATS_PORT" \
		>"$work/chatd-${NODES[$i]}.log" 2>&1 &
	pids+=($!)
}
# The first node migrates the empty database; the others start once it is
# up (migrations from several nodes at once are safe, but serialised anyway).
log "starting chatd ${NODES[*]}"
start_node 0
wait_until 60 "${NODES[0]} /readyz" curl -sf "http://${HTTP[0]}/readyz"
start_node 1
start_node 2
for i in 0 1 2; do
	wait_until 60 "${NODES[$i]} /readyz" curl -sf "http://${HTTP[$i]}/readyz"
done
# Ownership is computed by chatbench over the three node ids: every node
# must see all three before the pairs are placed.
sees_all() { curl -sf "http://$1/metrics" | grep -qx 'mqchat_cluster_nodes 3'; }
for i in 0 1 2; do
	wait_until 30 "${NODES[$i]} to see 3 nodes" sees_all "${HTTP[$i]}"
done

join() { local IFS=,; echo "$*"; }
n=0
bench() { # name args...
	local name=$1; shift
	n=$((n + 1))
	local f="$out/$(printf %03d $n)-$name.json"
	bin/chatbench cluster --mqtt "$(join "${MQTT[@]}")" --http "$(join "${HTTP[@]}")" --nodes "$(join "${NODES[@]}")" \
		--nats-monitor "127.0.0.1:$NATS_MON" --pairs "$pairs" --prefix "c$n-$RANDOM" --json "$@" >"$f" 2>>"$out/progress.log"
	grep -m1 '"throughput"' "$f" | sed "s|^ *|   $name: |" >&2
}

rmsgs=$(((rate * secs + pairs - 1) / pairs))
for r in $(seq 1 "$rounds"); do
	# same then cross, then cross then same: neither always runs first.
	if ((r % 2)); then places="same cross"; else places="cross same"; fi
	for v in $versions; do
		for p in $places; do
			log "round $r of $rounds: MQTT $v, $p-node pairs"
			bench "$p-v$v-rate" --placement "$p" --mqtt-version "$v" --messages "$rmsgs" --rate "$rate" --window 64
			bench "$p-v$v-max" --placement "$p" --mqtt-version "$v" --messages "$msgs"
		done
	done
done

echo
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench-results' || echo ' (dirty)'), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $rounds rounds"
echo "3 chatd nodes, nats-server $(bin/nats-server --version | awk '{print $NF}'), $pg_note, all on this machine"
bin/chatbench table "$out"/*.json
echo "results: $out"
