#!/usr/bin/env bash
# Refresh constraints.txt: the exact versions of every dependency (the test tools included)
# that the suite passed with, for Linux and Windows alike (one universal lock, by uv).
#
#   bash tools/lock.sh                    # re-resolve pyproject.toml, keeping every current pin that still fits
#   bash tools/lock.sh --upgrade          # the newest releases pyproject.toml allows (then run the suite!)
#   bash tools/lock.sh --upgrade-package diffusers   # one package (any other uv pip compile option passes through)
#   bash tools/lock.sh --from-venv .venv  # pin what is installed in a venv the suite just passed in
#
# tools/bootstrap.sh, .ci/run and packaging/build.py install with `-c constraints.txt`;
# pyproject.toml keeps its ranges for people who embed the package. torch and torchvision are
# excluded from the resolution (so are their CUDA libraries, which only they pull in): they stay
# chosen by TORCH_INDEX/TORCH_SPEC, because the right build depends on the machine's GPU.
#
# uv comes from $UV, else from PATH, else it is installed into a throwaway venv for this run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
UV_VERSION=${UV_VERSION:-0.13.9}
#: The oldest Python the locked set supports (diffusers 0.42 needs 3.11).
LOCK_PYTHON=${LOCK_PYTHON:-3.11}
LOCK=constraints.txt

from_venv=""
uv_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --from-venv) from_venv=${2:?--from-venv needs a venv folder}; shift 2 ;;
    *) uv_args+=("$1"); shift ;;
  esac
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
uv=${UV:-$(command -v uv || true)}
if [ -z "$uv" ]; then
  echo "Installing uv $UV_VERSION into a temporary venv"
  "$PYTHON" -m venv "$tmp/uv-venv"
  "$tmp/uv-venv/bin/python" -m pip install -q "uv==$UV_VERSION"
  uv="$tmp/uv-venv/bin/uv"
fi

printf 'torch\ntorchvision\n' >"$tmp/excludes.txt"
if [ -n "$from_venv" ]; then
  # The venv's versions become constraints (read from stdin, so no temporary path lands in
  # the lock's comments); packages it does not hold (Windows-only ones) resolve as usual.
  "$from_venv/bin/python" -m pip freeze --exclude-editable >"$tmp/tested.txt"
  uv_args+=(--constraints -)
else
  : >"$tmp/tested.txt"
fi

"$uv" pip compile pyproject.toml --extra test --universal --python-version "$LOCK_PYTHON" \
  --excludes "$tmp/excludes.txt" --annotation-style line --custom-compile-command "bash tools/lock.sh" \
  --quiet --output-file "$LOCK" ${uv_args[@]+"${uv_args[@]}"} <"$tmp/tested.txt"
echo "Wrote $LOCK. Run the tests with it (bash .ci/run) before committing."
