#!/usr/bin/env bash
# The lab runs behind docs/objectives.md: one OPD run per objective, same seed, budget and config otherwise.
# Each writes runs/objectives/obj-<name>-*/ (metrics.jsonl, summary.json); `opd-ray report` renders each.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-"topk4 sampled topk16 topk1"}
declare -A ARGS=(
  [topk4]="objective.kind=topk objective.k=4"
  [sampled]="objective.kind=sampled_token objective.k=4"
  [topk16]="objective.kind=topk objective.k=16"
  [topk1]="objective.kind=topk objective.k=1"
)
for name in $RUNS; do
  # shellcheck disable=SC2086
  HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $PY launch/opd_job.py --config configs/lab_cpu.yaml \
    run.name="obj-$name" run.out_dir=runs/objectives ${ARGS[$name]}
done
# the side-by-side table (docs/objectives.md) and a comparison figure in the first run's report
latest() { ls -d runs/objectives/obj-"$1"-* | tail -1; }
mapfile -t DIRS < <(for name in $RUNS; do latest "$name"; done)
$PY bench/summarize_runs.py "${DIRS[@]}" --json bench/results/lab_objectives.json
$PY -m opd_ray.run.cli report "${DIRS[0]}" --compare "${DIRS[@]:1}"
