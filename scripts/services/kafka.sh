# Sourced by scripts/test.sh: makes the Kafka-protocol test broker available. The tests start
# their own tansu brokers (memory storage, loopback, a free port each), so this only makes
# sure the binary is there and exports KIDJAMO_TEST_TANSU. tansu is built from crates.io once
# (about 8 minutes on 2 cores) and then cached in ~/.cargo/bin.

TANSU_VERSION="${KIDJAMO_TANSU_VERSION:-}"
tansu_bin="${KIDJAMO_TEST_TANSU:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}"
if [ ! -x "$tansu_bin" ]; then
  echo "== Kafka: installing the tansu broker (cargo install tansu --locked --features dynostore; once, ~8 min)"
  # Its own target directory: tansu's dependencies must not churn kidjamo's build cache.
  CARGO_TARGET_DIR="${TMPDIR:-/tmp}/kidjamo-tansu-build" \
    cargo install tansu --locked --features dynostore ${TANSU_VERSION:+--version "$TANSU_VERSION"} >&2
  rm -rf "${TMPDIR:-/tmp}/kidjamo-tansu-build"
  tansu_bin="$HOME/.cargo/bin/tansu"
fi
if ! "$tansu_bin" --version >/dev/null 2>&1; then
  echo "error: $tansu_bin does not run; remove it and rerun to reinstall tansu" >&2
  exit 2
fi
export KIDJAMO_TEST_TANSU="$tansu_bin"
echo "== Kafka: tansu $("$tansu_bin" --version 2>/dev/null | head -n 1) (tests start their own brokers)"
