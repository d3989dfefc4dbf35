#!/bin/sh
# `make run`: start a private Redis (data in var/redis, loopback only) and huiqid,
# load the demo data on first start, print how to use it, and stop both cleanly on
# Ctrl-C. Settings: HUIQI_LISTEN (default 127.0.0.1:8080), HUIQI_REDIS_PORT
# (default 6479), HUIQI_NO_DEMO=1 to skip the demo data. A development admin key
# is made once in var/admin.key (huiqid creates it in Redis at start).
set -eu

HUIQID=${1:-build/huiqid}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
LISTEN=${HUIQI_LISTEN:-127.0.0.1:8080}
RPORT=${HUIQI_REDIS_PORT:-6479}
VAR="$ROOT/var"
mkdir -p "$VAR/redis"

port_busy() {
    python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1]))); sys.exit(1)
except OSError:
    sys.exit(0)' "$1"
}

HPORT=${LISTEN##*:}
if port_busy "$HPORT"; then
    echo "make run: port $HPORT is in use; choose another with HUIQI_LISTEN=127.0.0.1:PORT make run" >&2
    exit 1
fi
if port_busy "$RPORT"; then
    echo "make run: Redis port $RPORT is in use; choose another with HUIQI_REDIS_PORT=PORT make run" >&2
    exit 1
fi

REDIS_PID=""
HUIQID_PID=""
cleanup() {
    trap - INT TERM EXIT
    echo
    echo "stopping huiqid and Redis..."
    if [ -n "$HUIQID_PID" ]; then kill -TERM "$HUIQID_PID" 2>/dev/null || true; wait "$HUIQID_PID" 2>/dev/null || true; fi
    if [ -n "$REDIS_PID" ]; then
        redis-cli -p "$RPORT" shutdown >/dev/null 2>&1 || kill -TERM "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    echo "stopped. Data is kept in var/redis; 'make run' again continues from it."
}
trap cleanup INT TERM EXIT

redis-server "$ROOT/deploy/redis.conf" --port "$RPORT" --dir "$VAR/redis" \
    --logfile "$VAR/redis.log" --bind 127.0.0.1 &
REDIS_PID=$!

# Wait for Redis (bounded).
i=0
until redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then echo "make run: Redis did not start; see var/redis.log" >&2; exit 1; fi
    sleep 0.1
done

KEYFILE="$VAR/admin.key"
if [ ! -s "$KEYFILE" ]; then
    (umask 077 && python3 "$ROOT/tools/huiqi" keys generate >"$KEYFILE")
fi
HUIQI_KEY=$(cat "$KEYFILE")

"$HUIQID" --listen "$LISTEN" --redis "127.0.0.1:$RPORT" --admin-key-file "$KEYFILE" \
    2>>"$VAR/huiqid.log" &
HUIQID_PID=$!

URL="http://$LISTEN"
i=0
until curl -sf "$URL/readyz" >/dev/null 2>&1; do
    i=$((i + 1))
    if ! kill -0 "$HUIQID_PID" 2>/dev/null; then echo "make run: huiqid exited; see var/huiqid.log" >&2; tail -5 "$VAR/huiqid.log" >&2; exit 1; fi
    if [ $i -gt 300 ]; then echo "make run: huiqid not ready after 30 s; see var/huiqid.log" >&2; exit 1; fi
    sleep 0.1
done

AUTH="Authorization: Bearer $HUIQI_KEY"
# The key is created in Redis once huiqid is ready; ask until it is accepted.
i=0
until curl -s -o /dev/null -w '%{http_code}' -H "$AUTH" "$URL/v1/policies?limit=1" | grep -q 200; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then echo "make run: the admin key in var/admin.key is not accepted; see var/huiqid.log" >&2; exit 1; fi
    sleep 0.1
done
if [ "${HUIQI_NO_DEMO:-0}" != 1 ] && curl -s -H "$AUTH" "$URL/v1/enterprises?limit=1" | grep -q '"items":\[\]'; then
    echo "loading the demo data (Wuxi enterprises and policies)..."
    python3 "$ROOT/tools/load_demo.py" --url "$URL" --key "$HUIQI_KEY"
fi

DEMO=$(head -1 "$ROOT/deploy/demo/enterprises.ndjson" 2>/dev/null | sed 's/.*"uscc": *"\([0-9A-Z]*\)".*/\1/')
cat <<MSG

huiqi is running at $URL   (Redis on 127.0.0.1:$RPORT, data in var/redis, logs in var/)

Development admin key (kept in var/admin.key; every /v1 call needs a key):
  export HUIQI_KEY=$HUIQI_KEY

Try:
  curl -s -H "Authorization: Bearer \$HUIQI_KEY" '$URL/v1/tags?vocab=policy'
  curl -s -H "Authorization: Bearer \$HUIQI_KEY" '$URL/v1/policies?status=published'
  curl -s -H "Authorization: Bearer \$HUIQI_KEY" '$URL/v1/enterprises/$DEMO/policies'
  curl -s -H "Authorization: Bearer \$HUIQI_KEY" '$URL/v1/policies/1/audience'

More keys: python3 tools/huiqi keys create --role operator   (see docs/api.md, "Access")

Press Ctrl-C to stop.
MSG
wait "$HUIQID_PID"
