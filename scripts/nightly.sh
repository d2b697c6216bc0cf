#!/usr/bin/env bash
# The nightly sequence as one local command: accuracy suite, perf suite, task-level accuracy through
# lm-evaluation-harness (needs the `eval` extra), then the regression report.
#   scripts/nightly.sh [--backend ttnn --mesh-shape TG]      (extra args go to both pytest runs)
# Environment: RESULTS_DIR (default results/nightly), BASELINE (default reports/baselines/<backend>.jsonl).
# Exit status: non-zero when a suite failed or the report found a regression.
set -uo pipefail
cd "$(dirname "$0")/.."

export DEEPSEEK_TT_RUN_ID="${DEEPSEEK_TT_RUN_ID:-nightly-$(date -u +%Y%m%dT%H%M%S)}"
results_dir="${RESULTS_DIR:-results/nightly}"
backend="${DEEPSEEK_TT_BACKEND:-emulator}"
baseline="${BASELINE:-reports/baselines/${backend}.jsonl}"
mkdir -p "$results_dir"

status=0
python -m pytest -m accuracy --results-dir "$results_dir" "$@" || status=$?
python -m pytest -m perf --benchmark-enable --benchmark-json "$results_dir/benchmark-$DEEPSEEK_TT_RUN_ID.json" \
    --results-dir "$results_dir" "$@" || status=$?
# lm-eval on the shipped task: the served TT-NN model vs the transformers reference (rows lm_eval_*)
python -m deepseek_tt.evaluation --results-dir "$results_dir" --run "$DEEPSEEK_TT_RUN_ID" || status=$?
python -m reports ingest --results-dir "$results_dir" --run "$DEEPSEEK_TT_RUN_ID" \
    --benchmark-json "$results_dir/benchmark-$DEEPSEEK_TT_RUN_ID.json" || status=$?
if [ -f "$baseline" ]; then
    python -m reports compare --results-dir "$results_dir" --run "$DEEPSEEK_TT_RUN_ID" --baseline "$baseline" \
        --markdown "$results_dir/summary.md" --html "$results_dir/report.html" || status=$?
else
    echo "no baseline at $baseline: promote this run with" \
         "python -m reports promote --results-dir $results_dir --run $DEEPSEEK_TT_RUN_ID --baseline $baseline"
fi
exit "$status"
