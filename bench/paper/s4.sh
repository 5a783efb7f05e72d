#!/usr/bin/env bash
# The paper's S4 at SmolLM2's real vocabulary (docs/results.md, "The paper at a real vocabulary"):
#   main:      the starter-lab pair (make starter-lab), top-16 OPD, 40 steps: does the top-16 overlap ratio rise
#              where the teacher spreads its mass (teacher entropy >= 1 nat)?
#   control A: the real-lab sums pair with uniform weights on the student's top-16, 20 steps: is the flat ratio of
#              today's real-lab run (0.748 -> 0.755) the p-weighting on near-deterministic models, not a bug?
# Each run writes runs/paper/<name>-*/; the summary (windows of first/last 10% of steps with standard errors, and the
# paired before/after statistics) goes to bench/results/paper_s4.json, and the probe's verdict on the starter pair
# (before any OPD) to bench/results/paper_s4_probe.json. RUNS="main" runs one of them; PROBE=0 skips the probe.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-"main control_a"}
declare -A CONFIG=([main]=configs/smollm2_starters.yaml [control_a]=configs/smollm2_cpu.yaml)
declare -A ARGS=(
  [main]=""
  [control_a]="model.dtype=float32 run.steps=20 objective.weights=uniform objective.loss_clamp=5 eval.avg_k=0"
)
for name in $RUNS; do
  [ "$name" = main ] && make starter-lab
  [ "$name" = control_a ] && make real-lab
  # shellcheck disable=SC2086
  HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $PY launch/opd_job.py --config "${CONFIG[$name]}" \
    run.name="s4-$name" run.out_dir=runs/paper ${ARGS[$name]}
done
if [ "${PROBE:-1}" = 1 ]; then
  probe_json=$(mktemp)
  # exit status 3-5 is a verdict (no_new_capability, pattern_mismatch, contract_violation), not a failure here
  HF_HUB_OFFLINE=1 $PY -m opd_ray.run.cli probe --config configs/smollm2_starters.yaml --n-prompts 64 --json \
    >"$probe_json" || [ $? -ge 3 ]
  (cd bench && ../$PY -c "import json, sys; from evidence import write_new; \
write_new('results/paper_s4_probe.json', json.load(open(sys.argv[1])))" "$probe_json")
fi
latest() { ls -d runs/paper/s4-"$1"-* | tail -1; }
mapfile -t DIRS < <(for name in $RUNS; do latest "$name"; done)
(cd bench && ../$PY summarize_runs.py "${DIRS[@]/#/../}" --json results/paper_s4.json)
