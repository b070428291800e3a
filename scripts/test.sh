#!/usr/bin/env bash
# The one test command: formatting, lints, then every test (unit, property, statistical, CLI,
# PostgreSQL). It makes the services the tests need available first (scripts/services/); a test
# never skips silently because a service is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

# Services register their clean-up here; one EXIT trap runs them all.
on_exit=()
trap 'for f in "${on_exit[@]}"; do "$f"; done' EXIT

# shellcheck source=services/postgres.sh
. scripts/services/postgres.sh
# shellcheck source=services/kafka.sh
. scripts/services/kafka.sh
# shellcheck source=services/s3.sh
. scripts/services/s3.sh

echo "== cargo test"
cargo test --locked --all-targets
