#!/usr/bin/env bash
# fuzz.sh runs every fuzz target of the module (every `func FuzzXxx` in a
# *_test.go file git knows) for FUZZTIME each, one after the other, and
# fails if any finds a failing input (go test writes it under the
# package's testdata/fuzz/ so that it becomes a regression test).
#
#   FUZZTIME=10s scripts/fuzz.sh     # what `make test` runs
#   FUZZTIME=5m scripts/fuzz.sh      # `make fuzz FUZZTIME=5m`
#
# Each run is bounded twice: -fuzztime, and `timeout` at FUZZTIME plus
# FUZZ_SLACK (default 5m, for building the instrumented test binary on a
# loaded machine).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FUZZTIME=${FUZZTIME:-10s}
FUZZ_SLACK=${FUZZ_SLACK:-5m}
GO=${GO:-go}

to_seconds() { # 10s, 5m, 1h, or a plain number of seconds
	local v=$1
	case $v in
	*h) echo $((${v%h} * 3600)) ;;
	*m) echo $((${v%m} * 60)) ;;
	*s) echo "${v%s}" ;;
	*) echo "$v" ;;
	esac
}
bound=$(($(to_seconds "$FUZZTIME") + $(to_seconds "$FUZZ_SLACK")))

mapfile -t targets < <(git grep -h -n -E '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' -- '*_test.go' >/dev/null 2>&1 &&
	git grep -E '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' -- '*_test.go' |
	sed -E 's#^(.*):func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#' |
		while read -r file name; do
			dir=$(dirname "$file")
			echo "./$dir $name"
		done | sort -u)
if [[ ${#targets[@]} -eq 0 ]]; then
	echo "fuzz.sh: no fuzz targets found" >&2
	exit 1
fi

failed=()
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "=== fuzz $pkg $name for $FUZZTIME"
	if ! timeout --kill-after=10s "${bound}s" "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"; then
		failed+=("$pkg $name")
	fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
	printf 'fuzz.sh: FAILED: %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, $FUZZTIME each: OK"
