#!/usr/bin/env bash
# The nightly sequence as one local command: accuracy suite, perf suite, task-level accuracy through
# lm-evaluation-harness (needs the `eval` extra), the regression report, then the bug catalogue (every
# catalogued bug must fail the CI accuracy selection; docs/BUG_CATALOGUE.md).
#   scripts/nightly.sh [--backend ttnn --mesh-shape TG]      (extra args go to every pytest run)
# Environment: RESULTS_DIR (default results/nightly), BASELINE (default reports/baselines/<backend>.jsonl),
# BUG_CATALOGUE_MESHES (default "N150 TG"; ignored when the args name a --mesh-shape), BUG_CATALOGUE_JOBS
# (bugs run in parallel, default 1), SKIP_BUG_CATALOGUE=1 to leave the catalogue out.
# Exit status: non-zero when a suite failed or the report found a regression.
set -uo pipefail
cd "$(dirname "$0")/.."

export DEEPSEEK_TT_RUN_ID="${DEEPSEEK_TT_RUN_ID:-nightly-$(date -u +%Y%m%dT%H%M%S)}"
results_dir="${RESULTS_DIR:-results/nightly}"
backend="${DEEPSEEK_TT_BACKEND:-emulator}"
baseline="${BASELINE:-reports/baselines/${backend}.jsonl}"
mkdir -p "$results_dir"

status=0
# --opt=VALUE: pytest takes a bare existing path argument for a test path (and seeks its rootdir there), so
# "--results-dir /abs/dir" outside the checkout would lose the suite's conftest and its options
python -m pytest -m accuracy --results-dir="$results_dir" "$@" || status=$?
python -m pytest -m perf --benchmark-enable --benchmark-json="$results_dir/benchmark-$DEEPSEEK_TT_RUN_ID.json" \
    --results-dir="$results_dir" "$@" || status=$?
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
if [ "${SKIP_BUG_CATALOGUE:-0}" != "1" ]; then
    pytest_args=()
    for arg in "$@"; do pytest_args+=("--pytest-arg=$arg"); done
    meshes="${BUG_CATALOGUE_MESHES:-N150 TG}"
    case " $* " in *" --mesh-shape"*) meshes="given" ;; esac
    for mesh in $meshes; do
        mesh_args=()
        [ "$mesh" != "given" ] && mesh_args=(--mesh-shape "$mesh")
        python -m deepseek_tt.accuracy.bug_catalogue "${mesh_args[@]}" --jobs "${BUG_CATALOGUE_JOBS:-1}" \
            --markdown "$results_dir/bug-catalogue-$mesh.md" --log-dir "$results_dir/bug-logs-$mesh" \
            "${pytest_args[@]}" || status=$?
    done
fi
exit "$status"
