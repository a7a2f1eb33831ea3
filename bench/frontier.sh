#!/usr/bin/env bash
# The evasion frontier's speed and stability: `cis sim frontier FAMILY --seeds 100
# --steps 10` for one detector, RUNS times (default 5), on this machine. Prints each run's
# wall time and peak memory, their median and range, and whether every run gave the same
# frontier (one set of seeds must give one answer, however the seeds share the cores).
# The issue's goal: 10 bisection steps over 100 seeds for one detector within 2 minutes.
# Usage: bench/frontier.sh [RUNS] [FAMILY (beacon)] [PROFILE (web-server)] [DETECTOR (model)]
# CIS_BIN=PATH measures that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}; family=${2:-beacon}; profile=${3:-web-server}; detector=${4:-model}
if [ -z "${CIS_BIN:-}" ]; then cargo build --release --quiet -p cis; fi
cis=${CIS_BIN:-$PWD/target/release/cis}
work=$PWD/target/bench/frontier
rm -rf "$work"; mkdir -p "$work"
echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for r in $(seq 1 "$runs"); do
  /usr/bin/time -f "%e %M" -o "$work/time-$r" "$cis" --state-dir "$work/state" --output json sim frontier "$family" \
    --seeds 100 --steps 10 --detectors "$detector" --workload "$profile" > "$work/frontier-$r.json"
done
python3 - "$work" "$runs" "$family" "$profile" "$detector" <<'PY'
import json, statistics, sys
work, runs, family, profile, detector = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
walls, peaks, answers = [], [], set()
for r in range(1, runs + 1):
    wall, peak = open(f"{work}/time-{r}").read().split()
    walls.append(float(wall)); peaks.append(int(peak) / 1024)
    f = json.load(open(f"{work}/frontier-{r}.json"))
    d = f["detectors"][0]
    answers.add(json.dumps([d["frontier"], d["interval"], [s["probes"] for s in d["seeds"]]]))
    print(f"run {r}: {float(wall):.1f} s, {int(peak) / 1024:.0f} MiB peak; frontier {d['frontier']} {f['knob']['unit']}, interval {d['interval']}, {d['runs']} attack runs, {d['observed_hours']:.0f} lab-hours observed")
print(f"\n{family} on {profile}, {detector}, 100 seeds x 10 steps: wall median {statistics.median(walls):.1f} s (range {min(walls):.1f}-{max(walls):.1f}), "
      f"{statistics.median(walls) / 120:.2f} of the 2-minute goal; peak memory median {statistics.median(peaks):.0f} MiB; "
      f"{'the same frontier every run' if len(answers) == 1 else f'{len(answers)} DIFFERENT answers: determinism is broken'}")
PY
