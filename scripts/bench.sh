#!/usr/bin/env bash
# make bench: chatd against Mosquitto (non-persistent QoS 1 pass-through) and
# a bare mochi broker on loopback, each scenario on each server in
# alternation for BENCH_ROUNDS rounds, then the medians and chatd's ratios.
#
# Environment (defaults in brackets):
#   BENCH_QUICK=1          small counts, for a ~2 minute run
#   BENCH_ROUNDS [3]       rounds; every round runs every scenario on every server
#   BENCH_PAIRS [50]  BENCH_MESSAGES [2000]   direct: pairs, messages per pair
#   BENCH_GROUP [100] BENCH_GROUP_MESSAGES [300] group: members, messages
#   BENCH_CONNS [10000]    idle connections (the process fd limit is the bound)
#   BENCH_HOLD [10s]       how long they are held before the server's RSS is read
#   BENCH_HISTORY_MESSAGES [10000000]  history store size (filled once, reused)
#   BENCH_DIR [/var/tmp/mqchat-bench]  where history stores are kept
#   BENCH_OUT [bench-results/<time>]   JSON results
#   BENCH_SCENARIOS ["direct group rate connections history isolation"]
#                          add "attachments" for uploads and downloads of files
#                          (chatd only): MiB/s, per-request p99, server CPU per MiB
#   BENCH_ATTACH_SIZES [256KiB,4MiB]  attachments: file sizes, taken in turn
#   BENCH_MAX_RATIO [2]    isolation: bound on the p99 ratio (stalled consumer / alone);
#                          past it make bench fails once the table is printed
set -euo pipefail
cd "$(dirname "$0")/.."

quick=${BENCH_QUICK:-0}
if [[ $quick == 1 ]]; then
	d_pairs=20 d_msgs=500 g_msgs=100 conns=2000 hold=5s hist=200000 hist_req=2000 iso_a=5s iso_b=10s att_up=4 att_n=8
else
	d_pairs=50 d_msgs=2000 g_msgs=300 conns=10000 hold=10s hist=10000000 hist_req=5000 iso_a=8s iso_b=15s att_up=8 att_n=32
fi
att_sizes=${BENCH_ATTACH_SIZES:-256KiB,4MiB}
rounds=${BENCH_ROUNDS:-3}
pairs=${BENCH_PAIRS:-$d_pairs}
msgs=${BENCH_MESSAGES:-$d_msgs}
group=${BENCH_GROUP:-100}
gmsgs=${BENCH_GROUP_MESSAGES:-$g_msgs}
conns=${BENCH_CONNS:-$conns}
hold=${BENCH_HOLD:-$hold}
hist=${BENCH_HISTORY_MESSAGES:-$hist}
bench_dir=${BENCH_DIR:-/var/tmp/mqchat-bench}
out=${BENCH_OUT:-bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
scenarios=${BENCH_SCENARIOS:-direct group rate connections history isolation}
max_ratio=${BENCH_MAX_RATIO:-2}

CHATD_MQTT=127.0.0.1:21883 CHATD_HTTP=127.0.0.1:28080
MOCHI_MQTT=127.0.0.1:21884 MOSQ_MQTT=127.0.0.1:21885
HIST_MQTT=127.0.0.1:21893 HIST_HTTP=127.0.0.1:28090

log() { printf '== %s\n' "$*" >&2; }

if ! command -v mosquitto >/dev/null && [[ ! -x /usr/sbin/mosquitto ]]; then
	log "installing mosquitto"
	sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
	$sudo apt-get update -qq && $sudo apt-get install -y -qq mosquitto >/dev/null
fi
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)

log "building"
mkdir -p bin "$out" "$bench_dir"
go build -o bin/chatd ./cmd/chatd
go build -o bin/chatbench ./cmd/chatbench
go build -o bin/barebroker ./cmd/barebroker

work=$(mktemp -d /tmp/mqchat-bench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # host:port
	for _ in $(seq 1 100); do
		(exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "nothing listens on $1" >&2
	return 1
}

# chatd on the embedded store with durable sends; only the limits that
# would throttle the load generator are lifted (the daily upload quota
# among them), and its strangers join the groups they are put in without
# accepting an invitation.
start_chatd() { # data_dir mqtt http
	MQCHAT_ATTACHMENTS_DAILY_BYTES=$((1 << 40)) MQCHAT_LIMITS_SEND_RATE=0 MQCHAT_LIMITS_AUTH_RATE=0 MQCHAT_AUTH_BCRYPT_COST=4 \
		MQCHAT_LIMITS_MAX_GROUP_MEMBERS=100000 MQCHAT_LIMITS_GROUP_INVITES=auto MQCHAT_LOG_LEVEL=warn \
		bin/chatd serve --data_dir "$1" --mqtt.addr "$2" --mqtt.ws_addr= --http.addr "$3" >>"$work/chatd.log" 2>&1 &
	pids+=($!)
	wait_port "$2"
	wait_port "$3"
}

cat >"$work/mosquitto.conf" <<CONF
listener ${MOSQ_MQTT#*:} ${MOSQ_MQTT%:*}
allow_anonymous true
persistence false
max_queued_messages 1000000
max_inflight_messages 0
max_connections -1
CONF

log "starting mosquitto, bare mochi and chatd"
"$mosquitto_bin" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pids+=($!)
bin/barebroker --addr "$MOCHI_MQTT" >"$work/barebroker.log" 2>&1 &
pids+=($!)
start_chatd "$work/chatd" "$CHATD_MQTT" "$CHATD_HTTP"
wait_port "$MOSQ_MQTT"
wait_port "$MOCHI_MQTT"

# Memory per connection is measured on a server of its own, started for the
# run: a server that has served traffic before reuses memory it freed then,
# which would hide what new connections cost.
connections_run() { # target round
	local t=$1 pid f port
	n=$((n + 1))
	# A port per run: the previous run's sockets linger in TIME_WAIT, and
	# with the same 4-tuples they would leave no ephemeral ports to reuse.
	port=$((21903 + n))
	f="$out/$(printf %03d $n)-connections-$t.json"
	case $t in
	chatd)
		# The connections are spread over --users users as devices (20 each
		# at the default 2,000 connections): the per-user connection limit
		# is lifted, as it is not what this run measures.
		MQCHAT_LIMITS_AUTH_RATE=0 MQCHAT_AUTH_BCRYPT_COST=4 MQCHAT_LOG_LEVEL=warn MQCHAT_LIMITS_MAX_CONNECTIONS_PER_USER=100000 \
			bin/chatd serve --data_dir "$work/conn-$2" --mqtt.addr 127.0.0.1:$port --mqtt.ws_addr= --http.addr 127.0.0.1:28100 >>"$work/chatd.log" 2>&1 &
		pid=$!
		;;
	mosquitto)
		sed "s/^listener .*/listener $port 127.0.0.1/" "$work/mosquitto.conf" >"$work/mosquitto-conn.conf"
		"$mosquitto_bin" -c "$work/mosquitto-conn.conf" >>"$work/mosquitto.log" 2>&1 &
		pid=$!
		;;
	mochi)
		bin/barebroker --addr 127.0.0.1:$port >>"$work/barebroker.log" 2>&1 &
		pid=$!
		;;
	esac
	pids+=("$pid")
	wait_port 127.0.0.1:$port
	[[ $t != chatd ]] || wait_port 127.0.0.1:28100
	local plain=--plain
	[[ $t != chatd ]] || plain=
	bin/chatbench connections $plain --target "$t" --http 127.0.0.1:28100 --mqtt 127.0.0.1:$port --server-pid "$pid" \
		--conns "$conns" --hold "$hold" --json >"$f" 2>>"$out/progress.log"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	grep '"bytes_per_conn"' "$f" | sed "s|^ *|   $t connections: |" >&2
}

n=0
bench() { # target scenario-args...
	local target=$1; shift
	n=$((n + 1))
	local f="$out/$(printf %03d $n)-$1-$target.json"
	case $target in
	chatd) bin/chatbench "$@" --http "$CHATD_HTTP" --mqtt "$CHATD_MQTT" --json >"$f" 2>>"$out/progress.log" ;;
	mosquitto) bin/chatbench "$@" --mqtt "$MOSQ_MQTT" --target mosquitto --json >"$f" 2>>"$out/progress.log" ;;
	mochi) bin/chatbench "$@" --mqtt "$MOCHI_MQTT" --target mochi --json >"$f" 2>>"$out/progress.log" ;;
	esac
	grep -E '"(throughput|bytes_per_conn)"' "$f" | head -1 | sed "s|^ *|   $target $1: |" >&2
}

# A B C, then C B A, ... so no server always runs first or last.
order() { if (($1 % 2)); then echo chatd mosquitto mochi; else echo mochi mosquitto chatd; fi; }

run_traffic() { # round chat-scenario raw-shape args...
	local r=$1 scen=$2 shape=$3; shift 3
	for t in $(order "$r"); do
		if [[ $t == chatd ]]; then bench chatd "$scen" "$@"; else bench "$t" raw --shape "$shape" "$@"; fi
	done
}

median_of() { # json-field files... -> median
	local field=$1; shift
	grep -h "\"$field\"" "$@" | sed 's/[^0-9.]//g' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'
}

has() { [[ " $scenarios " == *" $1 "* ]]; }

for r in $(seq 1 "$rounds"); do
	log "round $r of $rounds"
	has direct && run_traffic "$r" direct pairs --pairs "$pairs" --messages "$msgs"
	has group && run_traffic "$r" group group --members "$group" --messages "$gmsgs"
	if has connections; then
		for t in $(order "$r"); do connections_run "$t" "$r"; done
	fi
done

# Latency at a fixed load: half of chatd's median maximum direct throughput.
if has rate && has direct; then
	max=$(median_of throughput "$out"/*-direct-chatd.json)
	half=$(awk -v m="$max" 'BEGIN {printf "%d", m / 2}')
	rmsgs=$(awk -v h="$half" -v p="$pairs" 'BEGIN {n = int(h * 5 / p); print (n < 20 ? 20 : n)}') # ~5 s
	for r in $(seq 1 "$rounds"); do
		log "fixed load ${half}/s, round $r of $rounds"
		run_traffic "$r" direct pairs --pairs "$pairs" --messages "$rmsgs" --rate "$half" --window 64
	done
fi

if has history; then
	hdir="$bench_dir/history-$hist"
	log "history store of $hist messages in $hdir (filled once, reused)"
	bin/chatbench history-fill --data-dir "$hdir" --messages "$hist" --chats 1000 2>>"$out/progress.log"
	start_chatd "$hdir" "$HIST_MQTT" "$HIST_HTTP"
	for r in $(seq 1 "$rounds"); do
		n=$((n + 1))
		f="$out/$(printf %03d $n)-history-chatd.json"
		bin/chatbench history --http "$HIST_HTTP" --mqtt "$HIST_MQTT" --data-dir "$hdir" --requests "$hist_req" --concurrency 1 --json >"$f" 2>>"$out/progress.log"
		grep '"p99_ms"' "$f" | head -1 | sed 's|^ *|   chatd history: |' >&2
	done
fi

# Isolation: healthy latency alone and next to a stalled consumer, chatd
# only (the plain brokers have no chat writers to stall). A violated bound
# fails make bench, after the table.
iso_status=0
if has isolation; then
	log "isolation: healthy pairs and a group, then a stalled consumer (chatd only)"
	n=$((n + 1))
	f="$out/$(printf %03d $n)-isolation-chatd.json"
	bin/chatbench isolation --http "$CHATD_HTTP" --mqtt "$CHATD_MQTT" --phase-a "$iso_a" --phase-b "$iso_b" \
		--max-ratio "$max_ratio" --json >"$f" 2>>"$out/progress.log" || iso_status=$?
	field() { sed -n "s/^ *\"$1\": *\([^,]*\),*$/\1/p" "$f" | head -1; }
	ratio=$(field p99_ratio) drop=$(field stall_disconnect_sec)
	if [[ -n $ratio ]]; then ratio=$(printf %.2f "$ratio"); else ratio="?"; fi
	if [[ $drop == null || -z $drop ]]; then drop="not dropped during phase B"; else drop=$(printf 'dropped after %.2fs' "$drop"); fi
	printf '   chatd isolation: p99 stalled/alone %sx (bound %sx), stalled client %s\n' "$ratio" "$max_ratio" "$drop" >&2
	((iso_status == 0)) || log "isolation bound violated (exit $iso_status): see $f"
fi

# Attachments: files up and down through chatd's REST API, chatd only.
if has attachments; then
	for r in $(seq 1 "$rounds"); do
		log "attachments: $att_up uploaders, $att_n files each ($att_sizes), round $r of $rounds"
		n=$((n + 1))
		f="$out/$(printf %03d $n)-attachments-chatd.json"
		bin/chatbench attachments --http "$CHATD_HTTP" --mqtt "$CHATD_MQTT" --uploaders "$att_up" --uploads "$att_n" \
			--sizes "$att_sizes" --json >"$f" 2>>"$out/progress.log"
		sed -n '/"attachments": {/,$p' "$f" | grep -E '"(mib_per_sec|p99_ms|server_cpu_sec_per_mib)"' | tr -d ' ,' | paste -sd' ' | sed 's|^|   chatd attachments (up, down): |' >&2
	done
fi

echo
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench-results' || echo ' (dirty)'), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $rounds rounds"
bin/chatbench table "$out"/*.json
if has isolation; then
	echo
	echo "isolation (chatd): p99 with a stalled consumer / alone = ${ratio}x (bound ${max_ratio}x), stalled client ${drop}"
fi
echo "results: $out"
exit "$iso_status"
