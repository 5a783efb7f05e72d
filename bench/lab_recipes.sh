#!/usr/bin/env bash
# The lab runs behind docs/recipes.md: OPD with each lab teacher, the two rescues, and reverse distillation.
# Every arm: configs/lab_cpu.yaml with the recipe budget (100 steps, lr 3e-4, 20 warm-up steps), seed 0.
# Each writes runs/recipes/rc_<arm>-*/ (metrics.jsonl, summary.json); bench/summarize_runs.py tabulates them.
#   RUNS="good samedata" bash bench/lab_recipes.sh      # a subset
#   SEED=1 RUNS="good" bash bench/lab_recipes.sh         # another seed: runs/recipes/rc_<arm>_seed1-*/
set -euo pipefail
set -f  # the overrides hold [ ] and must not glob
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LAB=opd_ray/lab/artifacts
RUNS=${RUNS:-"good samedata incompat_plain incompat_coldstart tpl_foreign reverse self content_teacher content_mix
  heldout_samedata_good heldout_samedata_incompat coldstart_hot coldstart_hot_verified"}  # ~45 min in all
SEED=${SEED:-0}
SUFFIX=$([[ $SEED == 0 ]] || echo "_seed$SEED")
BUDGET="run.steps=100 learner.lr=3e-4 learner.warmup_steps=20 run.seed=$SEED"
declare -A ARGS=(
  [good]="model.teacher=$LAB/teacher"
  [samedata]="model.teacher=$LAB/teacher_samedata"
  [incompat_plain]="model.teacher=$LAB/teacher_incompatible"
  [incompat_coldstart]="model.teacher=$LAB/teacher_incompatible stages=[cold_start,opd]"
  [tpl_foreign]="model.teacher=$LAB/teacher data.prompt_template='#{q}'"
  # the paper's reverse distillation (§3.3): the capable model as the student, a teacher without its capability
  [reverse]="model.student=$LAB/teacher model.teacher=$LAB/teacher_samedata"
  # the student as its own teacher: no new capability at all
  [self]="model.teacher=$LAB/student"
  # content alignment (§3.2 b): OPD prompts from the teacher's own SFT prompts, alone and half mixed with the task's
  [content_teacher]="model.teacher=$LAB/teacher data.teacher_prompts=lab:teacher"
  [content_mix]="model.teacher=$LAB/teacher data.teacher_prompts=lab:teacher data.other_share=0.5"
  # pairs held out from setting the probe's thresholds: the same-data model as a student of the two other teachers
  [heldout_samedata_good]="model.student=$LAB/teacher_samedata model.teacher=$LAB/teacher"
  [heldout_samedata_incompat]="model.student=$LAB/teacher_samedata model.teacher=$LAB/teacher_incompatible"
  # the cold start alone with the teacher sampled hot, so that the rejection filters have something to reject
  [coldstart_hot]="model.teacher=$LAB/teacher_incompatible stages=[cold_start] cold_start.temperature=2.0"
  [coldstart_hot_verified]="model.teacher=$LAB/teacher_incompatible stages=[cold_start] cold_start.temperature=2.0
                            cold_start.require_correct=true"
)
for name in $RUNS; do
  # shellcheck disable=SC2086
  HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $PY launch/opd_job.py --config configs/lab_cpu.yaml \
    run.name="rc_$name$SUFFIX" run.out_dir=runs/recipes $BUDGET ${ARGS[$name]}
done
set +f
# the table covers every arm that has a finished run (the latest of each), not only this invocation's
latest() { ls -d runs/recipes/rc_"$1"-* 2>/dev/null | while read -r d; do [[ -f $d/summary.json ]] && echo "$d"; done | tail -1; }
ALL="good samedata incompat_plain incompat_coldstart tpl_foreign reverse content_teacher content_mix
     heldout_samedata_good heldout_samedata_incompat self"
mapfile -t DIRS < <(for name in $ALL; do latest "$name"; done | grep .)
$PY bench/summarize_runs.py "${DIRS[@]}" --json bench/results/lab_recipes.json
