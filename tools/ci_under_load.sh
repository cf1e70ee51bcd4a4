#!/usr/bin/env bash
# Run CI as a busy machine would: the repository's HEAD (committed work only) cloned into a
# temporary folder, every core kept busy by `yes > /dev/null` loops while it runs.
#
#   bash tools/ci_under_load.sh                               # bash .ci/run there: set up from scratch, whole suite
#   bash tools/ci_under_load.sh --loop 10 TESTID [TESTID...]  # those tests, 10 runs in a row
#   bash tools/ci_under_load.sh --loop 1 --python /path/to/venv/bin/python tests/test_config.py
#
# --loop sets up the clone with tools/bootstrap.sh --test first, unless --python names an
# existing environment (the clone's code is then imported through PYTHONPATH).
# --busy N starts N busy loops (default 2: both cores of the 2-core machines CI runs on); --keep keeps
# the clone. The busy loops end with the script, however it ends. Prints each run's result
# and wall time and a summary; the full output goes to a log file (its path is printed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

loops=0
python=""
busy=2
keep=0
tests=()
while [ $# -gt 0 ]; do
  case "$1" in
    --loop) loops=${2:?--loop needs a count}; shift 2 ;;
    --python) python=${2:?--python needs an interpreter}; shift 2 ;;
    --busy) busy=${2:?--busy needs a count}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) tests+=("$1"); shift ;;
  esac
done
if [ "$loops" -gt 0 ] && [ ${#tests[@]} -eq 0 ]; then
  echo "--loop needs the test ids to run" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ci_under_load.XXXXXX")
log="$work.log"
busy_pids=()
cleanup() {
  for pid in ${busy_pids[@]+"${busy_pids[@]}"}; do kill "$pid" 2>/dev/null || true; done
  if [ "$keep" = 1 ]; then echo "clone kept in $work/repo"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

head=$(git -C "$root" rev-parse HEAD)
git clone -q "$root" "$work/repo"
git -C "$work/repo" checkout -q "$head"
cd "$work/repo"
echo "commit $(git log -1 --format='%h %s' | cut -c1-100)"

for _ in $(seq "$busy"); do
  yes >/dev/null &
  busy_pids+=($!)
done
echo "load: $busy busy loop(s) (yes > /dev/null) on $(nproc 2>/dev/null || echo '?') core(s); log: $log"

# Runs one command, output to the log; prints its result and wall time; returns its status.
timed() {
  local label=$1 start end rc before
  shift
  before=$(wc -l <"$log" 2>/dev/null || echo 0)
  start=$(date +%s.%N)
  set +e
  { time "$@"; } >>"$log" 2>&1
  rc=$?
  set -e
  end=$(date +%s.%N)
  printf '%-8s %s  %s  (%s)\n' "$label" "$([ $rc = 0 ] && echo PASS || echo "FAIL rc=$rc")" \
    "$(awk -v s="$start" -v e="$end" 'BEGIN { t = e - s; printf "%d min %04.1f s", t / 60, t - 60 * int(t / 60) }')" \
    "$(tail -n +$((before + 1)) "$log" | grep -E '(passed|failed|error).* in [0-9.]+s' | tail -1 | tr -d '=' | sed 's/^ *//; s/ *$//')"
  return $rc
}

if [ "$loops" = 0 ]; then
  timed "ci" bash .ci/run
  exit
fi

if [ -z "$python" ]; then
  timed "setup" bash tools/bootstrap.sh --test
  python=.venv/bin/python
fi
export PYTHONPATH="$PWD" HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
green=0
for i in $(seq "$loops"); do
  echo "=== run $i of $loops" >>"$log"
  if timed "run $i" "$python" -m pytest -p no:cacheprovider -q "${tests[@]}"; then green=$((green + 1)); fi
done
echo "$green of $loops runs green"
[ "$green" = "$loops" ]
