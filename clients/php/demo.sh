#!/usr/bin/env bash
# Starts a throwaway kamid for trying the PHP client, with a SKU `vip` and five demo codes.
#
#   bash clients/php/demo.sh          # start (127.0.0.1:${PORT:-7420}, data in ${DEMO_DIR:-/tmp/kami-php-demo})
#   bash clients/php/demo.sh stop     # stop it and remove its data
#
# Uses ${KAMID:-.build/debug/kamid} and ${KAMICTL:-.build/debug/kamictl} (relative to the repo).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DIR=${DEMO_DIR:-/tmp/kami-php-demo}
PORT=${PORT:-7420}
resolve() { case "$1" in /*) echo "$1" ;; *) echo "$ROOT/$1" ;; esac; }
KAMID=$(resolve "${KAMID:-.build/debug/kamid}")
KAMICTL=$(resolve "${KAMICTL:-.build/debug/kamictl}")

if [ "${1:-}" = stop ]; then
    if [ -f "$DIR/kamid.pid" ]; then
        kill -TERM "$(cat "$DIR/kamid.pid")" 2>/dev/null || true
        sleep 1
    fi
    rm -rf "$DIR"
    echo "stopped"
    exit 0
fi

if [ -f "$DIR/kamid.pid" ] && kill -0 "$(cat "$DIR/kamid.pid")" 2>/dev/null; then
    echo "a demo kamid is already running (pid $(cat "$DIR/kamid.pid")); 'bash $0 stop' first" >&2
    exit 1
fi
mkdir -p "$DIR/data"
chmod 0700 "$DIR" "$DIR/data"
: >"$DIR/kamid.log"
( "$KAMID" --data-dir "$DIR/data" --listen "127.0.0.1:$PORT" --metrics-listen off \
    </dev/null >>"$DIR/kamid.log" 2>&1 & echo $! >"$DIR/kamid.pid" )
for ((i = 0; i < 100; i++)); do
    grep -q 'ready tcp=' "$DIR/kamid.log" && break
    kill -0 "$(cat "$DIR/kamid.pid")" 2>/dev/null || { cat "$DIR/kamid.log" >&2; exit 1; }
    sleep 0.1
done
grep -q 'ready tcp=' "$DIR/kamid.log" || { echo "kamid did not start:" >&2; cat "$DIR/kamid.log" >&2; exit 1; }

ctl() { "$KAMICTL" --socket "$DIR/data/kamid.sock" --quiet "$@"; }
ctl sku set vip --name "VIP month" --price 1990 --per-user-limit 5 >/dev/null
{
    echo "secret,card_number"
    for i in 1 2 3 4 5; do echo "DEMO-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')-$i,NO-$i"; done
} >"$DIR/codes.csv"
ctl import "$DIR/codes.csv" --sku vip

echo "kamid is running on 127.0.0.1:$PORT (pid $(cat "$DIR/kamid.pid"), log $DIR/kamid.log). Now:"
echo "  php $HERE/example.php 127.0.0.1:$PORT @$DIR/data/default.token vip alice"
