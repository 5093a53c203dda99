# Hunter referral sync: developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

ARGS ?=
CFN_LINT := .venv/bin/cfn-lint

.PHONY: demo test test-chaos test-long test-embedded test-moto test-api-contract test-browser lint fmt fmt-check clippy layers cfn-lint venv build package cold-start deploy bench

## demo: run hunter-local (pass options with ARGS="--once --seed 50")
demo:
	cargo run -p hunter-local --bin hunter-local -- $(ARGS)

## test: everything CI checks, in order
test:
	@echo "==> venv"
	scripts/ensure-venv.sh
	@echo "==> fmt"
	cargo fmt --all -- --check
	@echo "==> clippy"
	cargo clippy --workspace --all-targets -- -D warnings
	@echo "==> doc (broken and private links fail it)"
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q
	@echo "==> layers"
	scripts/check-layers.sh
	@echo "==> cfn-lint"
	$(CFN_LINT) template.yaml
	@echo "==> cargo test (moto)"
	scripts/with-moto.sh cargo test --workspace
	@echo "==> chaos: the full pipeline under faults, killed and restarted twice (2,000 referrals; and on moto)"
	$(MAKE) test-chaos
	@echo "==> API contract (schemathesis against the OpenAPI document)"
	HUNTER_LOCAL_BIN=$(CURDIR)/target/debug/hunter-local scripts/api-contract.sh
	@echo "==> browser tests (headless Chromium)"
	HUNTER_LOCAL_BIN=$(CURDIR)/target/debug/hunter-local scripts/browser-tests.sh

## test-chaos: hunter-local on the durable backend under injected faults, killed twice; prints its invariant report
test-chaos:
	cargo test -p hunter-local --test chaos -- --ignored --nocapture chaos_killed_twice
	scripts/with-moto.sh cargo test -p hunter-local --test chaos -- --ignored --nocapture chaos_on_aws

## test-long: the chaos test with 20,000 referrals (about 10 minutes)
test-long:
	HUNTER_CHAOS_REFERRALS=20000 cargo test -p hunter-local --test chaos -- --ignored --nocapture chaos_killed_twice

## test-embedded: everything that needs no moto: contract suite (memory and SQLite), sync suite, unit tests
test-embedded:
	@echo "==> contract tests (embedded)"
	cargo test -p hunter-tests --test contract -- embedded:: sqlite::
	@echo "==> sync, push and API tests (simulators + embedded adapters)"
	cargo test -p hunter-tests --test sync --test push --test api
	@echo "==> unit tests, simulator tests, hunter-local --once (embedded)"
	cargo test -p hunter-domain -p hunter-core -p fetch-referrals -p ingest-referral -p push-dynamics -p pull-dynamics -p http-api
	cargo test -p hunter-local -- --skip aws

## test-moto: the contract suite, hunter-local --once --aws and the functions under cargo lambda watch, on moto server
test-moto: venv
	@echo "==> contract tests (moto)"
	scripts/with-moto.sh cargo test -p hunter-tests --test contract -- moto::
	@echo "==> hunter-local --once --aws (moto)"
	scripts/with-moto.sh cargo test -p hunter-local --test once -- aws
	@echo "==> the five functions under cargo lambda watch (moto + simulators)"
	scripts/with-moto.sh cargo test -p hunter-tests --test lambda

## test-browser: the UI in headless Chromium (UPDATE_SCREENSHOTS=1 refreshes docs/screenshots)
test-browser:
	scripts/browser-tests.sh

## test-api-contract: schemathesis against the API's OpenAPI document (hunter-local, seeded)
test-api-contract:
	scripts/api-contract.sh

lint: fmt-check clippy layers cfn-lint

fmt:
	cargo fmt --all

fmt-check:
	@echo "==> fmt"
	cargo fmt --all -- --check

clippy:
	@echo "==> clippy"
	cargo clippy --workspace --all-targets -- -D warnings

## layers: the domain crate has no I/O dependencies
layers:
	@echo "==> layers"
	scripts/check-layers.sh

cfn-lint: venv
	@echo "==> cfn-lint"
	$(CFN_LINT) template.yaml

venv:
	@echo "==> venv"
	scripts/ensure-venv.sh

build:
	cargo build --workspace

## package: build every function for Lambda (arm64 zips, cargo lambda) and report their sizes (target/bench/package.json)
package:
	scripts/package.sh

## cold-start: each function's x86_64 release bootstrap against a local Lambda Runtime API (moto + hunter-local's simulators): ms to first /next, peak RSS (target/bench/cold-start.json)
cold-start: venv
	cargo build --release --bin fetch-referrals --bin ingest-referral --bin push-dynamics --bin pull-dynamics --bin http-api
	cargo build --release --bin hunter-local
	scripts/with-moto.sh python3 scripts/cold-start.py $(ARGS)

## deploy: sam build && sam deploy with samconfig.toml (docs/deploy.md; pass e.g. ARGS="--region eu-west-1 --parameter-overrides ...")
deploy: venv
	PATH="$(CURDIR)/.venv/bin:$$PATH" SAM_CLI_TELEMETRY=0 .venv/bin/sam build
	PATH="$(CURDIR)/.venv/bin:$$PATH" SAM_CLI_TELEMETRY=0 .venv/bin/sam deploy $(ARGS)

## bench: criterion benches, hunter-local end to end (10k and 100k in memory, 10k durable, 5k on moto) and the Dataverse push benchmark; writes target/bench/bench.json and prints the README's table
bench: venv
	python3 scripts/bench.py
