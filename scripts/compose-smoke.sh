#!/usr/bin/env bash
# compose-smoke.sh - build and start docker-compose.yml (gateway + C# echo backend + raw Python
# daemon), send requests through the shared-volume socket with `curl --unix-socket`, check the
# replies, the socket permissions, the backends' healthchecks and the health-gated start, the
# hardening (read-only root, no capabilities, no-new-privileges, internal network), the HEALTHCHECK and
# the SIGTERM shutdown (a request in flight drains within the 10 s stop), then remove every container,
# network and volume of the run (the built images are kept as build cache).
#
#   scripts/compose-smoke.sh              # podman + podman-compose (see docs/sidecar.md)
#   COMPOSE="docker compose" ENGINE=docker scripts/compose-smoke.sh
#
# Knobs: PROJECT (compose project name, default gwsmoke<pid>), WAIT_SECONDS (start-up bound, 90),
#        KEEP=1 (leave the stack running for inspection; tear down with the printed command).
# Exit status 0 = every check passed. Needs: bash, curl, stat, and root or rootless podman.
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -z "${COMPOSE:-}" ]; then
  if command -v podman-compose >/dev/null; then COMPOSE=podman-compose; ENGINE=${ENGINE:-podman}
  elif command -v docker >/dev/null; then COMPOSE="docker compose"; ENGINE=${ENGINE:-docker}
  else echo "compose-smoke: need podman-compose or docker compose" >&2; exit 2; fi
fi
ENGINE=${ENGINE:-podman}
PROJECT=${PROJECT:-gwsmoke$$}
WAIT_SECONDS=${WAIT_SECONDS:-90}
SERVICES=(gateway echo raw-echo)          # named explicitly: the optional "otel" profile stays off
SHARED_GID=1654
# Podman drops HEALTHCHECK from OCI-format images; the docker format keeps it.
export BUILDAH_FORMAT=docker

compose() { $COMPOSE -p "$PROJECT" "$@"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
log() { printf '[compose-smoke] %s\n' "$*"; }
FAILURES=0
fail() { printf '[compose-smoke] FAIL: %s\n' "$*" >&2; FAILURES=$((FAILURES + 1)); }
ok() { printf '[compose-smoke] ok: %s\n' "$*"; }

cid() {  # container id of a service of this project
  $ENGINE ps -a --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.ID}}' | head -1
}

dump_logs() {
  local s id
  for s in "${SERVICES[@]}"; do
    id=$(cid "$s") || true
    [ -n "$id" ] || continue
    echo "----- logs of $s ($($ENGINE inspect -f '{{.State.Status}} exit={{.State.ExitCode}}' "$id" 2>/dev/null))"
    $ENGINE logs --tail 40 "$id" 2>&1 | sed 's/^/    /' || true
  done
}

TORN_DOWN=0
teardown() {
  [ "$TORN_DOWN" = 1 ] && return
  TORN_DOWN=1
  if [ "${KEEP:-0}" = 1 ]; then
    log "KEEP=1: stack left running; tear down with: $COMPOSE -p $PROJECT down -v && $ENGINE network rm ${PROJECT}_sidecar"
    return
  fi
  local t; t=$(now)
  compose down -v -t 30 >/dev/null 2>&1 || true
  # podman-compose 1.0.3 removes neither the network nor (if down failed half-way) the volume.
  $ENGINE rm -f $($ENGINE ps -aq --filter "label=com.docker.compose.project=$PROJECT") >/dev/null 2>&1 || true
  $ENGINE volume rm -f "${PROJECT}_sockets" >/dev/null 2>&1 || true
  $ENGINE network rm -f "${PROJECT}_sidecar" >/dev/null 2>&1 || true
  $ENGINE network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
  local left
  left="$($ENGINE ps -aq --filter "label=com.docker.compose.project=$PROJECT")$($ENGINE volume ls -q --filter "name=${PROJECT}_")$($ENGINE network ls -q --filter "name=${PROJECT}_")"
  if [ -n "$left" ]; then fail "teardown left resources behind: $left"; else log "teardown: containers, network and volume removed ($(elapsed "$t"))"; fi
}
on_exit() {
  local rc=$?
  [ "$rc" != 0 ] && [ "$FAILURES" = 0 ] && FAILURES=1
  [ "$FAILURES" != 0 ] && dump_logs
  teardown
  if [ "$FAILURES" = 0 ]; then log "PASS ($(elapsed "$T0") in total)"; exit 0; fi
  log "FAILED: $FAILURES check(s) ($(elapsed "$T0") in total)"; exit 1
}

T0=$(now)
trap on_exit EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ build + start
t=$(now)
log "project $PROJECT: $COMPOSE up -d --build ${SERVICES[*]}"
UP_LOG=/tmp/$PROJECT-up.log
# podman-compose 1.0.3 exits 0 even when a build or run inside fails (it prints "exit code: N"
# after each podman command), so look at those too: a failed build must not test a stale image.
if ! compose up -d --build "${SERVICES[@]}" > "$UP_LOG" 2>&1 || grep -q '^exit code: [1-9]' "$UP_LOG"; then
  grep -v '^\(STEP\|-->\|COMMIT\)' "$UP_LOG" | tail -40 >&2
  fail "compose up failed (log: $UP_LOG)"; exit 1
fi
log "build + start: $(elapsed "$t")"

VOLUME_DIR=$($ENGINE volume inspect "${PROJECT}_sockets" --format '{{.Mountpoint}}')
SOCK=$VOLUME_DIR/gateway.sock
log "socket volume ${PROJECT}_sockets at $VOLUME_DIR"

# ------------------------------------------------------------------ wait (bounded) for the gateway
t=$(now)
deadline=$(( $(date +%s) + WAIT_SECONDS ))
until [ -S "$SOCK" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --unix-socket "$SOCK" http://localhost/healthz)" = 200 ]; do
  for s in "${SERVICES[@]}"; do
    id=$(cid "$s")
    if [ -z "$id" ] || [ "$($ENGINE inspect -f '{{.State.Running}}' "$id")" != true ]; then
      fail "service $s is not running"; exit 1
    fi
  done
  [ "$(date +%s)" -lt "$deadline" ] || { fail "gateway not healthy on $SOCK within ${WAIT_SECONDS}s"; exit 1; }
  sleep 0.5
done
log "gateway answers GET /healthz on the volume socket after $(elapsed "$t")"

# ------------------------------------------------------------------ backend healthchecks and the health-gated start
# The gateway's depends_on waits for service_healthy (docker compose does; podman-compose 1.0.3 only orders
# the start, and the gateway re-probes a backend that is not up yet after 0.5 s, 1 s, ...).
got=$(python3 - <<'PY' 2>&1
import yaml
deps = yaml.safe_load(open("docker-compose.yml"))["services"]["gateway"]["depends_on"]
print(" ".join(f"{name}:{(spec or {}).get('condition')}" for name, spec in sorted(deps.items())))
PY
)
[ "$got" = "echo:service_healthy raw-echo:service_healthy" ] && ok "gateway depends_on: $got" \
  || fail "gateway depends_on is '$got', want both backends with condition service_healthy"
health() {  # health <service>: 0 when the container's healthcheck passes now
  if [ "$ENGINE" = podman ]; then podman healthcheck run "$(cid "$1")" >/dev/null 2>&1
  else [ "$(docker inspect -f '{{.State.Health.Status}}' "$(cid "$1")")" = healthy ]; fi
}
t=$(now)
for s in echo raw-echo; do
  deadline=$(( $(date +%s) + WAIT_SECONDS ))
  until health "$s"; do
    [ "$(date +%s)" -lt "$deadline" ] || { fail "$s: healthcheck not passing within ${WAIT_SECONDS}s"; break; }
    sleep 0.5
  done
  health "$s" && ok "$s: healthcheck passes after $(elapsed "$t") ($($ENGINE inspect -f '{{join .Config.Healthcheck.Test " "}}' "$(cid "$s")" 2>/dev/null | sed "s|^CMD-SHELL /bin/sh -c ||; s/' '/ /g"))"
done
t=$(now)
# Both backends in the gateway's rotation: /readyz is 200 only when every backend has a healthy instance.
deadline=$(( $(date +%s) + 10 ))
until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --unix-socket "$SOCK" http://localhost/readyz)" = 200 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { fail "gateway /readyz not 200 within 10 s of the backends being healthy"; break; }
  sleep 0.2
done
log "gateway /readyz 200 (both backends taken in) $(elapsed "$t") after their healthchecks passed"

# ------------------------------------------------------------------ hardening (docker-compose.yml x-hardened)
for s in "${SERVICES[@]}"; do
  id=$(cid "$s")
  ro=$($ENGINE inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$id")
  secopt=$($ENGINE inspect -f '{{join .HostConfig.SecurityOpt ","}}' "$id")
  # What the process really has: no effective/permitted/bounding capability, no_new_privs set.
  status=$($ENGINE exec "$id" cat /proc/1/status 2>/dev/null || true)
  capeff=$(awk '/^CapEff:/ {print $2}' <<<"$status"); capbnd=$(awk '/^CapBnd:/ {print $2}' <<<"$status")
  nnp=$(awk '/^NoNewPrivs:/ {print $2}' <<<"$status")
  # No route out: an internal network gives the container no default route.
  routes=$($ENGINE exec "$id" cat /proc/net/route 2>/dev/null | awk 'NR > 1 && $2 == "00000000"' | wc -l)
  if [ "$ro" = true ] && [[ "$secopt" == *no-new-privileges* ]] && [ "$capeff" = 0000000000000000 ] \
     && [ "$capbnd" = 0000000000000000 ] && [ "$nnp" = 1 ] && [ "$routes" = 0 ]; then
    ok "$s: read-only root, CapEff/CapBnd 0, NoNewPrivs 1, no default route"
  else
    fail "$s: hardening not applied: ReadonlyRootfs=$ro SecurityOpt=$secopt CapEff=$capeff CapBnd=$capbnd NoNewPrivs=$nnp default routes=$routes"
  fi
done
internal=$($ENGINE network inspect "${PROJECT}_sidecar" --format '{{.Internal}}' 2>/dev/null || echo '?')
[ "$internal" = true ] && ok "network ${PROJECT}_sidecar is internal" || fail "network ${PROJECT}_sidecar internal='$internal', want true"

# ------------------------------------------------------------------ requests through the volume
t=$(now)
BODY=$(mktemp)
# request NAME WANT_STATUS WANT_BODY WANT_CONTENT_TYPE curl-args...
#   WANT_BODY: the exact body, "@FILE" = the bytes of FILE, "*" = anything;
#   WANT_CONTENT_TYPE: a prefix of the content-type, "" = anything.
request() {
  local name=$1 want_status=$2 want_body=$3 want_type=$4; shift 4
  local got
  got=$(curl -sS -o "$BODY" -w '%{http_code} %{content_type}' --max-time 10 --unix-socket "$SOCK" "$@") \
    || { fail "$name: curl failed"; return; }
  local status=${got%% *} type=${got#* }
  if [ "$status" != "$want_status" ]; then fail "$name: status $status, want $want_status (body: $(head -c 300 "$BODY"))"; return; fi
  case $want_body in
    '*') ;;
    @*) cmp -s "$BODY" "${want_body#@}" || { fail "$name: body differs from ${want_body#@} ($(wc -c < "$BODY") bytes)"; return; } ;;
    *) [ "$(cat "$BODY"; echo x)" = "${want_body}x" ] || { fail "$name: body '$(head -c 300 "$BODY")', want '$want_body'"; return; } ;;
  esac
  if [ -n "$want_type" ] && [ "${type#"$want_type"}" = "$type" ]; then fail "$name: content-type '$type', want '$want_type'"; return; fi
  ok "$name -> $status, $(wc -c < "$BODY") bytes, ${type:-no content-type}"
}
NL=$'\n'
request "envelope GET /echo/hello" 200 "GET /echo/hello?x=1$NL" "text/plain" "http://localhost/echo/hello?x=1"
request "envelope POST /echo/data (body echoed)" 200 '{"ping":1}' "application/json" \
  -H 'content-type: application/json' --data-binary '{"ping":1}' http://localhost/echo/data
request "envelope x-echo-status: 418" 418 "teapot" "" -H 'x-echo-status: 418' --data-binary 'teapot' http://localhost/echo/status
request "raw POST /raw/upper (python daemon)" 200 "HELLO RAW 123" "" --data-binary 'hello raw 123' http://localhost/raw/upper
head -c 150000 /dev/zero | tr '\0' 'a' > "$BODY.big"
head -c 150000 /dev/zero | tr '\0' 'A' > "$BODY.BIG"
request "raw POST 150 kB (one datagram each way)" 200 "@$BODY.BIG" "" --data-binary "@$BODY.big" http://localhost/raw/big
request "no route -> 404" 404 '*' "" http://localhost/nowhere
log "requests: $(elapsed "$t")"

# ------------------------------------------------------------------ datagram queue length (sysctls in docker-compose.yml)
for s in "${SERVICES[@]}"; do
  got=$($ENGINE exec "$(cid "$s")" cat /proc/sys/net/unix/max_dgram_qlen 2>/dev/null || echo '?')
  [ "$got" = 256 ] && ok "$s: net.unix.max_dgram_qlen $got" || fail "$s: net.unix.max_dgram_qlen '$got', want 256 (sysctls in docker-compose.yml)"
done
GATEWAY_LOG=$($ENGINE logs "$(cid gateway)" 2>&1 || true)
if ! grep -q 'Listening on unix:' <<<"$GATEWAY_LOG"; then
  fail "the gateway's log has no 'Listening on unix:' line, so its startup advice cannot be checked"
elif grep -q 'net.unix.max_dgram_qlen = ' <<<"$GATEWAY_LOG"; then
  fail "the gateway advises raising net.unix.max_dgram_qlen although compose sets it"
else
  ok "gateway: startup log without advice to raise net.unix.max_dgram_qlen"
fi

# ------------------------------------------------------------------ permissions in the volume
for f in gateway.sock:1654 echo.sock:1655 raw-echo.sock:1656; do
  path=$VOLUME_DIR/${f%%:*}
  want="660 ${f##*:} $SHARED_GID"
  got=$(stat -c '%a %u %g' "$path" 2>/dev/null || echo missing)
  [ "$got" = "$want" ] && ok "${f%%:*}: mode/uid/gid $got" || fail "${f%%:*}: mode/uid/gid '$got', want '$want'"
done
# From another container: a member of group 1654 can use the HTTP socket, anyone else cannot.
SDK_IMG=mcr.microsoft.com/dotnet/sdk:10.0      # has curl; present wherever the stack was built
if $ENGINE image exists "$SDK_IMG" 2>/dev/null || $ENGINE image inspect "$SDK_IMG" >/dev/null 2>&1; then
  t=$(now)
  peer() { $ENGINE run --rm --network none --pull=never -u "$1" -v "${PROJECT}_sockets:/run/gateway" "$SDK_IMG" \
             curl -s -o /dev/null -w '%{http_code}' --max-time 5 --unix-socket /run/gateway/gateway.sock http://localhost/healthz; }
  got=$(peer "1700:$SHARED_GID" 2>/dev/null || true)
  [ "$got" = 200 ] && ok "other container, uid 1700 gid $SHARED_GID: GET /healthz -> 200" || fail "other container in group $SHARED_GID got '$got', want 200"
  got=$(peer "1700:1700" 2>/dev/null || true)
  [ "$got" = 000 ] && ok "other container, uid 1700 gid 1700: refused" || fail "other container outside group $SHARED_GID got '$got', want no connection"
  log "cross-container checks: $(elapsed "$t")"
fi

# ------------------------------------------------------------------ HEALTHCHECK (podman runs it on demand)
if [ "$ENGINE" = podman ]; then
  if podman healthcheck run "$(cid gateway)" >/dev/null 2>&1; then ok "image HEALTHCHECK (dotnet Gateway.dll --healthcheck): healthy"
  else fail "image HEALTHCHECK of the gateway reports unhealthy"; fi
else
  deadline=$(( $(date +%s) + 40 ))
  until [ "$(docker inspect -f '{{.State.Health.Status}}' "$(cid gateway)")" = healthy ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { fail "gateway HEALTHCHECK not healthy within 40s"; break; }
    sleep 1
  done
fi

# ------------------------------------------------------------------ SIGTERM: drain, clean exit, sockets removed
# 10 s before SIGKILL, as podman-compose 1.0.3 stops (it ignores stop_grace_period); Gateway__DrainTimeout is 8 s.
t=$(now)
DRAIN_BODY=$(mktemp)
# A request that takes 3 s, in flight when the gateway gets SIGTERM: it must still be answered.
curl -s -o "$DRAIN_BODY" -w '%{http_code}' --max-time 20 --unix-socket "$SOCK" -H 'x-echo-delay-ms: 3000' \
  http://localhost/echo/draining > "$DRAIN_BODY.status" 2>/dev/null &
drain_pid=$!
sleep 1   # let the request reach the backend (it waits 3 s there)
for s in gateway echo raw-echo; do
  id=$(cid "$s")
  t_stop=$(now)
  # (podman without systemd complains that it cannot remove the health-check timer: harmless)
  $ENGINE stop -t 10 "$id" > /dev/null 2> >(grep -v 'unable to get systemd connection' >&2)
  log "$s stopped in $(elapsed "$t_stop")"
  if [ "$s" = gateway ]; then
    wait "$drain_pid" || true
    got="$(cat "$DRAIN_BODY.status" 2>/dev/null) $(cat "$DRAIN_BODY" 2>/dev/null)"
    [ "$got" = "200 GET /echo/draining" ] && ok "request in flight at SIGTERM drained: 200" \
      || fail "request in flight at SIGTERM got '$got', want '200 GET /echo/draining'"
    rm -f "$DRAIN_BODY" "$DRAIN_BODY.status"
  fi
  code=$($ENGINE inspect -f '{{.State.ExitCode}}' "$id")
  [ "$code" = 0 ] && ok "$s: SIGTERM -> exit 0" || fail "$s: exit code $code after SIGTERM (137 = killed after the grace period)"
done
left=$(find "$VOLUME_DIR" -type s -printf '%f ' 2>/dev/null)
[ -z "$left" ] && ok "no socket file left in the volume after shutdown" || fail "socket files left after shutdown: $left"
log "graceful stop: $(elapsed "$t")"
rm -f "$BODY" "$BODY.big" "$BODY.BIG"
