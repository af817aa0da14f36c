#!/usr/bin/env bash
# The pytest suite many times in a row, for docs/reliability.md ("the suite passes N runs in a
# row"), optionally with a CPU-heavy process beside it.  One line per run in the log; stops at
# the first failing run (its output is kept) unless --keep-going.  Setup is not repeated: run
# scripts/setup.sh (or scripts/test.sh) once first.
#
#   scripts/reliability.sh RUNS [--hog] [--keep-going] [--log FILE] [-- PYTEST_ARGS...]
# PYTEST_ARGS default to `tests` (the whole suite, as scripts/test.sh runs it).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:?usage: scripts/reliability.sh RUNS [--hog] [--keep-going] [--log FILE] [-- PYTEST_ARGS...]}
shift
hog=0
keep_going=0
log=tests/artifacts/reliability.log
while [[ $# -gt 0 ]]; do
    case $1 in
        --hog) hog=1 ;;
        --keep-going) keep_going=1 ;;
        --log) log=$2; shift ;;
        --) shift; break ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$(dirname "$log")"
export QT_QPA_PLATFORM=offscreen
[[ $# -gt 0 ]] || set -- tests

hog_pid=
stop_hog() { [[ -n $hog_pid ]] && kill "$hog_pid" 2>/dev/null || true; }
trap stop_hog EXIT
if [[ $hog == 1 ]]; then
    .venv/bin/python -c "while True: pass" &
    hog_pid=$!
fi

commit=$(git rev-parse --short HEAD)
echo "# $(date -u +%FT%TZ) commit $commit, $runs runs, hog=$hog, $(nproc) CPUs" >>"$log"
passed=0
for ((i = 1; i <= runs; i++)); do
    out=$(mktemp)
    start=$SECONDS
    if .venv/bin/python -m pytest -q -p no:cacheprovider "$@" >"$out" 2>&1; then
        result=passed
        passed=$((passed + 1))
    else
        result=FAILED
    fi
    summary=$(grep -E "^(=+ )?[0-9]+ (passed|failed)" "$out" | tail -1 | tr -d '=' | xargs)
    echo "run $i/$runs $result in $((SECONDS - start)) s: $summary" | tee -a "$log"
    if [[ $result == FAILED ]]; then
        grep -E "^(FAILED|ERROR) " "$out" | tee -a "$log" || true
        cp "$out" "${log%.log}-run$i.txt"
        if [[ $keep_going == 0 ]]; then
            rm -f "$out"
            break
        fi
    fi
    rm -f "$out"
done
echo "# $passed of $((i > runs ? runs : i)) runs passed at $commit" | tee -a "$log"
[[ $passed == "$runs" ]]
