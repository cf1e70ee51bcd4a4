#!/usr/bin/env bash
# Set up LoRA Studio in ./.venv from nothing but Python 3.11+ (and, on Linux, Debian's
# apt for Qt's window libraries when run as root).
#
#   bash tools/bootstrap.sh          # the app
#   bash tools/bootstrap.sh --test   # the app plus the test tools
#
# torch is installed first and on its own: left to the resolver, a bare "torch" pulls
# whatever build the index offers. TORCH_SPEC/TORCHVISION_SPEC override the pins, e.g.
#   TORCH_INDEX=https://download.pytorch.org/whl/cu128 bash tools/bootstrap.sh
# for a CUDA build on a GPU workstation (see README). Everything else installs at the exact
# versions the tests passed with, from the lock constraints.txt (refreshed by tools/lock.sh);
# LOCK= (empty) installs the newest releases pyproject.toml allows instead.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1}
TORCHVISION_SPEC=${TORCHVISION_SPEC:-torchvision==0.29.1}
LOCK=${LOCK-constraints.txt}

# Qt's xcb window plugin and the offscreen plugin need these on Debian/Ubuntu.
QT_DEBS="libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libegl1 libgl1 libfontconfig1 libdbus-1-3 libglib2.0-0"
if [ "$(uname -s)" = Linux ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  missing=""
  for deb in $QT_DEBS; do dpkg -s "$deb" >/dev/null 2>&1 || missing="$missing $deb"; done
  if [ -n "$missing" ]; then
    echo "Installing Qt system libraries:$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
if [ -n "$LOCK" ] && ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "The tested versions in $LOCK need Python 3.11 or newer; $VENV has $("$VENV/bin/python" -V)." >&2
  echo "Run with PYTHON=python3.11 (remove $VENV first), or LOCK= for untested newest versions." >&2
  exit 1
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
if [ -n "${TORCH_INDEX:-}" ]; then
  "$VENV/bin/python" -m pip install -q --index-url "$TORCH_INDEX" "$TORCH_SPEC" "$TORCHVISION_SPEC"
else
  "$VENV/bin/python" -m pip install -q "$TORCH_SPEC" "$TORCHVISION_SPEC"
fi
"$VENV/bin/python" -m pip install -q ${LOCK:+-c "$LOCK"} -e ".$extras"
echo "LoRA Studio is set up in $VENV ($("$VENV/bin/python" -c 'import lorastudio; print(lorastudio.__version__)'))."
