# Sourced by scripts/test.sh: makes the S3-protocol test server available. The tests start
# their own servers (moto's server mode, loopback, a free port each, objects in memory), so
# this only makes sure moto is importable and exports KIDJAMO_TEST_MOTO_PYTHON. moto comes from
# PyPI, installed once for the current user (a few seconds).

MOTO_VERSION="${KIDJAMO_MOTO_VERSION:-5.2.1}"
moto_python="${KIDJAMO_TEST_MOTO_PYTHON:-python3}"
if ! "$moto_python" -c 'import moto.server, flask' >/dev/null 2>&1; then
  echo "== S3: installing moto[server] $MOTO_VERSION from PyPI (once)"
  "$moto_python" -m pip install --quiet --user "moto[server]==$MOTO_VERSION" >&2 ||
    "$moto_python" -m pip install --quiet "moto[server]==$MOTO_VERSION" >&2
fi
if ! "$moto_python" -c 'import moto.server' >/dev/null 2>&1; then
  echo "error: $moto_python cannot import moto.server; install it with: $moto_python -m pip install 'moto[server]==$MOTO_VERSION'" >&2
  exit 2
fi
export KIDJAMO_TEST_MOTO_PYTHON="$moto_python"
echo "== S3: moto $("$moto_python" -c 'import moto; print(moto.__version__)') server mode (tests start their own servers)"
