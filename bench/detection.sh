#!/usr/bin/env bash
# Detection quality on the simulator, over the CLI, for each workload profile:
#   - attacks: for each seed, `cis up --workload P --seed S`, `cis attack --all --at HH:MM`
#     (every scenario of the catalogue, one after another, the lab settling between runs,
#     the first at an hour of the day drawn from the seed so that the seeds cover the
#     whole day: 7*S mod 24 hours, 17*S mod 60 minutes), `cis report --output json`,
#     `cis down`;
#   - benign days: `cis sim sweep --hours 240` under three seeds, 30 lab-days of the
#     profile's own traffic with the lab's model, counting false alerts and isolations.
# Prints, per profile and scenario: runs, detected and isolated (on the attack's own
# windows), false alerts and isolations during the runs, p50/p95 detection latency and
# p50 of its distance from the floor (detection minus the moment the attack's first
# records reached the log group: nothing can act before), which part decided, and the
# UTC hours at which expected detections were missed. The
# figures are the simulator's, on its workload profiles: see README, "Detection quality".
# Usage: bench/detection.sh [SEEDS (default 20)] [PROFILES (default: idle-server web-server batch-job)]
# CIS_BIN=PATH measures that binary instead of building one (to compare two builds);
# CIS_BENCH_DIR=DIR works there instead of target/bench/detection (to run two at once).
# CIS_SCENARIO=ID runs that one scenario at each seed's hour instead of `attack --all`, and
# no benign days.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-20}
profiles=${2:-idle-server web-server batch-job}
if [ -z "${CIS_BIN:-}" ]; then cargo build --release --quiet -p cis; fi
cis=${CIS_BIN:-$PWD/target/release/cis}
work=${CIS_BENCH_DIR:-$PWD/target/bench/detection}
rm -rf "$work"; mkdir -p "$work"
for p in $profiles; do
  for s in $(seq 1 "$seeds"); do
    dir=$work/$p-$s
    "$cis" --state-dir "$dir" up --workload "$p" --seed "$s" > /dev/null 2>&1
    at=$(printf '%02d:%02d' $(( (s * 7) % 24 )) $(( (s * 17) % 60 )))
    "$cis" --state-dir "$dir" attack ${CIS_SCENARIO:---all} --seed "$s" --at "$at" > /dev/null 2>&1 || true
    "$cis" --state-dir "$dir" --output json report 2> /dev/null > "$work/$p-$s.json"
    "$cis" --state-dir "$dir" down > /dev/null 2>&1
  done
  for s in $([ -z "${CIS_SCENARIO:-}" ] && echo 1 2 3); do
    "$cis" --state-dir "$work/benign-$p-$s" --output json --seed "$s" sim sweep exfil-https-bulk --workload "$p" --runs 1 \
      --hours 240 --windows 60 --target-fpr 1e-5 --detectors model 2> /dev/null > "$work/benign-$p-$s.json"
  done
done
python3 - "$work" $profiles <<'PY'
import json, sys, glob, statistics as st
work, profiles = sys.argv[1], sys.argv[2:]
def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None
for p in profiles:
    rows = {}
    for f in sorted(glob.glob(f"{work}/{p}-[0-9]*.json")):
        for r in json.load(open(f)).get("runs", []):
            rows.setdefault(r["scenario"], []).append(r)
    days = alerts = isolations = 0
    for f in sorted(glob.glob(f"{work}/benign-{p}-*.json")):
        for st_ in json.load(open(f))["settings"]:
            days += 10; alerts += st_["false_alerts"]; isolations += st_["false_isolations"]
    print(f"\n## {p}\n\nbenign: {days} lab-days, {alerts} false alerts ({alerts / max(days, 1):.2f}/day), {isolations} false isolations ({isolations / max(days, 1):.3f}/day)\n")
    print("| scenario | expects | runs | detected | isolated | false alerts | false isolations | p50 s | p95 s | p50 over floor s | decided by | verdicts | missed at (UTC hour: runs) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for sc, rs in sorted(rows.items()):
        m = [r["metrics"] for r in rs]
        lat = [x["detection_latency_s"] for x in m if x.get("detection_latency_s") is not None]
        over = [(r["timeline"]["detected"] - r["timeline"]["records_delivered"]) / 1000 for r in rs
                if r["timeline"].get("detected") and r["timeline"].get("records_delivered")]
        by = {}
        for r in rs:
            if r.get("detector"):
                by[r["detector"]] = by.get(r["detector"], 0) + 1
        verdicts = {}
        for r in rs:
            verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
        missed = {}
        for r in rs:
            if r["expected_detected"] and not r["metrics"]["detected"] and r["timeline"].get("attack_start"):
                h = r["timeline"]["attack_start"] // 3_600_000 % 24
                missed[h] = missed.get(h, 0) + 1
        exp = "catch" if rs[0]["expected_detected"] else ("-" if rs[0]["visible_in_flow_logs"] else "invisible")
        f = lambda v: "-" if v is None else f"{v:.0f}"
        print(f"| {sc} | {exp} | {len(rs)} | {sum(x['detected'] for x in m)} | {sum(x['isolated'] for x in m)} | {sum(x.get('false_alerts', 0) for x in m)} | {sum(x.get('false_isolation', False) for x in m)} | {f(pct(lat, .5))} | {f(pct(lat, .95))} | {f(pct(over, .5))} | {', '.join(f'{k} {v}' for k, v in sorted(by.items()))} | {', '.join(f'{k} {v}' for k, v in sorted(verdicts.items()))} | {', '.join(f'{h:02d}: {n}' for h, n in sorted(missed.items())) or '-'} |")
PY
