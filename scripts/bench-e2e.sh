#!/usr/bin/env bash
# End-to-end benchmark: `hunter-local --once --no-dynamics` (release build) on N seeded referrals,
# embedded adapters and the built-in Partner Center simulator. Prints one line per run.
# With BENCH_DYNAMICS=1 the leads are pushed to the built-in Dataverse simulator too.
# Usage: scripts/bench-e2e.sh [N=2000] [RUNS=3] [extra hunter-local flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-2000}"; runs="${2:-3}"; shift $(( $# > 2 ? 2 : $# ))
cargo build --release -q -p hunter-local --bin hunter-local
for i in $(seq 1 "$runs"); do
  dynamics=(--no-dynamics)
  [[ "${BENCH_DYNAMICS:-0}" == 1 ]] && dynamics=()
  summary="$(RUST_LOG=error target/release/hunter-local --once "${dynamics[@]}" --seed "$n" "${BENCH_BACKEND:---in-memory}" "$@")"
  python3 -c '
import json, sys
s = json.loads(sys.argv[1])
ms = max(s["durationMs"], 1)
n = s["fetched"]
print("run %s: %d referrals, %d pages, %d leads (%d pushed) in %d ms = %.0f referrals/s" % (sys.argv[2], n, s["pages"], s["leadsUpserted"], s["dynamicsPushed"], ms, n * 1000 / ms))
' "$summary" "$i"
done
