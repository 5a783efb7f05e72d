#!/usr/bin/env bash
# The runs behind docs/multi-teacher.md, on the two-teacher lab (`make lab-mopd` builds it): the same student and
# seed, four ways of using the two specialists. Each writes runs/mopd/mopd-<name>-*/; the table and per-domain gap
# recoveries (with standard errors) go to bench/results/lab_mopd.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STEPS=${STEPS:-400}
RUNS=${RUNS:-"routing sum_only digits_only ensemble"}
declare -A ARGS=(
  [routing]=""                                                      # each row scored by its own specialist
  [sum_only]="data.teacher_key='' mopd.default_teacher=sum"          # every row scored by the sum teacher
  [digits_only]="data.teacher_key='' mopd.default_teacher=digits"    # every row scored by the digits teacher
  [ensemble]="mopd.mode=ensemble"                                   # every row scored by both, signals averaged
)
for name in $RUNS; do
  # shellcheck disable=SC2086
  HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $PY launch/opd_job.py --config configs/lab_mopd.yaml \
    run.name="mopd-$name" run.out_dir=runs/mopd run.steps="$STEPS" ${ARGS[$name]}
done
latest() { ls -d runs/mopd/mopd-"$1"-* | tail -1; }
mapfile -t DIRS < <(for name in $RUNS; do latest "$name"; done)
(cd bench && ../$PY lab_mopd_summary.py "${DIRS[@]/#/../}" --json results/lab_mopd.json)
