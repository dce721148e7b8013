#!/usr/bin/env bash
# What a live capture (GET /admin/capture) costs the traffic it watches and the traffic it does not.
# One gateway, two echo backends ("echo" and "other"); GET /echo/hello at concurrency 32 in three modes, interleaved
# over rounds: no capture; a capture of backend "other" running (curl -N reading it); a capture of backend "echo"
# running. Per mode: throughput, p99, and the gateway process's CPU µs and context switches per request
# (/proc/PID/stat, /proc/PID/task/*/status).
# Usage: bench/capture.sh [--rounds N] [--duration S] [--no-build] [--out FILE.md]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh # build_release
ROUNDS=3; DURATION=4; BUILD=1; OUT="bench/results/$(date -u +%Y-%m-%d)-capture.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ "$BUILD" = 1 ]; then
  build_release bench/LoadGen/LoadGen.csproj src/Gateway/Gateway.csproj samples/EchoBackend/EchoBackend.csproj
fi
DIR=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
ECHO_DLL=samples/EchoBackend/bin/Release/net10.0/EchoBackend.dll
dotnet "$ECHO_DLL" --Backend:SocketPath="$DIR/echo.sock" --Logging:LogLevel:Default=Warning >/dev/null 2>&1 & pids+=($!)
dotnet "$ECHO_DLL" --Backend:SocketPath="$DIR/other.sock" --Logging:LogLevel:Default=Warning >/dev/null 2>&1 & pids+=($!)
dotnet src/Gateway/bin/Release/net10.0/Gateway.dll --Gateway:Listen:UnixSocket="$DIR/gw.sock" --Gateway:DemoBackend:Enabled=false \
  --Gateway:Backends:echo:Instances:0="$DIR/echo.sock" --Gateway:Backends:other:Instances:0="$DIR/other.sock" \
  --Gateway:Routes:echo:Path='/echo/{**rest}' --Gateway:Routes:echo:Backend=echo \
  --Gateway:Routes:other:Path='/other/{**rest}' --Gateway:Routes:other:Backend=other \
  --Logging:LogLevel:Default=Warning >"$DIR/gw.log" 2>&1 & gw=$!; pids+=($gw)
for _ in $(seq 1 200); do
  curl -sf --unix-socket "$DIR/gw.sock" http://localhost/echo/ready >/dev/null 2>&1 && curl -sf --unix-socket "$DIR/gw.sock" http://localhost/other/ready >/dev/null 2>&1 && break
  sleep 0.1
done
# Light traffic on "other" throughout, so that its capture has something to show.
( while kill -0 $gw 2>/dev/null; do curl -s --unix-socket "$DIR/gw.sock" http://localhost/other/tick >/dev/null || true; sleep 0.05; done ) & pids+=($!)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ctx() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(voluntary|nonvoluntary)_ctxt_switches/ {s += $2} END {print s}'; }
HZ=$(getconf CLK_TCK)
RAW="$DIR/raw.txt"; : >"$RAW"
for round in $(seq 1 "$ROUNDS"); do
  for mode in none other echo; do
    cap=""
    if [ "$mode" != none ]; then
      curl -sN --unix-socket "$DIR/gw.sock" "http://localhost/admin/capture?backend=$mode&count=1000000&duration=3600" >"$DIR/cap-$mode.ndjson" & cap=$!
      for _ in $(seq 1 100); do [ -s "$DIR/cap-$mode.ndjson" ] && break; sleep 0.05; done
    fi
    t0=$(cpu_ticks $gw); c0=$(ctx $gw)
    line=$(dotnet bench/LoadGen/bin/Release/net10.0/LoadGen.dll --socket "$DIR/gw.sock" --path /echo/hello --concurrency 32 \
      --warmup 0 --duration "$DURATION" --verify all --json)
    t1=$(cpu_ticks $gw); c1=$(ctx $gw)
    if [ -n "$cap" ]; then kill "$cap" 2>/dev/null || true; wait "$cap" 2>/dev/null || true; fi
    captured=$( [ "$mode" = none ] && echo 0 || (grep -c '"kind"' "$DIR/cap-$mode.ndjson" || true))
    lost=$( [ "$mode" = none ] && echo 0 || (grep -o '"lost":[0-9]*' "$DIR/cap-$mode.ndjson" | tail -1 | cut -d: -f2) || true )
    echo "$round $mode $(( (t1 - t0) )) $(( c1 - c0 )) ${captured:-0} ${lost:-0} $line" >>"$RAW"
    echo "round $round $mode: $(echo "$line" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["rps"], "req/s, p99", d["p99_us"], "us, errors", d["errors"])')" >&2
  done
done
python3 - "$RAW" "$HZ" "$ROUNDS" "$DURATION" >"$OUT" <<'PY'
import sys, json, statistics
raw, hz, rounds, duration = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = {}
for l in open(raw):
    parts = l.split(" ", 6)
    rnd, mode, ticks, ctx, captured, lost, js = parts[0], parts[1], int(parts[2]), int(parts[3]), int(parts[4]), int(parts[5] or 0), json.loads(parts[6])
    req = max(js["requests"], 1)
    rows.setdefault(mode, []).append(dict(rps=js["rps"], p99=js["p99_us"], cpu=ticks * 1e6 / hz / req, ctx=ctx / req, errors=js["errors"], captured=captured, lost=lost))
names = {"none": "no capture", "other": "capture of another backend running", "echo": "capture of the measured backend running"}
print("# Live capture overhead (`bench/capture.sh`)\n")
print(f"GET /echo/hello, concurrency 32, {duration} s per run, {rounds} rounds, modes interleaved; medians over rounds. ")
print("CPU and context switches: the gateway process alone, per request (they include the light /other traffic of ~20 req/s).\n")
print("| mode | req/s | p99 µs | gateway CPU µs/req | gateway ctx switches/req | errors | events captured (last round) | lost (last round) |")
print("|---|--:|--:|--:|--:|--:|--:|--:|")
base = None
for mode in ["none", "other", "echo"]:
    r = rows.get(mode, [])
    if not r: continue
    m = lambda k: statistics.median(x[k] for x in r)
    if mode == "none": base = m("rps")
    ratio = f" ({m('rps') / base:.2f}×)" if base else ""
    print(f"| {names[mode]} | {m('rps'):.0f}{ratio} | {m('p99'):.0f} | {m('cpu'):.1f} | {m('ctx'):.2f} | {sum(x['errors'] for x in r)} | {r[-1]['captured']} | {r[-1]['lost']} |")
PY
cat "$OUT"
