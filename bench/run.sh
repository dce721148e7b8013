#!/usr/bin/env bash
# The one benchmark command (issue 9). From the repository root:
#   bench/run.sh            full run: 3 rounds x (1 s warm-up + 4 s measured) per scenario and target, plus the
#                           10,000-in-flight scale test; writes bench/results/<stamp>-results.md, -plot.svg, -raw.jsonl
#   bench/run.sh --smoke    CI: 1 round, ~1 s runs, small scale test; checks the harness works end to end,
#                           asserts nothing about speed; writes into a temp dir (printed)
# Options: --rounds N  --duration S  --warmup S  --nginx-workers N|auto  --scale-connections N  --scale-delay-ms N
#          --no-scale  --no-build  --out DIR
#          --dgram-qlen N  start the gateway and its echo backend with net.unix.max_dgram_qlen=N (root; docs/performance.md): the sysctl is set just before they start and restored once their sockets exist
# Environment: GATEWAY_EXE=path runs that gateway executable (the Native AOT build) instead of dotnet Gateway.dll
# Targets, run alternately in the same run (order rotates every round):
#   gateway  the gateway (src/Gateway) forwarding to the C# echo sample (samples/EchoBackend) over datagrams
#   direct   bench/DirectEcho: the same echo served by Kestrel on a Unix socket (the ceiling, no extra hop)
#   nginx    nginx (Debian package) on a Unix socket proxying to DirectEcho over a Unix socket, upstream keep-alive
#   gateway-raw  a second gateway process, route /raw/{**rest}, in front of the C raw echo (samples/raw/c, Mode=Raw:
#            the body as one datagram, the upper-cased datagram back); reported beside nginx, no target (issue 20).
#            Its own process, so that the raw exchanges' pooled 208 KiB receive buffers do not count in the scale test
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source bench/lib.sh # build_release, wait_http

SMOKE=0 ROUNDS=3 DURATION=4 WARMUP=1 NGINX_WORKERS=auto SCALE=1 BUILD=1 OUT=""
SCALE_CONNECTIONS=10000 SCALE_DELAY_MS=3000 DGRAM_QLEN=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1; ROUNDS=1; DURATION=1; WARMUP=0.3; SCALE_CONNECTIONS=500; SCALE_DELAY_MS=300 ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --nginx-workers) NGINX_WORKERS=$2; shift ;;
    --scale-connections) SCALE_CONNECTIONS=$2; shift ;;
    --scale-delay-ms) SCALE_DELAY_MS=$2; shift ;;
    --no-scale) SCALE=0 ;;
    --no-build) BUILD=0 ;;
    --dgram-qlen) DGRAM_QLEN=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done

QLEN_FILE=/proc/sys/net/unix/max_dgram_qlen
DEFAULT_QLEN=$(cat "$QLEN_FILE" 2>/dev/null || echo '?')
if [[ -n $DGRAM_QLEN ]]; then
  [[ $DGRAM_QLEN =~ ^[0-9]+$ ]] || { echo "--dgram-qlen: '$DGRAM_QLEN' is not a number" >&2; exit 2; }
  [[ -w $QLEN_FILE ]] || { echo "--dgram-qlen needs root (it writes $QLEN_FILE)" >&2; exit 2; }
fi

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

DIR=$(mktemp -d /tmp/gateway-bench.XXXXXX)
KEEP_DIR=0
chmod 700 "$DIR"
PIDS=()
restore_qlen() { if [[ -n $DGRAM_QLEN && $DEFAULT_QLEN != '?' ]]; then echo "$DEFAULT_QLEN" >"$QLEN_FILE"; fi; }
cleanup() {
  restore_qlen
  stop_pids "${PIDS[@]}"
  # A smoke run without --out keeps its report in $DIR (printed); everything else is removed.
  if [[ $KEEP_DIR -eq 1 ]]; then rm -rf "$DIR"/*.sock "$DIR/nginx"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- build (Release)
if [[ $BUILD -eq 1 ]]; then
  log "building Release"
  build_release bench/LoadGen/LoadGen.csproj bench/DirectEcho/DirectEcho.csproj src/Gateway/Gateway.csproj samples/EchoBackend/EchoBackend.csproj
fi
LOADGEN=(dotnet bench/LoadGen/bin/Release/net10.0/LoadGen.dll)
DIRECT_DLL=bench/DirectEcho/bin/Release/net10.0/DirectEcho.dll
# Overridable to benchmark another build (e.g. a branch checked out elsewhere): GATEWAY_DLL=... ECHO_DLL=... bench/run.sh
GATEWAY_DLL=${GATEWAY_DLL:-src/Gateway/bin/Release/net10.0/Gateway.dll}
# GATEWAY_EXE=…/Gateway runs that executable instead of `dotnet $GATEWAY_DLL`: the Native AOT build (docs/sidecar.md;
# bench/aot-compare.sh compares the two builds side by side).
GATEWAY_EXE=${GATEWAY_EXE:-}
if [[ -n $GATEWAY_EXE ]]; then GATEWAY_CMD=("$GATEWAY_EXE"); GATEWAY_FILE=$GATEWAY_EXE; else GATEWAY_CMD=(dotnet "$GATEWAY_DLL"); GATEWAY_FILE=$GATEWAY_DLL; fi
ECHO_DLL=${ECHO_DLL:-samples/EchoBackend/bin/Release/net10.0/EchoBackend.dll}

if ! command -v cc >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing gcc (apt-get) for the C raw echo"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >&2
  else
    echo "no C compiler for samples/raw/c/echo_server.c (apt-get install gcc)" >&2; exit 1
  fi
fi
cc -O2 -Wall -Wextra -o "$DIR/raw_echo" samples/raw/c/echo_server.c

if ! command -v nginx >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing nginx (apt-get)"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >&2
  else
    echo "nginx is not installed (apt-get install nginx)" >&2; exit 1
  fi
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

# ---------------------------------------------------------------- start the systems under test
alive() { kill -0 "$1" 2>/dev/null; }

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
log "starting DirectEcho"
dotnet "$DIRECT_DLL" --socket "$DIR/direct.sock" >"$DIR/direct.log" 2>&1 &
DIRECT_PID=$!; PIDS+=("$DIRECT_PID")
wait_http "$DIR/direct.sock" /echo/ready 30 || { cat "$DIR/direct.log" >&2; echo "DirectEcho did not start" >&2; exit 1; }

log "starting nginx (worker_processes $NGINX_WORKERS)"
start_nginx nginx.conf.template "$NGINX_WORKERS" || exit 1

GATEWAY_OK=0 GATEWAY_REASON=""
if [[ -f $GATEWAY_FILE && -f $ECHO_DLL ]]; then
  log "starting EchoBackend and the gateway"
  # The scale test holds SCALE_CONNECTIONS requests at once: the echo's MaxConcurrency (default 1,024) and the
  # gateway's MaxInFlightPerInstance (default 1,024) are raised above it, as a deployment expecting that load would.
  HOLD=$((SCALE_CONNECTIONS > 1024 ? SCALE_CONNECTIONS + 1024 : 2048))
  # A socket takes net.unix.max_dgram_qlen when it is created: the echo's socket at start, the gateway's reply socket
  # by the time /echo/ready answers. nginx and DirectEcho use stream sockets, which the setting does not affect.
  if [[ -n $DGRAM_QLEN ]]; then log "net.unix.max_dgram_qlen $DEFAULT_QLEN -> $DGRAM_QLEN for the gateway and echo"; echo "$DGRAM_QLEN" >"$QLEN_FILE"; fi
  dotnet "$ECHO_DLL" --Backend:SocketPath="$DIR/echo.sock" --Backend:MaxConcurrency="$HOLD" --Logging:LogLevel:Default=Warning >"$DIR/echo.log" 2>&1 &
  ECHO_PID=$!; PIDS+=("$ECHO_PID")
  "$DIR/raw_echo" --socket "$DIR/raw.sock" >"$DIR/raw.log" 2>&1 &
  RAW_PID=$!; PIDS+=("$RAW_PID")
  for _ in $(seq 100); do [[ -S $DIR/raw.sock ]] && break; sleep 0.05; done
  "${GATEWAY_CMD[@]}" --Gateway:Listen:UnixSocket="$DIR/gw.sock" --Gateway:DemoBackend:Enabled=false \
    --Gateway:Backends:echo:Instances:0="$DIR/echo.sock" --Gateway:Routes:echo:Path='/echo/{**rest}' \
    --Gateway:Routes:echo:Backend=echo --Gateway:Backends:echo:MaxInFlightPerInstance="$HOLD" \
    --Logging:LogLevel:Default=Warning >"$DIR/gateway.log" 2>&1 &
  GATEWAY_PID=$!; PIDS+=("$GATEWAY_PID")
  "${GATEWAY_CMD[@]}" --Gateway:Listen:UnixSocket="$DIR/gwraw.sock" --Gateway:DemoBackend:Enabled=false \
    --Gateway:Backends:raw:Instances:0="$DIR/raw.sock" --Gateway:Backends:raw:Mode=Raw \
    --Gateway:Routes:raw:Path='/raw/{**rest}' --Gateway:Routes:raw:Backend=raw \
    --Logging:LogLevel:Default=Warning >"$DIR/gateway-raw.log" 2>&1 &
  GATEWAY_RAW_PID=$!; PIDS+=("$GATEWAY_RAW_PID")
  if wait_http "$DIR/gw.sock" /echo/ready 20 && wait_http "$DIR/gwraw.sock" /raw/ready 20 && alive "$ECHO_PID" && alive "$RAW_PID"; then
    GATEWAY_OK=1
    restore_qlen
  else
    GATEWAY_REASON="the gateway did not answer 200 on $DIR/gw.sock /echo/ready within 20 s (last HTTP status: ${LAST_CODE:-none}; gateway $(alive "$GATEWAY_PID" && echo running || echo "exited: $(tail -c 300 "$DIR/gateway.log" | tr '\n' ' ')"); echo backend $(alive "$ECHO_PID" && echo running || echo "exited: $(tail -c 200 "$DIR/echo.log" | tr '\n' ' ')"))"
    kill -TERM "$GATEWAY_PID" "$GATEWAY_RAW_PID" "$ECHO_PID" "$RAW_PID" 2>/dev/null || true
  fi
else
  GATEWAY_REASON="not built ($GATEWAY_FILE or $ECHO_DLL missing)"
fi
[[ $GATEWAY_OK -eq 1 ]] || log "target gateway UNAVAILABLE: $GATEWAY_REASON"

declare -A SOCK WATCH TPATH VERIFY
# P:name: LoadGen reports CPU and context switches per request for each name (processes of one name summed).
SOCK[direct]="$DIR/direct.sock"; WATCH[direct]="$DIRECT_PID:kestrel"
SOCK[nginx]="$DIR/nginx.sock";   WATCH[nginx]="$NGINX_PID:nginx,$(sed 's/,/:nginx,/g; s/$/:nginx/' <<<"$NGINX_WORKER_PIDS"),$DIRECT_PID:kestrel"
TARGETS=(nginx direct)
if [[ $GATEWAY_OK -eq 1 ]]; then
  SOCK[gateway]="$DIR/gw.sock"; WATCH[gateway]="$GATEWAY_PID:gateway,$ECHO_PID:echo"
  SOCK[gateway-raw]="$DIR/gwraw.sock"; WATCH[gateway-raw]="$GATEWAY_RAW_PID:gateway,$RAW_PID:raw echo"; TPATH[gateway-raw]=/raw/hello; VERIFY[gateway-raw]=upper
  TARGETS=(gateway nginx direct gateway-raw)
fi

# ---------------------------------------------------------------- scenarios, alternating targets
SCENARIOS=(
  "GET c1|GET|0|1"
  "GET c32|GET|0|32"
  "GET c256|GET|0|256"
  "POST 4KiB c32|POST|4096|32"
  "POST 64KiB c32|POST|65536|32"
)
RAW="$DIR/raw.jsonl"; : >"$RAW"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 1; round <= ROUNDS; round++)); do
  for spec in "${SCENARIOS[@]}"; do
    IFS='|' read -r name method body conc <<<"$spec"
    # Rotate the order each round so no target always runs first (or right after a given other).
    n=${#TARGETS[@]}
    for ((k = 0; k < n; k++)); do
      target=${TARGETS[$(((k + round + ${#name}) % n))]}
      log "round $round/$ROUNDS  $name  $target"
      "${LOADGEN[@]}" --socket "${SOCK[$target]}" --path "${TPATH[$target]:-/echo/hello}" --method "$method" --body-size "$body" \
        --concurrency "$conc" --warmup "$WARMUP" --duration "$DURATION" --verify "${VERIFY[$target]:-all}" --watch-pid "${WATCH[$target]}" \
        --label "$target" --scenario "$name" --round "$round" --json >>"$RAW" ||
        log "load generator failed for $target / $name"
    done
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- scale: N requests in flight at once
: >"$DIR/scale.jsonl"
if [[ $SCALE -eq 1 ]]; then
  for target in "${TARGETS[@]}"; do
    # The scale target is about the gateway (its echo route); direct Kestrel is the reference.
    [[ $target == nginx || $target == gateway-raw ]] && continue
    log "scale: $SCALE_CONNECTIONS in flight, x-echo-delay-ms $SCALE_DELAY_MS, $target"
    # RSS is watched for the front process only (the gateway, or DirectEcho).
    "${LOADGEN[@]}" --socket "${SOCK[$target]}" --path /echo/scale --method POST --body-size 64 --unique-body \
      --concurrency "$SCALE_CONNECTIONS" --requests-per-connection 1 --header "x-echo-delay-ms: $SCALE_DELAY_MS" \
      --timeout $((SCALE_DELAY_MS / 1000 + 60)) --verify all --watch-pid "${WATCH[$target]%%,*}" \
      --label "$target" --scenario scale --json >>"$DIR/scale.jsonl" || log "scale run failed for $target"
  done
  [[ $GATEWAY_OK -eq 1 ]] || echo "gateway not measured: $GATEWAY_REASON" >>"$DIR/scale.jsonl"
fi

# ---------------------------------------------------------------- report
STAMP=$(date -u +%Y-%m-%d-%H%M)
if [[ -z $OUT && $SMOKE -eq 1 ]]; then OUT=$DIR; KEEP_DIR=1; fi
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
MD="$OUT/$STAMP-results.md"; SVG="$OUT/$STAMP-plot.svg"
cp "$RAW" "$OUT/$STAMP-raw.jsonl"
NOTES=(
  --note "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, $(uname -r), .NET $(dotnet --list-runtimes | awk '/AspNetCore/{v=$2} END{print v}'), $(nginx -v 2>&1 | sed 's/.*: //')"
  --note "$([[ $SMOKE -eq 1 ]] && echo 'SMOKE run (numbers meaningless)' || echo 'Full run'): $ROUNDS round(s), warm-up ${WARMUP} s + ${DURATION} s measured per run, targets alternating: ${TARGETS[*]}; nginx worker_processes $NGINX_WORKERS"
  --note "load average (1/5/15 min) before: $LOAD_START, after: $LOAD_END (other work on the machine skews absolute numbers; ratios from the same run are the result)"
)
[[ $GATEWAY_OK -eq 1 ]] || NOTES+=(--note "target gateway UNAVAILABLE: $GATEWAY_REASON")
[[ -z $GATEWAY_EXE ]] || NOTES+=(--note "target gateway is the executable $GATEWAY_EXE (GATEWAY_EXE), not dotnet Gateway.dll")
if [[ -n $DGRAM_QLEN ]]; then
  NOTES+=(--note "**tuned: the gateway and its echo backend were started with net.unix.max_dgram_qlen=$DGRAM_QLEN** (the machine's value, $DEFAULT_QLEN, for everything else; see docs/performance.md)")
else
  NOTES+=(--note "net.unix.max_dgram_qlen = $DEFAULT_QLEN (the kernel's datagram queue length; \`--dgram-qlen N\` measures the tuned deployment)")
fi
[[ $GATEWAY_OK -eq 1 ]] && NOTES+=(--note "gateway-raw: a second gateway process in front of the C raw echo (samples/raw/c/echo_server.c, Mode=Raw, route /raw/{**rest}, its default MaxConcurrency of 64 exchanges); CPU sums the gateway and the raw echo; reported beside nginx, no target")
[[ $SCALE -eq 1 ]] && NOTES+=(--note "scale test: $SCALE_CONNECTIONS connections x 1 request, x-echo-delay-ms $SCALE_DELAY_MS")
"${LOADGEN[@]}" report --in "$RAW" --scale "$DIR/scale.jsonl" --md "$MD" --svg "$SVG" \
  --title "Gateway vs nginx vs direct Kestrel (Unix sockets)" "${NOTES[@]}" >/dev/null
grep '^{' "$DIR/scale.jsonl" >>"$OUT/$STAMP-raw.jsonl" || true
cat "$MD"
log "wrote $MD, $SVG, $OUT/$STAMP-raw.jsonl"
