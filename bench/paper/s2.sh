#!/usr/bin/env bash
# The paper's S2 at SmolLM2's real vocabulary (docs/results.md, "The paper at a real vocabulary"): the same student,
# SmolLM2 cut to 17 of 30 layers after SFT on 3-8 term sums (D), taught by
#   same:  the full SmolLM2 after the same SFT (a same-pipeline teacher: more capacity, the same data), and by
#   novel: that teacher after SFT on half D, half 9-12 terms (D'), which the student never saw.
# The paper: 15.6% gap recovery against 58.6%. Each arm is 40 top-16 steps (configs/familyc_{same,novel}.yaml);
# the probe's verdict on each pair comes first (bench/results/paper_s2_probe_<arm>.json), then the runs, summarised
# with their paired statistics on D and D' into a new file in bench/results/ (paper_s2). RUNS="same" runs one arm;
# PROBE=0 skips the probes; ARGS="run.steps=20 model.dtype=bfloat16" adds overrides to both arms' jobs (the
# measured cost of the whole thing, ~4 h on 2 cores, is in docs/results.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-"same novel"}
make family-c
for arm in $RUNS; do
  if [ "${PROBE:-1}" = 1 ]; then
    probe_json=$(mktemp)
    # exit status 3-5 is a verdict (no_new_capability, pattern_mismatch, contract_violation), not a failure here
    HF_HUB_OFFLINE=1 $PY -m opd_ray.run.cli probe --config "configs/familyc_$arm.yaml" --n-prompts 64 --threads 2 \
      --json >"$probe_json" || [ $? -ge 3 ]
    (cd bench && ../$PY -c "import json, sys; from evidence import write_new; \
write_new(sys.argv[2], json.load(open(sys.argv[1])))" "$probe_json" "results/paper_s2_probe_$arm.json")
  fi
  HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $PY launch/opd_job.py --config "configs/familyc_$arm.yaml" \
    run.name="s2-$arm" run.out_dir=runs/paper ${ARGS:-}
done
latest() { ls -d runs/paper/"$1"-* 2>/dev/null | tail -1 || true; }  # an arm not run is left out
mapfile -t DIRS < <(for arm in same novel; do latest "s2-$arm"; done | grep .)
(cd bench && ../$PY summarize_runs.py "${DIRS[@]/#/../}" --json results/paper_s2.json)
