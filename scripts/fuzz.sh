#!/usr/bin/env bash
# Runs every native Go fuzz target of the module for a bounded time, one
# after another (go test -fuzz takes one package and one target per run).
#
#   FUZZTIME      time per target, any -fuzztime value (default 10s; 500x = a
#                 number of executions instead)
#   FUZZPARALLEL  fuzzing workers per target (default: GOMAXPROCS)
#   FUZZ          regexp: only the targets whose name matches
#   GO            the go command (default go)
#
# Targets are found by scanning the test files for `func Fuzz` and asking
# `go test -list` for their names, so a new target runs without editing
# this script. It fails when any target fails: a crash, a failed property
# or a hang. go test then writes the failing input to
# testdata/fuzz/{target}/ in the target's package; this script prints it.
# Commit it (it becomes a seed) with the fix.
#
# One failure is not a finding: with a duration -fuzztime, Go before 1.27
# can end a run with a bare "context deadline exceeded" when a worker is
# still busy at the deadline (golang/go#75804), with no failing input.
# Such a run is replayed on the target's seed corpus and counts as passed
# when that replay passes.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
FUZZ=${FUZZ:-.}
parallel=()
[ -n "${FUZZPARALLEL:-}" ] && parallel=(-parallel="$FUZZPARALLEL")

mapfile -t pkgs < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u)
if [ ${#pkgs[@]} -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=() ran=0 start=$SECONDS
for pkg in "${pkgs[@]}"; do
	mapfile -t targets < <("$GO" test -list '^Fuzz' "$pkg" | grep '^Fuzz' | grep -E -- "$FUZZ" || true)
	for t in "${targets[@]}"; do
		ran=$((ran + 1))
		printf 'fuzz: %s %s for %s\n' "$pkg" "$t" "$FUZZTIME"
		if "$GO" test -run='^$' -fuzz="^${t}\$" -fuzztime="$FUZZTIME" "${parallel[@]}" "$pkg" >"$log" 2>&1; then
			grep -E '^fuzz: elapsed: .*execs' "$log" | tail -n1 || true
			continue
		fi
		if ! grep -q 'Failing input written to' "$log" &&
			[ "$(grep -c -E '^\s+context deadline exceeded$' "$log")" -eq 1 ] &&
			! grep -q -E '^\s+\S+\.go:[0-9]+: |^panic:|fuzzing process hung' "$log"; then
			grep -E '^fuzz: elapsed: .*execs' "$log" | tail -n1 || true
			echo "fuzz: $t stopped with a bare deadline error (golang/go#75804); replaying its seed corpus"
			if "$GO" test -count=1 -run="^${t}\$" "$pkg" >"$log" 2>&1; then
				continue
			fi
		fi
		cat "$log"
		if input=$(grep -o 'testdata/fuzz/[^ ]*' "$log" | head -n1) && [ -f "$pkg/$input" ]; then
			echo "fuzz: failing input $pkg/$input:"
			cat "$pkg/$input"
		fi
		failed+=("$pkg $t")
	done
done

echo "fuzz: $ran targets in $((SECONDS - start))s"
if [ $ran -eq 0 ]; then
	echo "fuzz: no target matches FUZZ=$FUZZ" >&2
	exit 1
fi
if [ ${#failed[@]} -gt 0 ]; then
	printf 'fuzz: FAILED %s\n' "${failed[@]}" >&2
	exit 1
fi
