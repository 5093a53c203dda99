#!/usr/bin/env bash
# The domain crate stays pure: no async runtime, HTTP stack or AWS SDK in its dependency tree.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
forbidden='^(tokio|hyper|reqwest|aws-[a-z-]+|lambda_runtime|lambda_http|tracing-subscriber|rusqlite|hickory-[a-z-]+) '
tree=$(cargo tree -p hunter-domain -e normal --prefix none --format '{p}')
if [[ -z "$tree" ]]; then
    echo "cargo tree printed nothing for hunter-domain" >&2
    exit 1
fi
found=$(grep -E "$forbidden" <<<"$tree" | sort -u || true)
if [[ -n "$found" ]]; then
    echo "hunter-domain must not depend on I/O crates; found:" >&2
    echo "$found" >&2
    exit 1
fi
echo "hunter-domain: no I/O dependencies ($(sort -u <<<"$tree" | wc -l) crates checked)"

# The Lambda functions never link SQLite (the durable embedded backend is hunter-local's alone).
for function in fetch-referrals ingest-referral push-dynamics pull-dynamics http-api; do
    if cargo tree -p "$function" -e normal --prefix none --format '{p}' | grep -qE '^(rusqlite|libsqlite3-sys|hunter-sqlite) '; then
        echo "$function must not depend on SQLite" >&2
        exit 1
    fi
done
echo "Lambda functions: no SQLite"
