#!/usr/bin/env bash
# The paper's S7 at SmolLM2's real vocabulary: the sampled-token objective against top-k (k = 1, 4, 16) on the
# starter-lab pair (make starter-lab), where a starter slot holds 16 real options, 40 steps each, the overlap
# measured at k = 16 in every arm (objective.diagnostics_k). The top-16 arm at seed 0 is S4's main run
# (bench/paper/s4.sh); this script runs the other arms named in RUNS and summarises every arm found under
# runs/paper/ into a new JSON file in bench/results/ (paper_s7).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-"top1 sampled"}
declare -A ARGS=(
  [top1]="objective.kind=topk objective.k=1"
  [top4]="objective.kind=topk objective.k=4"
  [top16_seed1]="objective.kind=topk objective.k=16 run.seed=1"
  [sampled]="objective.kind=sampled_token"
  [sampled_seed1]="objective.kind=sampled_token run.seed=1"
)
make starter-lab
for name in $RUNS; do
  # shellcheck disable=SC2086
  HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $PY launch/opd_job.py --config configs/smollm2_starters.yaml \
    run.name="s7-$name" run.out_dir=runs/paper ${ARGS[$name]}
done
latest() { ls -d runs/paper/"$1"-* 2>/dev/null | tail -1 || true; }  # an arm not run is left out
mapfile -t DIRS < <(for name in s4-main s7-top1 s7-top4 s7-top16_seed1 s7-sampled s7-sampled_seed1; do latest "$name"; done | grep .)
(cd bench && ../$PY summarize_runs.py "${DIRS[@]/#/../}" --json results/paper_s7.json)
