#!/usr/bin/env bash
# Tests of the PHP client against a real kamid.
#
#   bash clients/php/test.sh            # from the repo root (or anywhere)
#   KAMID=.build/release/kamid KAMICTL=.build/release/kamictl bash clients/php/test.sh
#
# Starts kamid in a temp dir on 127.0.0.1 (port 0), creates SKUs and imports codes with
# kamictl (run.php sets more SKU fields with JSON over the Unix socket), runs clients/php/tests/run.php, and stops kamid on any exit (the webhook test starts
# a kamid of its own, with webhooks configured, and a `php -S` receiver, and stops both). Exit
# status is non-zero on any failure. `test.sh --restart-kamid WORKDIR` is used by the PHP tests to
# restart that kamid on the same port and data dir.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PHP=${PHP:-php}

# A path relative to the repo root (or absolute, or relative to the caller's directory).
resolve() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) if [ -e "$ROOT/$1" ]; then printf '%s\n' "$ROOT/$1"; else printf '%s\n' "$PWD/$1"; fi ;;
    esac
}

alive() { # pid: running and not a zombie
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)
    [ -n "$state" ] && [ "$state" != Z ]
}

# start_kamid WORKDIR LISTEN: starts kamid detached (not our child, so a restart from another
# process can see it exit), waits for its ready line, writes WORKDIR/kamid.pid and WORKDIR/port.
start_kamid() {
    local work=$1 listen=$2 log="$1/kamid.log" i port
    : >"$log"
    ( "$KAMID" --data-dir "$work/data" --listen "$listen" --durability full --metrics-listen off \
        </dev/null >>"$log" 2>&1 & echo $! >"$work/kamid.pid" )
    for ((i = 0; i < 300; i++)); do
        if grep -q '>ready' "$log" 2>/dev/null || grep -q 'ready tcp=' "$log" 2>/dev/null; then
            port=$(grep -o 'ready tcp=[0-9]*' "$log" | head -n1 | sed 's/.*=//')
            if [ -n "$port" ]; then
                echo "$port" >"$work/port"
                return 0
            fi
        fi
        if ! alive "$(cat "$work/kamid.pid")"; then
            echo "kamid exited before it was ready:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "kamid not ready after 30 s:" >&2
    cat "$log" >&2
    return 1
}

stop_kamid() {
    local work=$1 pid i
    [ -f "$work/kamid.pid" ] || return 0
    pid=$(cat "$work/kamid.pid")
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
    fi
    rm -f "$work/kamid.pid"
}

if [ "${1:-}" = "--restart-kamid" ]; then
    KAMID=$(cat "$2/kamid.path")
    port=$(cat "$2/port")
    stop_kamid "$2"
    start_kamid "$2" "127.0.0.1:$port"
    exit 0
fi

KAMID=$(resolve "${KAMID:-.build/debug/kamid}")
KAMICTL=$(resolve "${KAMICTL:-.build/debug/kamictl}")
for bin in "$KAMID" "$KAMICTL"; do
    [ -x "$bin" ] || { echo "not executable: $bin (build it, or set KAMID / KAMICTL)" >&2; exit 2; }
done
command -v "$PHP" >/dev/null || { echo "php not found" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kami-php-test.XXXXXX")
cleanup() {
    local rc=$?
    stop_kamid "$WORK" || true
    if [ "$rc" -ne 0 ] && [ -f "$WORK/kamid.log" ]; then
        echo "--- kamid log (last 30 lines) ---" >&2
        tail -n 30 "$WORK/kamid.log" >&2 || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -m 0700 "$WORK/data" "$WORK/codes"
echo "$KAMID" >"$WORK/kamid.path"
start_kamid "$WORK" 127.0.0.1:0
PORT=$(cat "$WORK/port")
SOCK="$WORK/data/kamid.sock"
echo "kamid $("$KAMID" --version 2>&1 | head -n1) on 127.0.0.1:$PORT"

ctl() { "$KAMICTL" --socket "$SOCK" --timeout 30 --quiet "$@" >/dev/null; }

# SKU NAME LIMIT COUNT: a SKU with COUNT codes PREFIX-0001.. (card numbers on odd ones).
make_sku() {
    local sku=$1 limit=$2 count=$3 csv="$WORK/codes/$1.csv" i
    printf 'secret,card_number\n' >"$csv"
    for ((i = 1; i <= count; i++)); do
        if ((i % 2)); then
            printf '%s-%04d-%s,CARD-%s-%d\n' "${sku^^}" "$i" "$RANDOM$RANDOM" "$sku" "$i" >>"$csv"
        else
            printf '%s-%04d-%s,\n' "${sku^^}" "$i" "$RANDOM$RANDOM" >>"$csv"
        fi
    done
    ctl sku set "$sku" --name "test $sku" --price 990 --per-user-limit "$limit"
    ctl import "$csv" --sku "$sku"
}
make_sku vip 2 8       # per-user limit 2
make_sku solo 0 1      # one code: sold out after one sale
make_sku hold 0 6      # reserve / commit / release
make_sku retry 0 8     # reconnects and lost replies
make_sku act 0 8       # activation (its template and usage guide are set by the test)

"$PHP" "$HERE/tests/run.php" 127.0.0.1 "$PORT" \
    --token-file "$WORK/data/default.token" \
    --kamictl "$KAMICTL" --socket "$SOCK" \
    --codes "$WORK/codes" \
    --kamid "$KAMID" \
    --restart "bash $(printf '%q' "$HERE/test.sh") --restart-kamid $(printf '%q' "$WORK")"
