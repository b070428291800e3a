#!/usr/bin/env bash
# Renders an audit report's HTML page with headless Chromium and saves a PNG, to look at the
# charts the way a browser draws them (offline: the page fetches nothing).
# Usage: scripts/screenshot-audit.sh report.html [out.png]
# Needs Debian's chromium (apt-get install chromium); not part of the test command.
set -euo pipefail
html="$(realpath "$1")"
out="$(realpath -m "${2:-${1%.html}.png}")"
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [ -z "$browser" ]; then
  echo "no Chromium found: apt-get install chromium" >&2
  exit 2
fi
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,2200 \
  --screenshot="$out" "file://$html" 2>/dev/null
echo "$out"
