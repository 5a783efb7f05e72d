#!/usr/bin/env bash
# The probe on an incompatible real teacher (docs/results.md, "The paper at a real vocabulary"): the real-lab sums
# teacher continued for 40 SFT steps to add right to left (`make real-lab-r2l`), against the real-lab student, which
# adds left to right. First the probe's verdict (a new file in bench/results/: paper_probe_r2l), then what OPD does
# with this pair: 20 top-16 steps of configs/smollm2_cpu.yaml (runs/paper/r2l-*, summarised into a new file there:
# paper_r2l). The compatible teacher is probed beside it (paper_probe_sums). PROBES=0 skips both probes.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
TEACHER=models/smollm2-sums-teacher-r2l
make real-lab-r2l
probe() {  # probe TEACHER RESULT_NAME: the verdict on (the real-lab student, TEACHER) into a new bench/results file
  local probe_json
  probe_json=$(mktemp)
  # exit status 3-5 is a verdict (no_new_capability, pattern_mismatch, contract_violation), not a failure here
  HF_HUB_OFFLINE=1 $PY -m opd_ray.run.cli probe --config configs/smollm2_cpu.yaml model.teacher="$1" model.dtype=float32 \
    --n-prompts 64 --threads 2 --json >"$probe_json" || [ $? -ge 3 ]
  (cd bench && ../$PY -c "import json, sys; from evidence import write_new; \
write_new(sys.argv[2], json.load(open(sys.argv[1])))" "$probe_json" "results/$2.json")
}
[ "${PROBES:-1}" = 1 ] && probe $TEACHER paper_probe_r2l
[ "${PROBES:-1}" = 1 ] && probe models/smollm2-sums-teacher paper_probe_sums  # the compatible teacher, for reference
HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $PY launch/opd_job.py --config configs/smollm2_cpu.yaml \
  model.teacher=$TEACHER model.dtype=float32 run.name=r2l run.out_dir=runs/paper run.steps=20 eval.avg_k=0
(cd bench && ../$PY summarize_runs.py "$(ls -d ../runs/paper/r2l-* | tail -1)" --json results/paper_r2l.json)
