#!/usr/bin/env bash
# The suite's core on every Python >= 3.11 this machine has, besides the one of .venv (where
# scripts/test.sh runs the full suite).  Each gets its own environment under
# .venv/interpreters/X.Y with the package and its test extras.  What was found, and what is
# run or left out (and why), is printed; an interpreter that cannot be set up fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

# protocol, concurrency, interrupt, stdin, output (Python- and fd-level), subshells: both
# backends are parametrized inside each module.  Tests marked gui (tk/qt hosts, which need
# Qt in each environment) are left to the full suite, and the run says so.
CORE=(
    tests/test_execute.py tests/test_requests.py tests/test_concurrency.py
    tests/test_interrupt.py tests/test_stdin.py tests/test_fd_output.py
    tests/test_subshells.py tests/test_cli.py
)

main_version="$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
declare -A found=()
candidates=()
for exe in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/*/bin/python3 /usr/bin/python3.* /usr/local/bin/python3.*; do
    [[ -x "$exe" && "$exe" =~ python3(\.[0-9]+)?$ ]] && candidates+=("$exe")
done
for name in python3.11 python3.12 python3.13 python3.14 python3; do
    exe="$(command -v "$name" 2>/dev/null || true)"
    [ -n "$exe" ] && candidates+=("$exe")
done
for exe in "${candidates[@]}"; do
    version="$("$exe" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
    case "$version" in
        3.1[1-9]|3.[2-9][0-9]) [ -z "${found[$version]:-}" ] && found[$version]="$exe" ;;
        "") ;;
        *) echo "interpreters: $exe is Python $version, below 3.11: not supported, not run" ;;
    esac
done

echo "interpreters: .venv runs Python $main_version (the full suite)"
versions=$(printf '%s\n' "${!found[@]}" | sort -V)
echo "interpreters: found Python $(echo $versions | sed 's/ /, /g') (>= 3.11)"
status=0
for version in $versions; do
    if [ "$version" = "$main_version" ]; then
        echo "interpreters: $version is .venv's own: covered by the full suite"
        continue
    fi
    exe="${found[$version]}"
    env_dir=".venv/interpreters/$version"
    echo "interpreters: Python $version ($exe): core suite in $env_dir"
    if [ ! -x "$env_dir/bin/python" ]; then
        "$exe" -m venv "$env_dir"
        "$env_dir/bin/python" -m pip install -q --upgrade pip
    fi
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$env_dir/bin/python" -m pip install -q -e ".[test,trio]"
    echo "interpreters: Python $version: ${CORE[*]} (not the tests marked gui)"
    if ! QT_QPA_PLATFORM=offscreen "$env_dir/bin/python" -m pytest -q -p no:cacheprovider \
        -m "not gui" "${CORE[@]}"; then
        echo "interpreters: Python $version: the core suite FAILED"
        status=1
    fi
done
exit $status
