#!/usr/bin/env bash
# cis detect end to end (parse, window features, scoring every window) on a generated 1 GB
# flow-log file, side by side with the fastest widely used readers parsing the same file
# alone: pandas read_csv with engine="pyarrow" and polars read_csv (both multi-threaded),
# and pandas' C engine for reference. RUNS runs of each (default 5), interleaved; prints
# each tool's median and range of seconds and peak memory, and cis's time as a ratio of
# the faster reader's. The peers' seconds are their read call alone; cis's are its whole
# process. Installs pandas, pyarrow and polars into .venv/bench; needs ../shared/data.
# Usage: bench/parse.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${1:-5}
shared=${CIS_SHARED_DATA:-$root/../shared/data}
work=$root/target/bench
venv=$root/.venv/bench
mkdir -p "$work"
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/pip" install --quiet 'scikit-learn>=1.5' 'pandas>=2' 'numpy>=1.26' 'pyarrow>=15' 'polars>=1'
py=$venv/bin/python
if [ -z "${CIS_BIN:-}" ]; then cargo build --release --quiet -p cis; fi
cis=${CIS_BIN:-$root/target/release/cis}
"$py" bench/prepare.py "$work" "$shared" >&2
"$cis" --state-dir "$work/state" train --baseline "$work/baseline.log" --out "$work/model.json" > /dev/null
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); file: $(stat -c %s "$work/flows-1gb.log") bytes"
: > "$work/parse-times"
for r in $(seq 1 "$runs"); do
  /usr/bin/time -f '%e %M' -o "$work/time" "$cis" --state-dir "$work/state" detect --model "$work/model.json" "$work/flows-1gb.log" > /dev/null
  read -r s kb < "$work/time"; echo "cis-detect $s $kb" >> "$work/parse-times"
  for engine in pyarrow polars c; do
    out=$(/usr/bin/time -f '%e %M' -o "$work/time" "$py" bench/parse_peers.py "$engine" "$work/flows-1gb.log")
    read -r _ kb < "$work/time"
    echo "$engine $("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["seconds"])' "$out") $kb" >> "$work/parse-times"
  done
done
"$py" - "$work/parse-times" <<'PY'
import statistics, sys
by = {}
for line in open(sys.argv[1]):
    tool, s, kb = line.split()
    by.setdefault(tool, []).append((float(s), int(kb) / 1024))
names = {"cis-detect": "cis detect (end to end, whole process)", "pyarrow": "pandas read_csv engine=pyarrow (read call)",
         "polars": "polars read_csv (read call)", "c": "pandas read_csv engine=c (read call)"}
med = {t: statistics.median(s for s, _ in v) for t, v in by.items()}
print("| tool | runs | seconds, median (range) | peak MB, median |\n|---|---|---|---|")
for t, v in by.items():
    secs = [s for s, _ in v]
    print(f"| {names[t]} | {len(v)} | {med[t]:.2f} ({min(secs):.2f}-{max(secs):.2f}) | {statistics.median(m for _, m in v):.0f} |")
faster = min(("pyarrow", "polars"), key=lambda t: med[t])
print(f"\ncis detect end to end takes {med['cis-detect'] / med[faster]:.2f}x the time of the faster reader's parse alone ({faster}); the goal is 1.00x or less.")
PY
