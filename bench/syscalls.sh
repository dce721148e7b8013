#!/usr/bin/env bash
# Syscalls per request, per process (issue 20's breakdown: bench/results/2026-12-04-gateway-breakdown.md).
#   bench/syscalls.sh [--duration 5] [--concurrency 32] [--no-build]
# Starts the gateway in front of the C# echo sample (as bench/run.sh does) and DirectEcho (Kestrel alone), warms each
# up with 4 s of GET /echo/hello, then runs the same load again with `strace -c -f` attached to the gateway, to the echo
# sample, and (in a separate run) to DirectEcho. Prints, per syscall, calls per request (and how many of them failed)
# for each process, as a Markdown table. strace slows the traced process: the counts per request are the result, not
# the throughput. Needs strace and ptrace rights over the processes (root, or kernel.yama.ptrace_scope 0).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source bench/lib.sh

DURATION=5 CONC=32 BUILD=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION=$2; shift ;;
    --concurrency) CONC=$2; shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done
command -v strace >/dev/null || { echo "strace is not installed (apt-get install -y strace)" >&2; exit 1; }
log() { printf '[syscalls %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
[[ $BUILD -eq 0 ]] || build_release bench/LoadGen/LoadGen.csproj bench/DirectEcho/DirectEcho.csproj src/Gateway/Gateway.csproj samples/EchoBackend/EchoBackend.csproj

DIR=$(mktemp -d /tmp/gateway-syscalls.XXXXXX)
PIDS=()
cleanup() {
  stop_pids "${PIDS[@]}"
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
LOADGEN=(dotnet bench/LoadGen/bin/Release/net10.0/LoadGen.dll)

dotnet samples/EchoBackend/bin/Release/net10.0/EchoBackend.dll --Backend:SocketPath="$DIR/echo.sock" --Logging:LogLevel:Default=Warning >"$DIR/echo.log" 2>&1 &
ECHO_PID=$!; PIDS+=("$ECHO_PID")
for _ in $(seq 300); do [[ -S $DIR/echo.sock ]] && break; sleep 0.1; done
dotnet src/Gateway/bin/Release/net10.0/Gateway.dll --Gateway:Listen:UnixSocket="$DIR/gw.sock" --Gateway:DemoBackend:Enabled=false \
  --Gateway:Backends:echo:Instances:0="$DIR/echo.sock" --Gateway:Routes:echo:Path='/echo/{**rest}' --Gateway:Routes:echo:Backend=echo \
  --Logging:LogLevel:Default=Warning >"$DIR/gw.log" 2>&1 &
GW_PID=$!; PIDS+=("$GW_PID")
dotnet bench/DirectEcho/bin/Release/net10.0/DirectEcho.dll --socket "$DIR/direct.sock" >"$DIR/direct.log" 2>&1 &
DIRECT_PID=$!; PIDS+=("$DIRECT_PID")
wait_http "$DIR/gw.sock" /echo/ready 30 || { cat "$DIR/gw.log" >&2; exit 1; }
wait_http "$DIR/direct.sock" /echo/ready 30 || { cat "$DIR/direct.log" >&2; exit 1; }

load() { # socket seconds -> LoadGen JSON
  "${LOADGEN[@]}" --socket "$1" --path /echo/hello --method GET --body-size 0 --concurrency "$CONC" --warmup 0 --duration "$2" --verify all --json
}
traced() { # out socket pid... : strace -c on each pid during one load run; the run's JSON goes to $out.json
  local out=$1 sock=$2; shift 2
  local tracers=() pid
  for pid in "$@"; do
    strace -c -f -q -o "$out-$pid.strace" -p "$pid" & tracers+=("$!")
  done
  sleep 1 # let strace attach to every thread before the load starts (not a synchronisation of the product under test)
  load "$sock" "$DURATION" >"$out.json"
  for pid in "${tracers[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${tracers[@]}"; do wait "$pid" 2>/dev/null || true; done
}

log "warming up"
load "$DIR/gw.sock" 4 >/dev/null
load "$DIR/direct.sock" 4 >/dev/null
log "gateway + echo under strace, ${DURATION}s GET c=$CONC"
traced "$DIR/gw" "$DIR/gw.sock" "$GW_PID" "$ECHO_PID"
log "DirectEcho under strace"
traced "$DIR/direct" "$DIR/direct.sock" "$DIRECT_PID"

python3 - "$DIR" "$GW_PID" "$ECHO_PID" "$DIRECT_PID" "$CONC" <<'PY'
import json, sys, collections
d, gw, echo, direct, conc = sys.argv[1:]
def counts(path):
    calls, errors = collections.Counter(), collections.Counter()
    for line in open(path):
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            # % time, seconds, usecs/call, calls, [errors], syscall
            calls[f[-1]] += int(f[3])
            if len(f) == 6:
                errors[f[-1]] += int(f[4])
    return calls, errors
cols = []
for label, run, pid in (("gateway", "gw", gw), ("echo sample", "gw", echo), ("Kestrel alone (DirectEcho)", "direct", direct)):
    n = max(1, json.load(open(f"{d}/{run}.json"))["correct"])
    c, e = counts(f"{d}/{run}-{pid}.strace")
    cols.append((label, n, c, e))
names = sorted({k for _, _, c, _ in cols for k in c}, key=lambda k: -max(c[k] / n for _, n, c, _ in cols))
print(f"GET /echo/hello, c={conc}, under strace -c -f: calls per request (of which failed)\n")
print("| syscall | " + " | ".join(l for l, *_ in cols) + " |")
print("|---|" + "--:|" * len(cols))
for k in names:
    cells = []
    for _, n, c, e in cols:
        v = c[k] / n
        cells.append("—" if c[k] == 0 else (f"{v:.2f} ({e[k] / n:.2f})" if e[k] else f"{v:.2f}"))
    if any(c[k] / n >= 0.005 for _, n, c, _ in cols):
        print(f"| `{k}` | " + " | ".join(cells) + " |")
print("| **all** | " + " | ".join(f"**{sum(c.values()) / n:.2f}**" for _, n, c, _ in cols) + " |")
print("\nrequests traced: " + ", ".join(f"{l} {n}" for l, n, *_ in cols))
PY
