#!/usr/bin/env bash
# make bench: chatd against Mosquitto (non-persistent QoS 1 pass-through) and
# a bare mochi broker on loopback, each scenario on each server in
# alternation for BENCH_ROUNDS rounds, then the medians, chatd's ratios and
# the performance targets met or not (chatbench table).
#
# Traffic scenarios (256-byte bodies, QoS 1; chatd through its chat
# protocol, the plain brokers the same traffic on plain topics):
#   direct  saturation: BENCH_PAIRS_LIST pairs × MQTT 5 and 3.1.1, every
#           sender keeping BENCH_WINDOW sends in flight, for BENCH_SEND_FOR
#   rate    paced, on BENCH_PACED_PAIRS pairs × both versions: BENCH_LEVELS
#           percent of chatd's maximum (the median of this run's direct
#           saturation runs of that version on that many pairs; needs
#           direct), and BENCH_FIXED_RATE msgs/s offered
#   group   one sender into a group of BENCH_GROUP (sender included), MQTT 5:
#           saturation, and BENCH_GROUP_RATE msgs/s offered
# A paced run whose sends kept up with less than 95% of the offered rate
# (the server, or the load generator itself, fell behind) is flagged
# saturated in the table: its latency is not that of the offered load.
#
# Environment (defaults in brackets):
#   BENCH_QUICK=1          shorter runs and one paced level, for a ~5 minute run
#   BENCH_ROUNDS [3]       rounds; every round runs every scenario on every server
#   BENCH_PAIRS_LIST ["10 100"]  BENCH_WINDOW [100]  BENCH_SEND_FOR [5s; quick 1.5s]
#   BENCH_PACED_PAIRS [10] BENCH_LEVELS ["10 50 100"; quick "50"]  BENCH_FIXED_RATE [10000]
#   BENCH_PACED_SECS [5; quick 1.5]  seconds of sending per paced run
#   BENCH_GROUP [100]      BENCH_GROUP_RATE [200]
#   BENCH_CONNS [10000]    idle connections (the process fd limit is the bound)
#   BENCH_HOLD [10s; quick 3s]      how long they are held before the server's RSS is read
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
	d_for=1.5s d_paced=1.5 d_levels=50 conns=2000 hold=3s hist=200000 hist_req=2000 iso_a=5s iso_b=10s att_up=4 att_n=8
else
	d_for=5s d_paced=5 d_levels="10 50 100" conns=10000 hold=10s hist=10000000 hist_req=5000 iso_a=8s iso_b=15s att_up=8 att_n=32
fi
att_sizes=${BENCH_ATTACH_SIZES:-256KiB,4MiB}
rounds=${BENCH_ROUNDS:-3}
pairs_list=${BENCH_PAIRS_LIST:-10 100}
versions="5 3.1.1"
# 100 sends in flight per sender on every server: deep enough that no
# server waits on round trips (at 5,000 msgs/s per sender it covers 20 ms
# of PUBACK latency), so saturation measures the servers' CPU, and below
# every server's receive maximum (chatd 256, mochi 1024), so no server
# holds sends back either. 3.1.1 has no receive maximum; the same window.
window=${BENCH_WINDOW:-100}
send_for=${BENCH_SEND_FOR:-$d_for}
paced_pairs=${BENCH_PACED_PAIRS:-10}
paced_secs=${BENCH_PACED_SECS:-$d_paced}
levels=${BENCH_LEVELS:-$d_levels}
fixed_rate=${BENCH_FIXED_RATE:-10000}
group=${BENCH_GROUP:-100}
group_rate=${BENCH_GROUP_RATE:-200}
conns=${BENCH_CONNS:-$conns}
hold=${BENCH_HOLD:-$hold}
hist=${BENCH_HISTORY_MESSAGES:-$hist}
bench_dir=${BENCH_DIR:-/var/tmp/mqchat-bench}
out=${BENCH_OUT:-bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
scenarios=${BENCH_SCENARIOS:-direct group rate connections history isolation}
max_ratio=${BENCH_MAX_RATIO:-2}

# BENCH_PORT_OFFSET moves every port, for a second checkout's run next to
# this one; a port already in use stops the run rather than measure a
# server it did not start.
po=${BENCH_PORT_OFFSET:-0}
CHATD_MQTT=127.0.0.1:$((21883 + po)) CHATD_HTTP=127.0.0.1:$((28080 + po))
MOCHI_MQTT=127.0.0.1:$((21884 + po)) MOSQ_MQTT=127.0.0.1:$((21885 + po))
HIST_MQTT=127.0.0.1:$((21893 + po)) HIST_HTTP=127.0.0.1:$((28090 + po))
CONN_HTTP=127.0.0.1:$((28100 + po))

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

port_free() { # host:port
	if (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; then
		echo "something already listens on $1 (another make bench?); set BENCH_PORT_OFFSET" >&2
		return 1
	fi
}

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
	started=$!
	pids+=("$started")
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
for a in "$MOSQ_MQTT" "$MOCHI_MQTT" "$CHATD_MQTT" "$CHATD_HTTP" "$HIST_MQTT" "$HIST_HTTP" "$CONN_HTTP"; do port_free "$a"; done
"$mosquitto_bin" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
mosq_pid=$!
pids+=("$mosq_pid")
bin/barebroker --addr "$MOCHI_MQTT" >"$work/barebroker.log" 2>&1 &
mochi_pid=$!
pids+=("$mochi_pid")
start_chatd "$work/chatd" "$CHATD_MQTT" "$CHATD_HTTP"
chatd_pid=$started
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
	port=$((21903 + po + n))
	port_free 127.0.0.1:$port
	f="$out/$(printf %03d $n)-connections-$t.json"
	case $t in
	chatd)
		# The connections are spread over --users users as devices (20 each
		# at the default 2,000 connections): the per-user connection limit
		# is lifted, as it is not what this run measures.
		MQCHAT_LIMITS_AUTH_RATE=0 MQCHAT_AUTH_BCRYPT_COST=4 MQCHAT_LOG_LEVEL=warn MQCHAT_LIMITS_MAX_CONNECTIONS_PER_USER=100000 \
			bin/chatd serve --data_dir "$work/conn-$2" --mqtt.addr 127.0.0.1:$port --mqtt.ws_addr= --http.addr $CONN_HTTP >>"$work/chatd.log" 2>&1 &
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
	[[ $t != chatd ]] || wait_port $CONN_HTTP
	local plain=--plain
	[[ $t != chatd ]] || plain=
	bin/chatbench connections $plain --target "$t" --http $CONN_HTTP --mqtt 127.0.0.1:$port --server-pid "$pid" \
		--conns "$conns" --hold "$hold" --json >"$f" 2>>"$out/progress.log"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	grep '"bytes_per_conn"' "$f" | sed "s|^ *|   $t connections: |" >&2
}

# field NAME: the first value of NAME in the JSON file $f.
field() { sed -n "s/^ *\"$1\": *\([^,]*\),*$/\1/p" "$f" | head -1; }

n=0
# One run: its JSON goes to $out/NNN-name-target.json and a line of its
# figures to the terminal. Every server's CPU is read from /proc/PID/stat
# of the process started above, over the run's measured window.
bench() { # target name scenario-args...
	local target=$1 name=$2; shift 2
	n=$((n + 1))
	local f="$out/$(printf %03d $n)-$name-$target.json"
	case $target in
	chatd) bin/chatbench "$@" --http "$CHATD_HTTP" --mqtt "$CHATD_MQTT" --server-pid "$chatd_pid" --json >"$f" 2>>"$out/progress.log" ;;
	mosquitto) bin/chatbench "$@" --mqtt "$MOSQ_MQTT" --target mosquitto --server-pid "$mosq_pid" --json >"$f" 2>>"$out/progress.log" ;;
	mochi) bin/chatbench "$@" --mqtt "$MOCHI_MQTT" --target mochi --server-pid "$mochi_pid" --json >"$f" 2>>"$out/progress.log" ;;
	esac
	local line
	line=$(printf '%.0f/s  p99 %.2f ms  server %.1f µs/msg' "$(field throughput)" "$(field p99_ms)" "$(field cpu_us_per_delivery)" 2>/dev/null || true)
	if [[ $(field saturated) == true ]]; then line+="  SATURATED (sent $(printf %.0f "$(field achieved_send_rate)")/s of $(field offered_rate))"; fi
	printf '   %-9s %-20s %s\n' "$target" "$name" "$line" >&2
}

# A B C, then C B A, ... so no server always runs first or last.
order() { if (($1 % 2)); then echo chatd mosquitto mochi; else echo mochi mosquitto chatd; fi; }

run_traffic() { # round name chat-scenario raw-shape args...
	local r=$1 name=$2 scen=$3 shape=$4; shift 4
	for t in $(order "$r"); do
		if [[ $t == chatd ]]; then bench chatd "$name" "$scen" "$@"; else bench "$t" "$name" raw --shape "$shape" "$@"; fi
	done
}

median_of() { # json-field files... -> median
	local field=$1; shift
	grep -h -m1 "\"$field\"" "$@" | sed 's/[^0-9.]//g' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'
}

has() { [[ " $scenarios " == *" $1 "* ]]; }

paced_msgs() { # rate senders -> messages per sender for ~$paced_secs of sending
	awk -v r="$1" -v p="$2" -v s="$paced_secs" 'BEGIN {n = int(r * s / p + 0.5); print (n < 20 ? 20 : n)}'
}

# Saturation runs send for $send_for; --messages is only a bound, so every
# server is measured over the same time whatever its speed.
for r in $(seq 1 "$rounds"); do
	log "round $r of $rounds"
	if has direct; then
		for p in $pairs_list; do
			for v in $versions; do
				run_traffic "$r" "direct-p$p-v$v" direct pairs --pairs "$p" --mqtt-version "$v" --window "$window" \
					--messages $((1000000 / p)) --send-for "$send_for"
			done
		done
	fi
	if has group; then
		run_traffic "$r" group-sat group group --members "$group" --window "$window" --messages 20000 --send-for "$send_for"
		run_traffic "$r" "group$group_rate" group group --members "$group" --window "$window" \
			--rate "$group_rate" --messages "$(paced_msgs "$group_rate" 1)"
	fi
	if has connections; then
		for t in $(order "$r"); do connections_run "$t" "$r"; done
	fi
done

# Paced runs: every server gets the same offered rate. The levels are
# shares of chatd's maximum per MQTT version, from this run's saturation
# medians on $paced_pairs pairs; then the fixed rate on $paced_pairs pairs.
# (The group's fixed rate runs with the group scenario above.)
if has rate; then
	declare -A chatd_max
	for v in $versions; do
		chatd_max[$v]=0
		if has direct && ls "$out"/*-direct-p$paced_pairs-v$v-chatd.json >/dev/null 2>&1; then
			chatd_max[$v]=$(median_of throughput "$out"/*-direct-p$paced_pairs-v$v-chatd.json)
		fi
		((${chatd_max[$v]%.*} > 0)) || log "no direct saturation run on $paced_pairs pairs with MQTT $v: its paced levels are skipped"
	done
	for r in $(seq 1 "$rounds"); do
		log "paced round $r of $rounds"
		for v in $versions; do
			if ((${chatd_max[$v]%.*} > 0)); then
				for l in $levels; do
					rate=$(awk -v m="${chatd_max[$v]}" -v l="$l" 'BEGIN {printf "%d", m * l / 100}')
					run_traffic "$r" "paced$l-v$v" direct pairs --pairs "$paced_pairs" --mqtt-version "$v" --window "$window" \
						--rate "$rate" --load-label "$l%" --messages "$(paced_msgs "$rate" "$paced_pairs")"
				done
			fi
			run_traffic "$r" "fixed$fixed_rate-v$v" direct pairs --pairs "$paced_pairs" --mqtt-version "$v" --window "$window" \
				--rate "$fixed_rate" --messages "$(paced_msgs "$fixed_rate" "$paced_pairs")"
		done
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
