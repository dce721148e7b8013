#!/usr/bin/env bash
# The requests of gateway.http and echo.http as curl --unix-socket commands, each checking its status.
# Usage: http-samples/curl-samples.sh [socket]   (default /tmp/gateway/gateway.sock)
# Exit status: the number of requests whose status was not the expected one (0 = all good).
set -uo pipefail
socket=${1:-/tmp/gateway/gateway.sock}
base=http://localhost
failures=0

# check EXPECTED_STATUS CURL_ARGS... : runs curl over the socket, prints the status and the body's first line.
check() {
  local expected=$1; shift
  local out status shown
  shown=$(printf ' %q' "$@")  # copy-pasteable
  out=$(mktemp)
  status=$(curl -sS --unix-socket "$socket" -o "$out" -w '%{http_code}' "$@") || status="curl-error"
  if [ "$status" = "$expected" ]; then
    printf 'ok   %s  curl --unix-socket %q%s\n' "$status" "$socket" "$shown"
  else
    printf 'FAIL expected %s, got %s  curl --unix-socket %q%s\n' "$expected" "$status" "$socket" "$shown"
    head -c 400 "$out"; echo
    failures=$((failures + 1))
  fi
  rm -f "$out"
}

# The gateway's own endpoints
check 200 "$base/healthz"
check 200 "$base/readyz"
check 200 "$base/admin/backends"
check 200 "$base/admin/capture?backend=echo&duration=0.5"
check 200 "$base/openapi/v1.json"
check 200 "$base/swagger/index.html"
check 404 "$base/no/such/route"

# The demo route /echo/{**rest}
check 200 "$base/echo/hello"
check 200 "$base/echo/a/b/c?x=1"
check 200 -H 'Content-Type: text/plain' --data-binary 'hi there' "$base/echo/anything"
check 201 -X PUT -H 'Content-Type: application/json' -H 'x-echo-status: 201' --data-binary '{"name": "value"}' "$base/echo/created"
check 200 -X PATCH -H 'Content-Type: text/plain' --data-binary 'patch body' "$base/echo/patched"
check 200 -X DELETE "$base/echo/item"
check 200 -H 'X-Request-Id: my-request-42' "$base/echo/with-request-id"
check 503 -H 'x-echo-status: 503' "$base/echo/unavailable"

exit "$failures"
