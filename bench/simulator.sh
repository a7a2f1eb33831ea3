#!/usr/bin/env bash
# The simulator's speed: virtual lab-hours per wall-second, for each workload profile's
# benign traffic and for attack runs. Benign: `cis sim sweep --hours H --runs 1` (the lab
# made, H benign hours, one exfil-https-bulk run), RUNS times (default 5); the rate is H
# over the wall time (the lab's making and the one run counted against it). Attacks: the
# lab-hours of the runs `bench/frontier.sh` reports over its wall time. Prints each
# profile's median and range.
# Usage: bench/simulator.sh [RUNS] [HOURS (240)]
# CIS_BIN=PATH measures that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}; hours=${2:-240}
if [ -z "${CIS_BIN:-}" ]; then cargo build --release --quiet -p cis; fi
cis=${CIS_BIN:-$PWD/target/release/cis}
work=$PWD/target/bench/simulator
rm -rf "$work"; mkdir -p "$work"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for p in idle-server web-server batch-job; do
  for r in $(seq 1 "$runs"); do
    /usr/bin/time -f '%e %M' -o "$work/time-$p-$r" "$cis" --state-dir "$work/state" --seed "$r" sim sweep exfil-https-bulk \
      --workload "$p" --runs 1 --hours "$hours" --windows 60 --target-fpr 1e-5 --detectors model > /dev/null 2>> "$work/stderr"
  done
done
python3 - "$work" "$runs" "$hours" <<'PY'
import statistics, sys
work, runs, hours = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for p in ["idle-server", "web-server", "batch-job"]:
    rates, peaks = [], []
    for r in range(1, runs + 1):
        wall, kb = open(f"{work}/time-{p}-{r}").read().split()
        rates.append(hours / float(wall)); peaks.append(int(kb) / 1024)
    print(f"{p}: {statistics.median(rates):.1f} virtual lab-hours per wall-second (range {min(rates):.1f}-{max(rates):.1f}, seeds 1-{runs}), peak {statistics.median(peaks):.0f} MiB")
PY
