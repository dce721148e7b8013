#!/usr/bin/env bash
# Streaming benchmark (issue 21). From the repository root:
#   bench/streaming.sh           full run: writes bench/results/<stamp>-streaming.md
#   bench/streaming.sh --smoke   CI: small sizes (64 MiB, 100 streams, 1 s loads); checks the harness end to end,
#                                asserts nothing about speed; writes into a temp dir (printed)
# Options: --size-mib N (default 1024)  --streams N (default 1000)  --rounds N (default 2)  --no-build  --out DIR
# What it measures, every behaviour on as shipped (timeouts, breaker, tracing), targets side by side in one run:
#   1. time to the first body byte of a streamed reply at c=1: gateway, nginx -> Kestrel, Kestrel alone (DirectEcho);
#      the backend writes its first piece at once, so "Kestrel alone" is the backend's own first chunk as a caller sees it
#   2. a streamed download and a streamed upload (x-echo-discard: the backend reads it all and answers its length) of
#      --size-mib MiB: throughput from curl, max RSS of the front process (gateway; nginx's workers) against its RSS
#      before; and, gateway only, the upload echoed back as it arrives (full duplex, which nginx does not proxy)
#   3. p99 of 32 concurrent ordinary GETs to the same echo instance, with and without one caller reading a stream at
#      1 KiB/s (curl --limit-rate 1K), alternating
#   4. --streams streams open at once (one 64 B piece a second each): gateway RSS
# nginx uses bench/nginx/streaming.conf.template (proxy_buffering off, proxy_request_buffering off).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source bench/lib.sh # build_release, wait_http
SMOKE=0 SIZE_MIB=1024 STREAMS=1000 ROUNDS=2 BUILD=1 OUT="" TTFB_N=300 LOAD_S=5
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1; SIZE_MIB=64; STREAMS=100; ROUNDS=1; TTFB_N=30; LOAD_S=1 ;;
    --size-mib) SIZE_MIB=$2; shift ;;
    --streams) STREAMS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --no-build) BUILD=0 ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done
log() { printf '[streaming %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
DIR=$(mktemp -d /tmp/gateway-streaming.XXXXXX)
chmod 700 "$DIR"
PIDS=()
SAMPLER=""
cleanup() {
  [[ -z $SAMPLER ]] || kill "$SAMPLER" 2>/dev/null || true
  stop_pids "${PIDS[@]}"
  rm -rf "$DIR"/*.sock "$DIR/nginx"
  [[ $SMOKE -eq 1 && -z $OUT ]] || rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $BUILD -eq 1 ]]; then
  log "building Release"
  build_release bench/LoadGen/LoadGen.csproj bench/DirectEcho/DirectEcho.csproj src/Gateway/Gateway.csproj samples/EchoBackend/EchoBackend.csproj
fi
for tool in nginx curl python3; do command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install $tool)" >&2; exit 1; }; done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
LOADGEN=(dotnet bench/LoadGen/bin/Release/net10.0/LoadGen.dll)
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
rss_sum() { local total=0 pid; for pid in ${1//,/ }; do total=$((total + $(rss "$pid"))); done; echo "$total"; }
# Samples the summed VmRSS (KiB) of the comma-separated pids every 100 ms into FILE (its max) until FILE.stop exists.
sample_max() {
  local pids=$1 file=$2 max=0 v
  while [[ ! -e $file.stop ]]; do
    v=$(rss_sum "$pids"); ((v > max)) && max=$v
    echo "$max" >"$file"
    sleep 0.1
  done
}

log "starting DirectEcho, nginx (streaming configuration), the echo sample and the gateway"
dotnet bench/DirectEcho/bin/Release/net10.0/DirectEcho.dll --socket "$DIR/direct.sock" >"$DIR/direct.log" 2>&1 &
DIRECT_PID=$!; PIDS+=("$DIRECT_PID")
wait_http "$DIR/direct.sock" /echo/ready 30 || { cat "$DIR/direct.log" >&2; exit 1; }
start_nginx streaming.conf.template auto || exit 1
HOLD=$((STREAMS + 1024))
dotnet samples/EchoBackend/bin/Release/net10.0/EchoBackend.dll --Backend:SocketPath="$DIR/echo.sock" \
  --Backend:MaxConcurrency="$HOLD" --Logging:LogLevel:Default=Warning >"$DIR/echo.log" 2>&1 &
ECHO_PID=$!; PIDS+=("$ECHO_PID")
dotnet src/Gateway/bin/Release/net10.0/Gateway.dll --Gateway:Listen:UnixSocket="$DIR/gw.sock" --Gateway:DemoBackend:Enabled=false \
  --Gateway:Backends:echo:Instances:0="$DIR/echo.sock" --Gateway:Backends:echo:MaxInFlightPerInstance="$HOLD" \
  --Gateway:Routes:echo:Path='/echo/{**rest}' --Gateway:Routes:echo:Backend=echo \
  --Gateway:Routes:echo:MaxBodySize=$((4 * 1024 * 1024 * 1024)) --Logging:LogLevel:Default=Warning >"$DIR/gateway.log" 2>&1 &
GATEWAY_PID=$!; PIDS+=("$GATEWAY_PID")
wait_http "$DIR/gw.sock" /echo/ready 30 || { tail -20 "$DIR/gateway.log" >&2; exit 1; }
declare -A SOCK FRONT
SOCK[gateway]=$DIR/gw.sock; FRONT[gateway]=$GATEWAY_PID
SOCK[nginx]=$DIR/nginx.sock; FRONT[nginx]=$NGINX_WORKER_PIDS
SOCK[direct]=$DIR/direct.sock; FRONT[direct]=$DIRECT_PID

RESULTS=$DIR/streaming.jsonl; : >"$RESULTS"
record() { echo "$1" >>"$RESULTS"; }

# ---------------------------------------------------------------- 1. time to first body byte, c=1
for target in direct nginx gateway; do
  log "TTFB, $TTFB_N requests, $target"
  record "{\"test\":\"ttfb\",\"target\":\"$target\",\"result\":$(python3 bench/streaming.py ttfb "${SOCK[$target]}" "$TTFB_N")}"
done

# ---------------------------------------------------------------- 2. download and upload of SIZE_MIB
PIECES=$((SIZE_MIB * 16)) # 64 KiB pieces
SIZE=$((SIZE_MIB * 1024 * 1024))
for ((round = 1; round <= ROUNDS; round++)); do
  for target in gateway nginx; do
    for kind in download upload duplex; do
      [[ $kind == duplex && $target == nginx ]] && continue # nginx does not read the reply while it still sends
      log "round $round: $SIZE_MIB MiB $kind, $target"
      before=$(rss_sum "${FRONT[$target]}")
      rm -f "$DIR/rss" "$DIR/rss.stop" "$DIR/reply"
      sample_max "${FRONT[$target]}" "$DIR/rss" &
      SAMPLER=$!
      # --max-time: a stall is a failed row, never a hung benchmark.
      if [[ $kind == download ]]; then
        out=$(curl -s --max-time 900 -o /dev/null --unix-socket "${SOCK[$target]}" -H "x-echo-stream-count: $PIECES" -H "x-echo-stream-chunk-bytes: 65536" \
          -w '%{http_code} %{size_download} %{time_total}' http://localhost/echo/download || true)
        read -r code bytes seconds <<<"$out"
        [[ $bytes == "$SIZE" ]] || code="$code (got $bytes of $SIZE B)"
      elif [[ $kind == upload ]]; then
        out=$(head -c "$SIZE" /dev/zero | curl -s --max-time 900 -T - -o "$DIR/reply" --unix-socket "${SOCK[$target]}" \
          -H 'x-echo-discard: 1' -H 'content-type: application/octet-stream' -w '%{http_code} %{time_total}' http://localhost/echo/upload || true)
        read -r code seconds <<<"$out"
        bytes=$SIZE
        [[ $(cat "$DIR/reply" 2>/dev/null) == "$SIZE" ]] || code="$code (the backend counted '$(head -c 100 "$DIR/reply" 2>/dev/null)')"
      else
        out=$(head -c "$SIZE" /dev/zero | curl -s --max-time 900 -T - -o /dev/null --unix-socket "${SOCK[$target]}" \
          -H 'x-echo-stream: 1' -H 'content-type: application/octet-stream' -w '%{http_code} %{size_download} %{time_total}' http://localhost/echo/duplex || true)
        read -r code echoed seconds <<<"$out"
        bytes=$SIZE
        [[ $echoed == "$SIZE" ]] || code="$code (echoed $echoed of $SIZE B)"
      fi
      touch "$DIR/rss.stop"; wait "$SAMPLER" || true; SAMPLER=""
      max=$(cat "$DIR/rss" 2>/dev/null || echo 0)
      bytes=${bytes:-0}; seconds=${seconds:-0}
      record "{\"test\":\"$kind\",\"target\":\"$target\",\"round\":$round,\"status\":\"$code\",\"bytes\":$bytes,\"seconds\":$seconds,\"rss_before_kib\":$before,\"rss_max_kib\":$max}"
    done
  done
done

# ---------------------------------------------------------------- 3. a slow reader beside 32 ordinary GETs
# Warm the GET path first, then alternate the order (off, on / on, off) so neither condition always runs first.
"${LOADGEN[@]}" --socket "$DIR/gw.sock" --path /echo/hello --concurrency 32 --warmup 0 --duration 1 --json >/dev/null
for ((round = 1; round <= ROUNDS; round++)); do
  order="0 1"; ((round % 2 == 0)) && order="1 0"
  for slow in $order; do
    reader=""
    if [[ $slow -eq 1 ]]; then
      curl -s -N --limit-rate 1K -o /dev/null --unix-socket "$DIR/gw.sock" -H 'x-echo-stream-count: 1000000' \
        -H 'x-echo-stream-chunk-bytes: 1024' http://localhost/echo/slow &
      reader=$!
      sleep 2 # let the slow stream fill every buffer between it and the backend, so its credit is exhausted
    fi
    log "round $round: GET c=32 ${LOAD_S}s, slow reader $([[ $slow -eq 1 ]] && echo on || echo off)"
    result=$("${LOADGEN[@]}" --socket "$DIR/gw.sock" --path /echo/hello --concurrency 32 --warmup 0.5 --duration "$LOAD_S" --verify all --json)
    if [[ -n $reader ]]; then
      alive=$(kill -0 "$reader" 2>/dev/null && echo true || echo false)
      kill "$reader" 2>/dev/null || true; wait "$reader" 2>/dev/null || true
    else
      alive=null
    fi
    record "{\"test\":\"slow-reader\",\"round\":$round,\"slow\":$slow,\"reader_alive\":$alive,\"result\":$result}"
  done
done

# ---------------------------------------------------------------- 4. many open streams
log "$STREAMS streams open at once through the gateway"
record "{\"test\":\"hold\",\"result\":$(python3 bench/streaming.py hold "$DIR/gw.sock" "$STREAMS" 5 "$GATEWAY_PID")}"

# ---------------------------------------------------------------- report
STAMP=$(date -u +%Y-%m-%d-%H%M)
if [[ -n $OUT ]]; then mkdir -p "$OUT"; REPORT_DIR=$OUT; elif [[ $SMOKE -eq 1 ]]; then REPORT_DIR=$DIR; else REPORT_DIR=bench/results; fi
REPORT=$REPORT_DIR/$STAMP-streaming.md
cp "$RESULTS" "$REPORT_DIR/$STAMP-streaming.jsonl"
HARNESS_OK=1
python3 - "$RESULTS" "$SIZE_MIB" "$STREAMS" "$SMOKE" "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" >"$REPORT" <<'PY' || HARNESS_OK=0
import json, statistics, sys, platform
rows = [json.loads(l) for l in open(sys.argv[1])]
size_mib, streams, smoke, commit = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]
out = []
p = out.append
p("# Streaming: gateway vs nginx -> Kestrel vs Kestrel alone (issue 21)\n")
p(f"- commit {commit}, {platform.release()}, 2-core VM shared with other work: ratios from this run are the result")
if smoke:
    p("- SMOKE run: sizes reduced, numbers meaningless")
p("")
ttfb = {r["target"]: r["result"] for r in rows if r["test"] == "ttfb"}
p("## 1. Time to the first body byte of a streamed reply, c=1\n")
p("The echo writes its first piece at once (a second one 200 ms later). Kestrel alone is the backend's own first chunk as a caller sees it.\n")
p("| target | requests | p50 µs | p90 µs | p99 µs |")
p("|---|--:|--:|--:|--:|")
for t in ("direct", "nginx", "gateway"):
    r = ttfb[t]
    p(f"| {t} | {r['n']} | {r['p50_us']} | {r['p90_us']} | {r['p99_us']} |")
over = (ttfb["gateway"]["p50_us"] - ttfb["direct"]["p50_us"]) / 1000
p(f"\n- gateway p50 above Kestrel alone: **{over:.2f} ms** (target ≤ 2 ms) — {'met' if over <= 2 else 'NOT met'}\n")
p(f"## 2. {size_mib} MiB streamed download and upload\n")
p("Download: `x-echo-stream-count` pieces of 64 KiB. Upload: `curl -T -` (chunked) with `x-echo-discard: 1` (the backend reads it all and answers its length, checked).")
p("Duplex (gateway only: nginx does not read a reply while it still sends the request): the upload echoed back as it arrives (`x-echo-stream: 1`), the bytes crossing both ways.")
p("RSS growth: the front process's max VmRSS during the transfer (sampled every 100 ms) minus its RSS before (gateway; for nginx, its workers).\n")
p("| transfer | target | rounds | status | MiB/s (median) | RSS growth MiB (max) |")
p("|---|---|--:|---|--:|--:|")
speed = {}
for kind in ("download", "upload", "duplex"):
    for t in ("gateway", "nginx"):
        rs = [r for r in rows if r["test"] == kind and r["target"] == t]
        if not rs:
            continue
        mibs = statistics.median(r["bytes"] / r["seconds"] / 2**20 if r["seconds"] else 0 for r in rs)
        growth = max((r["rss_max_kib"] - r["rss_before_kib"]) / 1024 for r in rs)
        speed[(kind, t)] = (mibs, growth)
        status = ",".join(sorted({str(r["status"]) for r in rs}))
        p(f"| {kind} | {t} | {len(rs)} | {status} | {mibs:.0f} | {growth:.1f} |")
p("")
for kind in ("download", "upload"):
    ratio = speed[(kind, "gateway")][0] / max(speed[(kind, "nginx")][0], 1e-9)
    growth = speed[(kind, "gateway")][1] * 1.048576
    p(f"- {kind}: gateway/nginx throughput **{ratio:.2f}×** (target ≥ 0.8×) — {'met' if ratio >= 0.8 else 'NOT met'}; gateway RSS growth **{growth:.1f} MB** (target ≤ 64 MB) — {'met' if growth <= 64 else 'NOT met'}")
p("\n## 3. One caller reading at 1 KiB/s beside 32 concurrent ordinary GETs (same echo instance)\n")
p("| round | slow reader | req/s | p50 µs | p99 µs | errors | reader still streaming |")
p("|--:|---|--:|--:|--:|--:|---|")
slow = [r for r in rows if r["test"] == "slow-reader"]
for r in slow:
    res = r["result"]
    p(f"| {r['round']} | {'on' if r['slow'] else 'off'} | {res['rps']:.0f} | {res['p50_us']:.0f} | {res['p99_us']:.0f} | {res.get('errors', 0)} | {'' if r['reader_alive'] is None else ('yes' if r['reader_alive'] else 'NO')} |")
off = statistics.median(r["result"]["p99_us"] for r in slow if not r["slow"])
on = statistics.median(r["result"]["p99_us"] for r in slow if r["slow"])
rise = (on / off - 1) * 100
p(f"\n- p99 with the slow reader vs without (medians over rounds): {on:.0f} µs vs {off:.0f} µs, **{rise:+.0f} %** (target ≤ +20 %) — {'met' if rise <= 20 else 'NOT met'}\n")
hold = next(r["result"] for r in rows if r["test"] == "hold")
p(f"## 4. {streams} streams open at once\n")
p(f"- opened {hold['opened']} of {hold['streams']} (head and first piece received), {hold['alive_after_hold']} still delivering after 5 s held")
mb = hold["rss_max_kib"] * 1024 / 1e6
p(f"- gateway RSS before {hold['rss_before_kib'] / 1024:.0f} MiB, max while held **{hold['rss_max_kib'] / 1024:.0f} MiB = {mb:.0f} MB** (target: within 300 MB) — {'met' if mb <= 300 and hold['opened'] == hold['streams'] else 'NOT met'}")
# What makes the run itself invalid (a failed transfer, a stream that did not open, load errors): listed, exit 1.
problems = [f"{r['test']} {r['target']} round {r['round']}: status {r['status']}" for r in rows if "status" in r and str(r["status"]) != "200"]
problems += [f"slow-reader round {r['round']}: {r['result'].get('errors', 0)} load errors, {r['result'].get('non_2xx', 0)} non-2xx" for r in slow if r["result"].get("errors", 0) or r["result"].get("non_2xx", 0)]
problems += [f"slow-reader round {r['round']}: the slow reader's stream ended early" for r in slow if r["reader_alive"] is False]
if hold["opened"] != hold["streams"] or hold["alive_after_hold"] != hold["streams"]:
    problems.append(f"hold: {hold['opened']} opened, {hold['alive_after_hold']} alive of {hold['streams']}")
if problems:
    p("\n## The run is INVALID\n")
    p("\n".join(f"- {x}" for x in problems))
print("\n".join(out))
sys.exit(1 if problems else 0)
PY
cat "$REPORT"
log "wrote $REPORT"
[[ $HARNESS_OK -eq 1 ]] || { echo "bench/streaming.sh: the run is invalid (see the report)" >&2; exit 1; }
