#!/usr/bin/env bash
# Browser tests of the UI (tests/browser): real headless Chromium (Debian's package) driven by
# playwright-core, run with Node's built-in test runner against hunter-local.
#
#   scripts/browser-tests.sh                       # builds hunter-local (cargo build -q -p hunter-local)
#   HUNTER_LOCAL_BIN=/path/hunter-local scripts/browser-tests.sh   # uses that binary instead
#   UPDATE_SCREENSHOTS=1 scripts/browser-tests.sh  # also refreshes docs/screenshots/{leads,lead-detail}.png
#   scripts/browser-tests.sh leads.test.mjs        # only these test files (names in tests/browser)
#
# Screenshots of every main view go to target/browser-artifacts/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TESTS="$ROOT/tests/browser"
CHROMIUM=/usr/bin/chromium

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# 1. Chromium from Debian (Playwright never downloads a browser here).
if [ ! -x "$CHROMIUM" ]; then
  echo "==> installing chromium (apt)"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; then
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
  fi
fi

# 2. playwright-core, from the lockfile: npm ci only when node_modules is missing or was installed
#    from another lockfile (its hash is kept next to it).
lock_hash="$(sha256sum "$TESTS/package-lock.json" | cut -d' ' -f1)"
stamp="$TESTS/node_modules/.hunter-lock-sha256"
if [ ! -f "$TESTS/node_modules/playwright-core/package.json" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$lock_hash" ]; then
  echo "==> npm ci (tests/browser)"
  (cd "$TESTS" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_hash" > "$stamp"
fi

# 3. hunter-local.
if [ -z "${HUNTER_LOCAL_BIN:-}" ]; then
  echo "==> cargo build -p hunter-local"
  (cd "$ROOT" && cargo build -q -p hunter-local)
  HUNTER_LOCAL_BIN="$ROOT/target/debug/hunter-local"
fi
if [ ! -x "$HUNTER_LOCAL_BIN" ]; then
  echo "hunter-local not found or not executable: $HUNTER_LOCAL_BIN" >&2
  exit 1
fi
export HUNTER_LOCAL_BIN
export CHROMIUM_PATH="$CHROMIUM"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

# 4. The tests, one file at a time (each starts its own hunter-local and browser).
mkdir -p "$ROOT/target/browser-artifacts"
cd "$TESTS"
if [ "$#" -gt 0 ]; then
  files=("$@")
else
  files=(*.test.mjs)
fi
echo "==> browser tests (${#files[@]} files, screenshots in target/browser-artifacts/)"
node --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
