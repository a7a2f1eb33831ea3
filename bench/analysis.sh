#!/usr/bin/env bash
# The labelled evaluation of `cis triage` and `cis rca` (issue 23): 72 alerts from six
# sources (application logs, an EDR export, GuardDuty, Security Hub, CloudWatch alarms,
# the lab's records) and 11 log/rule cases, each with the answer written down before the
# analysers ran (bench/analysis/*.py). Prints, per analyser:
#   - category accuracy over the alerts;
#   - precision and recall of "critical" (outage or active attack);
#   - Spearman's rank correlation, per batch, between the rank triage gave an alert and
#     its expected category's place in the written order (median and range over batches);
#   - root-cause accuracy: the rule blamed (or none) equals the expected one.
# Usage: bench/analysis.sh [cis analyser flags...]
#   bench/analysis.sh                                    the built-in analyser
#   bench/analysis.sh --analyser openai --url URL --model NAME   an OpenAI-compatible server
#   bench/analysis.sh --analyser sagemaker --endpoint NAME       a SageMaker endpoint
#   bench/analysis.sh --fake-openai    the OpenAI path against a stand-in server that echoes
#                                      the rules engine's evidence: plumbing only, no model
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p cis
if [ "${1:-}" = --fake-openai ]; then
  port_file=$(mktemp)
  python3 bench/analysis/fake_openai.py "$port_file" &
  fake=$!
  trap 'kill $fake 2>/dev/null; rm -f "$port_file"' EXIT
  until [ -s "$port_file" ]; do sleep 0.1; done
  set -- --analyser openai --url "http://127.0.0.1:$(cat "$port_file")" --model fake
fi
python3 bench/analysis/evaluate.py "$PWD/target/release/cis" "$PWD/target/bench/analysis" "$@"
