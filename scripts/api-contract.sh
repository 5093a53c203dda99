#!/usr/bin/env bash
# Property-based tests of the HTTP API against its own OpenAPI document (schemathesis): a
# hunter-local with seeded data serves the API; every operation is called with generated valid
# and invalid input. Fails on any 5xx, any answer that breaks the documented schema, status
# codes or content types.
# HUNTER_LOCAL_BIN: a built hunter-local (default: cargo build). SCHEMATHESIS_SEED: replay a run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/ensure-venv.sh
bin="${HUNTER_LOCAL_BIN:-}"
if [[ -z "$bin" ]]; then
    cargo build -q -p hunter-local
    bin="$root/target/debug/hunter-local"
fi
out="$root/target/api-contract"
rm -rf "$out" && mkdir -p "$out"
token="contract-$(date +%s)-$RANDOM"

HUNTER_API_TOKEN="$token" RUST_LOG=warn "$bin" --port 0 --in-memory --seed 120 --sync-interval 3600 \
    >"$out/hunter-local.out" 2>"$out/hunter-local.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT

url=""
for _ in $(seq 1 300); do
    url="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$out/hunter-local.out" | head -1 || true)"
    [[ -n "$url" ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$out/hunter-local.log" >&2; exit 1; }
    sleep 0.1
done
[[ -n "$url" ]] || { echo "api-contract: hunter-local printed no URL" >&2; exit 1; }
# The first sync at start fills the store, so that the lead and referral routes answer data.
for _ in $(seq 1 300); do
    leads="$(curl -fsS -H "Authorization: Bearer $token" "$url/api/v1/stats" 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["leads"])' 2>/dev/null || echo 0)"
    [[ "$leads" -gt 0 ]] && break
    sleep 0.2
done
curl -fsS -H "Authorization: Bearer $token" "$url/api/v1/openapi.json" >"$out/openapi.json"

seed=()
[[ -n "${SCHEMATHESIS_SEED:-}" ]] && seed=(--seed "$SCHEMATHESIS_SEED")
cd "$out"
"$root/.venv/bin/schemathesis" run "$out/openapi.json" \
    --url "$url" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-40}" \
    --generation-database none \
    --report junit --report-dir "$out" \
    --no-color "${seed[@]}"
