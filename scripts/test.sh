#!/usr/bin/env bash
# The one test command: formatting, lints, then every test (unit, property, statistical, CLI).
# Tests that need PostgreSQL or Kafka start them through scripts/services/ (added with the
# issues that need them); a test never skips silently because a service is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test"
cargo test --locked --all-targets
