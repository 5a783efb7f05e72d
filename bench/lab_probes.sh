#!/usr/bin/env bash
# The probe on every lab pair of docs/recipes.md -> docs/probe/<pair>.json (128 prompts, depths 0/25/50/75%).
# The cold-started pair needs a finished `bench/lab_recipes.sh` incompat_coldstart run (its SFT'd student).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LAB=opd_ray/lab/artifacts
COLD=$(ls -d runs/recipes/rc_incompat_coldstart-*/cold_start/hf 2>/dev/null | tail -1 || true)
set -f  # the overrides below must not glob
declare -A PAIRS=(
  [teacher]="model.teacher=$LAB/teacher"
  [teacher_samedata]="model.teacher=$LAB/teacher_samedata"
  [teacher_incompatible]="model.teacher=$LAB/teacher_incompatible"
  [teacher_foreign_template]="model.teacher=$LAB/teacher data.prompt_template='#{q}'"
  [teacher_content_aligned]="model.teacher=$LAB/teacher data.teacher_prompts=lab:teacher"
  [student_as_its_own_teacher]="model.teacher=$LAB/student"
  [reverse_teacher_taught_by_samedata]="model.student=$LAB/teacher model.teacher=$LAB/teacher_samedata"
  [heldout_samedata_taught_by_teacher]="model.student=$LAB/teacher_samedata model.teacher=$LAB/teacher"
  [heldout_samedata_taught_by_incompatible]="model.student=$LAB/teacher_samedata model.teacher=$LAB/teacher_incompatible"
)
[[ -n $COLD ]] && PAIRS[coldstart_student_vs_teacher_incompatible]="model.student=$COLD model.teacher=$LAB/teacher_incompatible"
mkdir -p docs/probe
for name in ${ONLY:-"${!PAIRS[@]}"}; do
  # shellcheck disable=SC2086
  HF_HUB_OFFLINE=1 $PY -m opd_ray.run.cli probe --config configs/lab_cpu.yaml ${PAIRS[$name]} --json > "docs/probe/$name.json"
  $PY -c "import json,sys; r=json.load(open(sys.argv[1])); print(f'{sys.argv[2]:45s} {r[\"verdict\"]}')" \
    "docs/probe/$name.json" "$name"
done
