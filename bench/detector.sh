#!/usr/bin/env bash
# The detector's benchmark, side by side with its peers, in one run:
#   - isolation forest: cis vs scikit-learn IsolationForest(n_estimators=100,
#     max_samples=256), single-threaded and with two jobs: fit + score time, rows/s, peak
#     memory and ROC AUC, on 1,000,000 x 6 synthetic rows, ADBench http and smtp, LUFlow;
#   - flow-log parsing: cis detect vs pandas read_csv on a generated 1 GB flow-log file,
#     MB/s and peak memory.
# Usage: bench/detector.sh   (installs scikit-learn and pandas into .venv/bench; writes its
# generated inputs under target/bench; needs ../shared/data beside the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
shared=${CIS_SHARED_DATA:-$root/../shared/data}
work=$root/target/bench
venv=$root/.venv/bench
mkdir -p "$work"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'scikit-learn>=1.5' 'pandas>=2' 'numpy>=1.26'
fi
py=$venv/bin/python
cargo build --release --quiet
cis=$root/target/release/cis

echo "preparing inputs in $work ..." >&2
"$py" bench/prepare.py "$work" "$shared"

# Runs a command under /usr/bin/time; prints its stdout, leaves "seconds maxrss_kb" in $work/time.
timed() { /usr/bin/time -f '%e %M' -o "$work/time" "$@"; }
field() { "$py" -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, d))" "$1"; }

printf '\n## Isolation forest: fit + score (100 trees, 256 samples), same data, same machine\n\n'
printf '| data | rows | tool | fit+score s | rows/s | peak MB | ROC AUC | cis speed-up |\n|---|---|---|---|---|---|---|---|\n'
for spec in "synthetic:$work/synthetic.csv" "http:$shared/adbench/http.csv" "smtp:$shared/adbench/smtp.csv" "luflow:$work/luflow.csv"; do
  name=${spec%%:*}; file=${spec#*:}
  out=$(timed "$cis" detect --format csv --eval label --output json "$file")
  read -r _ cis_kb < "$work/time"
  cis_s=$(echo "$out" | field 'fit_s + score_s')
  rows=$(echo "$out" | field 'rows')
  cis_auc=$(echo "$out" | field 'evaluation["roc_auc"]')
  printf '| %s | %s | cis | %.3f | %.0f | %.0f | %.4f | |\n' "$name" "$rows" "$cis_s" "$(echo "$rows / $cis_s" | bc -l)" "$((cis_kb / 1024))" "$cis_auc"
  if [ "$name" = luflow ]; then
    # Flow counts and bytes are heavy-tailed: cis's flow features are log-scaled.
    out=$(timed "$cis" detect --format csv --eval label --log-scale --output json "$file")
    read -r _ log_kb < "$work/time"
    log_s=$(echo "$out" | field 'fit_s + score_s')
    printf '| %s | %s | cis --log-scale | %.3f | %.0f | %.0f | %.4f | |\n' "$name" "$rows" "$log_s" "$(echo "$rows / $log_s" | bc -l)" "$((log_kb / 1024))" "$(echo "$out" | field 'evaluation["roc_auc"]')"
  fi
  for jobs in 1 2; do
    out=$(timed "$py" bench/sklearn_iforest.py "$file" --jobs "$jobs")
    read -r _ sk_kb < "$work/time"
    sk_s=$(echo "$out" | field 'fit_s + score_s')
    sk_auc=$(echo "$out" | field 'roc_auc')
    printf '| %s | %s | scikit-learn n_jobs=%s | %.3f | %.0f | %.0f | %.4f | %.1fx |\n' "$name" "$rows" "$jobs" "$sk_s" "$(echo "$rows / $sk_s" | bc -l)" "$((sk_kb / 1024))" "$sk_auc" "$(echo "$sk_s / $cis_s" | bc -l)"
  done
done

printf '\n## Flow-log parsing: the same 1 GB file (ten days, default v2 format, in time order)\n\n'
size=$(stat -c %s "$work/flows-1gb.log")
mb() { echo "$size / 1048576 / $1" | bc -l; }
timed "$cis" flows "$work/flows-1gb.log" > "$work/flows.txt"
read -r flows_s flows_kb < "$work/time"
"$cis" --state-dir "$work/state" train --baseline "$work/baseline.log" --out "$work/model.json" > /dev/null
timed "$cis" --state-dir "$work/state" detect --model "$work/model.json" "$work/flows-1gb.log" > "$work/detect.txt"
read -r detect_s detect_kb < "$work/time"
out=$(timed "$py" bench/pandas_parse.py "$work/flows-1gb.log")
read -r _ pd_kb < "$work/time"
pd_s=$(echo "$out" | field 'seconds')
printf '| tool | what | seconds | MB/s | peak MB | cis MB/s over pandas |\n|---|---|---|---|---|---|\n'
printf '| pandas read_csv | parse into a DataFrame (the read_csv call) | %.2f | %.0f | %.0f | |\n' "$pd_s" "$(mb "$pd_s")" "$((pd_kb / 1024))"
printf '| cis flows | parse and summarise, streaming (whole process) | %.2f | %.0f | %.0f | %.1fx |\n' "$flows_s" "$(mb "$flows_s")" "$((flows_kb / 1024))" "$(echo "$pd_s / $flows_s" | bc -l)"
printf '| cis detect | parse, window features, score every window (whole process) | %.2f | %.0f | %.0f | %.1fx |\n' "$detect_s" "$(mb "$detect_s")" "$((detect_kb / 1024))" "$(echo "$pd_s / $detect_s" | bc -l)"
printf '\ncis flows: %s\ncis detect: %s\n' "$(cat "$work/flows.txt")" "$(tail -1 "$work/detect.txt")"
