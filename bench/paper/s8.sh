#!/usr/bin/env bash
# The paper's S8 (the long horizon) at SmolLM2's real vocabulary, evaluation only (docs/results.md, "The paper at a
# real vocabulary"): cut the student's greedy answer after a fraction d of its tokens, let the teacher continue, and
# compare with the student's own answer, on the same problems at every depth. `opd-ray probe` measures it; the
# report's depth_decay gives the advantage +- SE per depth, the share of cut prefixes that already hold a wrong line
# (opd_ray/data/line_checks.py), and the slope of advantage on depth +- SE.
#   starters: the starter-lab pair (make starter-lab) on its 256 held-out hard problems (4-5 terms)
#   sums:     the real-lab pair (make real-lab) on 256 of its OPD prompts (90% 4-5 terms; no training happens here)
# Each pair's probe report goes to a new file bench/results/paper_s8_<pair>.json. PAIRS="starters" runs one.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
PAIRS=${PAIRS:-"starters sums"}
declare -A CONFIG=([starters]=configs/smollm2_starters.yaml [sums]=configs/smollm2_cpu.yaml)
declare -A ARGS=([starters]="--eval-set hard" [sums]="model.dtype=float32")  # as measured (smollm2_cpu.yaml: native)
for pair in $PAIRS; do
  [ "$pair" = starters ] && make starter-lab
  [ "$pair" = sums ] && make real-lab
  probe_json=$(mktemp)
  # exit status 3-5 is a verdict (no_new_capability, pattern_mismatch, contract_violation), not a failure here
  # shellcheck disable=SC2086
  HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $PY -m opd_ray.run.cli probe --config "${CONFIG[$pair]}" \
    ${ARGS[$pair]} --n-prompts 256 --depths 0 0.125 0.25 0.5 0.75 --prefix-check sum_chain --threads 2 --json \
    >"$probe_json" || [ $? -ge 3 ]
  (cd bench && ../$PY -c "import json, sys; from evidence import write_new; \
write_new(sys.argv[2], {'pair': sys.argv[3], 'report': json.load(open(sys.argv[1]))})" \
    "$probe_json" "results/paper_s8_$pair.json" "$pair")
done
