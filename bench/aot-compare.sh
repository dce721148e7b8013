#!/usr/bin/env bash
# The JIT and the Native AOT builds of the gateway, side by side in one run (issue 22, part 3; docs/sidecar.md).
# From the repository root:
#   bench/aot-compare.sh                 ~4 min: builds both, then measures and writes bench/results/<UTC date>-aot.md
#   bench/aot-compare.sh --runs 3 --rounds 1 --duration 1 --held 500 --out /tmp/x.md    a quick check
# Options: --runs N (start-ups per build, 10; 0 skips them)  --idle S (idling before idle RSS is read, 3)  --rounds N (GET c=32
#          rounds per build, 3)  --duration S (4)  --warmup S (1)  --held N (requests held at once, 10000; 0 skips)
#          --hold-ms N (how long the echo holds them, 3000)  --no-build  --out FILE
# Environment: GATEWAY_AOT_BINARY=…/Gateway uses that AOT executable instead of publishing one;
#              JIT_IMAGE / AOT_IMAGE (podman image names) add the image sizes when the images exist.
# Measured, for each build, against the same C# echo backend (samples/EchoBackend) over Unix datagrams:
#   start-up    exec to the first 200 on the socket (GET /echo/hello, forwarded), median of --runs (bench/first200.py),
#               and the CPU time the gateway used until then (less sensitive to other work on the machine)
#   idle RSS    VmRSS after that first request and --idle seconds of idling, median of --runs
#   GET c=32    LoadGen closed loop, median req/s and the gateway process's CPU µs per request (the echo not counted)
#   held        --held connections with one POST each, held --hold-ms by the echo: peak RSS of the gateway
# The builds alternate (order rotates) so that the shared machine's drift spreads over both.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source bench/lib.sh # build_release

RUNS=10 IDLE=3 ROUNDS=3 DURATION=4 WARMUP=1 HELD=10000 HOLD_MS=3000 BUILD=1 OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift ;;
    --idle) IDLE=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --held) HELD=$2; shift ;;
    --hold-ms) HOLD_MS=$2; shift ;;
    --no-build) BUILD=0 ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done

log() { printf '[aot-compare %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
DIR=$(mktemp -d /tmp/gateway-aot-bench.XXXXXX)
chmod 700 "$DIR"
PIDS=()
cleanup() {
  stop_pids "${PIDS[@]}"
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

# ---------------------------------------------------------------- builds
JIT_DIR=$DIR/jit
AOT_BIN=${GATEWAY_AOT_BINARY:-}
if [[ $BUILD -eq 1 ]]; then
  log "building LoadGen and EchoBackend (Release)"
  build_release bench/LoadGen/LoadGen.csproj samples/EchoBackend/EchoBackend.csproj
fi
log "publishing the JIT build (as src/Gateway/Dockerfile does)"
dotnet publish src/Gateway/Gateway.csproj -c Release -p:UseAppHost=false --artifacts-path "$DIR/jit-build" -o "$JIT_DIR" --nologo -v quiet -clp:ErrorsOnly >&2
if [[ -z $AOT_BIN ]]; then
  log "publishing the Native AOT build (as src/Gateway/Dockerfile.aot does; ~2 min)"
  dotnet publish src/Gateway/Gateway.csproj -c Release -r linux-x64 -p:PublishAot=true --artifacts-path "$DIR/aot-build" -o "$DIR/aot" --nologo -v quiet -clp:ErrorsOnly >&2
  AOT_BIN=$DIR/aot/Gateway
fi
[[ -x $AOT_BIN ]] || { echo "no AOT executable at $AOT_BIN" >&2; exit 1; }
LOADGEN=(dotnet bench/LoadGen/bin/Release/net10.0/LoadGen.dll)
ECHO_DLL=samples/EchoBackend/bin/Release/net10.0/EchoBackend.dll

declare -A CMD
CMD[jit]="dotnet $JIT_DIR/Gateway.dll"
CMD[aot]="$AOT_BIN"
BUILDS=(jit aot)

# ---------------------------------------------------------------- the echo backend (shared)
HOLD=$((HELD + 1024))
log "starting EchoBackend"
dotnet "$ECHO_DLL" --Backend:SocketPath="$DIR/echo.sock" --Backend:MaxConcurrency="$HOLD" --Logging:LogLevel:Default=Warning >"$DIR/echo.log" 2>&1 &
ECHO_PID=$!; PIDS+=("$ECHO_PID")
for _ in $(seq 300); do [[ -S $DIR/echo.sock ]] && break; sleep 0.1; done
[[ -S $DIR/echo.sock ]] || { cat "$DIR/echo.log" >&2; echo "EchoBackend did not start" >&2; exit 1; }

gateway_args() { # build -> arguments after the command
  printf '%s\n' "--Gateway:Listen:UnixSocket=$DIR/$1.sock" --Gateway:DemoBackend:Enabled=false \
    "--Gateway:Backends:echo:Instances:0=$DIR/echo.sock" '--Gateway:Routes:echo:Path=/echo/{**rest}' \
    --Gateway:Routes:echo:Backend=echo "--Gateway:Backends:echo:MaxInFlightPerInstance=$HOLD" --Logging:LogLevel:Default=Warning
}

# ---------------------------------------------------------------- start-up and idle RSS
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for ((i = 1; i <= RUNS; i++)); do
  for ((k = 0; k < 2; k++)); do
    b=${BUILDS[$(((k + i) % 2))]}
    log "start-up $i/$RUNS  $b"
    mapfile -t args < <(gateway_args "$b")
    # shellcheck disable=SC2086 # CMD[jit] is two words
    python3 bench/first200.py --socket "$DIR/$b.sock" --idle "$IDLE" --log "$DIR/$b-startup.log" -- ${CMD[$b]} "${args[@]}" >>"$DIR/startup-$b.jsonl" ||
      { log "start-up run failed for $b: $(tail -1 "$DIR/startup-$b.jsonl")"; tail -20 "$DIR/$b-startup.log" >&2; }
  done
done

# ---------------------------------------------------------------- throughput and held requests (long-lived gateways)
declare -A GW_PID
for b in "${BUILDS[@]}"; do
  mapfile -t args < <(gateway_args "$b")
  # shellcheck disable=SC2086
  ${CMD[$b]} "${args[@]}" >"$DIR/$b.log" 2>&1 &
  GW_PID[$b]=$!; PIDS+=("${GW_PID[$b]}")
done
for b in "${BUILDS[@]}"; do
  ok=0
  for _ in $(seq 300); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 --unix-socket "$DIR/$b.sock" http://localhost/echo/ready 2>/dev/null) == 200 ]] && { ok=1; break; }
    sleep 0.1
  done
  [[ $ok -eq 1 ]] || { tail -20 "$DIR/$b.log" >&2; echo "gateway $b did not start" >&2; exit 1; }
done
: >"$DIR/get.jsonl"
for ((round = 1; round <= ROUNDS; round++)); do
  for ((k = 0; k < 2; k++)); do
    b=${BUILDS[$(((k + round) % 2))]}
    log "GET c=32 round $round/$ROUNDS  $b"
    "${LOADGEN[@]}" --socket "$DIR/$b.sock" --path /echo/hello --method GET --body-size 0 --concurrency 32 \
      --warmup "$WARMUP" --duration "$DURATION" --verify all --watch-pid "${GW_PID[$b]}" --label "$b" --scenario "GET c32" \
      --round "$round" --json >>"$DIR/get.jsonl" || log "load generator failed for $b"
  done
done
: >"$DIR/held.jsonl"
for b in "${BUILDS[@]}"; do
  [[ $HELD -gt 0 ]] || break
  log "held: $HELD requests in flight for $HOLD_MS ms  $b"
  "${LOADGEN[@]}" --socket "$DIR/$b.sock" --path /echo/held --method POST --body-size 64 --unique-body \
    --concurrency "$HELD" --requests-per-connection 1 --header "x-echo-delay-ms: $HOLD_MS" \
    --timeout $((HOLD_MS / 1000 + 60)) --verify all --watch-pid "${GW_PID[$b]}" --label "$b" --scenario held --json >>"$DIR/held.jsonl" ||
    log "held run failed for $b"
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- images
: >"$DIR/images.txt"
if command -v podman >/dev/null; then
  for pair in "jit=${JIT_IMAGE:-localhost/gateway-jit:dev}" "aot=${AOT_IMAGE:-localhost/gateway-aot:dev}"; do
    b=${pair%%=*} image=${pair#*=}
    if podman image exists "$image" 2>/dev/null; then
      echo "$b $image $(podman image inspect --format '{{.Size}}' "$image")" >>"$DIR/images.txt"
    fi
  done
fi

# ---------------------------------------------------------------- report
STAMP=$(date -u +%Y-%m-%d)
OUT=${OUT:-bench/results/$STAMP-aot.md}
mkdir -p "$(dirname "$OUT")"
AOT_SIZE=$(stat -c %s "$AOT_BIN")
JIT_SIZE=$(du -sb "$JIT_DIR" | cut -f1)
python3 - "$DIR" "$OUT" "$RUNS" "$IDLE" "$ROUNDS" "$WARMUP" "$DURATION" "$HELD" "$HOLD_MS" "$AOT_SIZE" "$JIT_SIZE" \
  "$LOAD_START" "$LOAD_END" "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" "$(nproc)" "$(uname -r)" \
  "$(dotnet --list-runtimes | awk '/AspNetCore/{v=$2} END{print v}')" <<'PY'
import json, statistics, sys
(d, out, runs, idle, rounds, warmup, duration, held, hold_ms, aot_size, jit_size, load_start, load_end, commit, cores, kernel, runtime) = sys.argv[1:]

def lines(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.startswith("{")]
    except FileNotFoundError:
        return []

def med(xs):
    return statistics.median(xs) if xs else None

def fmt(x, spec="{:,.0f}"):
    return "—" if x is None else spec.format(x)

builds = ["jit", "aot"]
names = {"jit": "JIT (`dotnet Gateway.dll`)", "aot": "Native AOT (`./Gateway`)"}
start = {b: [r for r in lines(f"{d}/startup-{b}.jsonl") if "first_200_ms" in r] for b in builds}
get = {b: [r for r in lines(f"{d}/get.jsonl") if r.get("label") == b] for b in builds}
heldr = {b: [r for r in lines(f"{d}/held.jsonl") if r.get("label") == b] for b in builds}
images = {}
for l in open(f"{d}/images.txt"):
    b, image, size = l.split()
    images[b] = (image, int(size))

rows = []
def row(name, f, target=None):
    rows.append((name, f("jit"), f("aot"), target or ""))

row("image size", lambda b: f"{images[b][1] / 1e6:,.1f} MB (`{images[b][0]}`)" if b in images else "—", "AOT ≤ 40 MB")
row("published output", lambda b: f"{(int(jit_size) if b == 'jit' else int(aot_size)) / 1e6:,.1f} MB" + (" (+ the shared ASP.NET Core runtime)" if b == "jit" else " (one file)"))
row(f"exec → first 200 on the socket (median of {runs}; min–max)", lambda b: (fmt(med([r['first_200_ms'] for r in start[b]]), "{:,.0f} ms") + (f" ({min(r['first_200_ms'] for r in start[b]):,.0f}–{max(r['first_200_ms'] for r in start[b]):,.0f})" if start[b] else "")), "AOT ≤ 150 ms")
row("CPU used until the first 200 (median; all threads)", lambda b: fmt(med([r['first_200_cpu_ms'] for r in start[b] if 'first_200_cpu_ms' in r]), "{:,.0f} ms"))
row(f"idle RSS ({idle} s after the first 200; median)", lambda b: fmt(med([r['idle_rss_kb'] / 1024 for r in start[b]]), "{:,.1f} MiB"), "AOT ≤ 35 MB")
row(f"RSS with {int(held):,} held requests (peak sampled)", lambda b: fmt(med([r['sut_max_sampled_rss_kb'] / 1024 for r in heldr[b]]), "{:,.0f} MiB") + (f", {heldr[b][0]['correct']:,} of {int(held):,} correct" if heldr[b] else ""))
row(f"GET c=32 req/s (median of {rounds})", lambda b: fmt(med([r['rps'] for r in get[b]])))
row("GET c=32 gateway CPU µs/request (median)", lambda b: fmt(med([r['sut_cpu_pct'] / 100 / r['rps'] * 1e6 for r in get[b] if r['rps'] > 0]), "{:,.1f}"))
row("GET c=32 p50 / p99 (median)", lambda b: fmt(med([r['p50_us'] for r in get[b]]), "{:,.0f} µs") + " / " + fmt(med([r['p99_us'] for r in get[b]]), "{:,.0f} µs"))
row("GET c=32 errors / non-2xx", lambda b: f"{sum(r['errors'] for r in get[b])} / {sum(r['non_2xx'] for r in get[b])}")

md = [f"# JIT vs Native AOT gateway, side by side (`bench/aot-compare.sh`)", "",
      f"Commit {commit}, {cores} cores, Linux {kernel}, ASP.NET Core {runtime}. Load average (1/5/15 min) before: {load_start}, after: {load_end}.",
      f"Start-ups: {runs} per build, alternating; GET c=32: {rounds} round(s) per build of {warmup} s warm-up + {duration} s, alternating;",
      f"held: {int(held):,} connections × 1 POST, `x-echo-delay-ms: {hold_ms}`. Backend: samples/EchoBackend over Unix datagrams (shared).",
      "CPU µs/request counts the gateway process only. The machine is shared: absolute numbers move between runs, the ratios carry.", "",
      "| | " + " | ".join(names[b] for b in builds) + " | target |", "|---|---|---|---|"]
md += [f"| {n} | {j} | {a} | {t} |" for n, j, a, t in rows]
md.append("")
md.append("Raw start-up runs (ms to first 200 / CPU ms until then / idle RSS MiB):")
md.append("")
for b in builds:
    md.append(f"- {b}: " + ", ".join(f"{r['first_200_ms']:.0f}/{r.get('first_200_cpu_ms', 0):.0f}/{r['idle_rss_kb'] / 1024:.1f}" for r in start[b]))
md.append("")
open(out, "w").write("\n".join(md))
print("\n".join(md))
PY
log "wrote $OUT"
