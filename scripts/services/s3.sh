# Sourced by scripts/test.sh: makes the S3-protocol test server available. The tests start
# their own servers (moto's server mode, loopback, a free port each, objects in memory), so
# this only makes sure an interpreter with moto exists and exports KIDJAMO_TEST_MOTO_PYTHON.
# A python3 that already has moto is used as it is; otherwise moto comes from PyPI into a
# virtual environment of its own, named after its version (once, well under a minute), so
# neither the system's nor the user's Python packages are touched.

MOTO_VERSION="${KIDJAMO_MOTO_VERSION:-5.2.1}"
moto_python="${KIDJAMO_TEST_MOTO_PYTHON:-python3}"
if ! "$moto_python" -c 'import moto.server, flask' >/dev/null 2>&1; then
  moto_venv="${XDG_CACHE_HOME:-$HOME/.cache}/kidjamo/tools/moto-$MOTO_VERSION"
  if ! "$moto_venv/bin/python" -c 'import moto.server, flask' >/dev/null 2>&1; then
    echo "== S3: installing moto[server] $MOTO_VERSION from PyPI into $moto_venv (once)"
    python3 -m venv "$moto_venv" >&2
    "$moto_venv/bin/python" -m pip install --quiet "moto[server]==$MOTO_VERSION" >&2
  fi
  moto_python="$moto_venv/bin/python"
fi
if ! "$moto_python" -c 'import moto.server' >/dev/null 2>&1; then
  echo "error: $moto_python cannot import moto.server; install it with: python3 -m pip install 'moto[server]==$MOTO_VERSION'" >&2
  exit 2
fi
export KIDJAMO_TEST_MOTO_PYTHON="$moto_python"
echo "== S3: moto $("$moto_python" -c 'import moto; print(moto.__version__)') server mode (tests start their own servers)"
