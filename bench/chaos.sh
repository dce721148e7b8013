#!/usr/bin/env bash
# The chaos soak (issue 10). From the repository root:
#   bench/chaos.sh --short                 CI: 45 s of chaos (~70 s in all with start-up, warm-up and settling)
#   bench/chaos.sh --duration 600          a long local run
#   bench/chaos.sh --duration 180 --out bench/results/<stamp>-chaos.md
# Builds the gateway, samples/KeyValueBackend and bench/Chaos in Release first (skip with --no-build), then runs
# bench/Chaos (options: --seed N --concurrency N --warmup S --rss-margin-mib N --keep; see --help).
# Exit status: 0 when every check held, 1 when one failed (the report says which), 2 on bad usage.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source bench/lib.sh # build_release

BUILD=1
args=()
for a in "$@"; do
  if [[ $a == --no-build ]]; then BUILD=0; else args+=("$a"); fi
done

if [[ $BUILD -eq 1 ]]; then
  build_release src/Gateway/Gateway.csproj samples/KeyValueBackend/KeyValueBackend.csproj bench/Chaos/Chaos.csproj
fi

exec dotnet bench/Chaos/bin/Release/net10.0/Chaos.dll "${args[@]}"
