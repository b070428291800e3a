# Sourced by scripts/test.sh: makes the Kafka-protocol test broker available. The tests start
# their own tansu brokers (memory storage, loopback, a free port each), so this only makes sure
# the binary is there and exports KIDJAMO_TEST_TANSU. tansu is built from crates.io once (about 10 minutes on 2 cores) into a
# folder named after its version and features, so a change of either installs afresh and an
# older tansu elsewhere on the machine is never picked up by mistake.

TANSU_VERSION="${KIDJAMO_TANSU_VERSION:-0.6.0}"
TANSU_FEATURES="dynostore"
tansu_root="${XDG_CACHE_HOME:-$HOME/.cache}/kidjamo/tools/tansu-${TANSU_VERSION}-${TANSU_FEATURES//,/-}"
tansu_bin="${KIDJAMO_TEST_TANSU:-$tansu_root/bin/tansu}"
if [ ! -x "$tansu_bin" ]; then
  echo "== Kafka: installing the tansu broker $TANSU_VERSION ($TANSU_FEATURES) into $tansu_root (once, ~10 min)"
  # Its own target directory: tansu's dependencies must not churn kidjamo's build cache.
  CARGO_TARGET_DIR="${TMPDIR:-/tmp}/kidjamo-tansu-build" \
    cargo install tansu --locked --version "$TANSU_VERSION" --features "$TANSU_FEATURES" \
    --root "$tansu_root" >&2
  rm -rf "${TMPDIR:-/tmp}/kidjamo-tansu-build"
  tansu_bin="$tansu_root/bin/tansu"
fi
if ! "$tansu_bin" --version >/dev/null 2>&1; then
  echo "error: $tansu_bin does not run; remove it and rerun to reinstall tansu" >&2
  exit 2
fi
export KIDJAMO_TEST_TANSU="$tansu_bin"
echo "== Kafka: tansu $("$tansu_bin" --version 2>/dev/null | head -n 1) (tests start their own brokers)"
