#!/usr/bin/env bash
# experiment=best on one lent GPU, in two phases inside one ~9-minute call (issue #37):
#   1. four teachers at once: v12's recipe (EmotionVGG 64-128-256-512, EMA) distilled from the shipped
#      emotion_vgg_v8_v9, seeds 1-4, E1 epochs;
#   2. two students at once (seeds 42, 43): the same recipe distilled from the ensemble of emotion_vgg_v8_v9 and
#      the four teachers, for as many epochs (≤ 60) as phase 1's measured pace leaves time for.
# FOLDS=1: the four teachers are fold models instead (teacher s<i> never sees .gpu/folds/fold<j>.json, j its place in
#   SEEDS1, and is trained alone unless TEACHER1 names a teacher: one that saw every face would leak the held-out
#   labels); phase 1 then also writes every training face's out-of-fold prediction and cleanlab's label issues
#   (experiments/tools/label_issues.py) to $OUT/label_issues.tgz.
# Needs: the folder made by prepare.sh (pack.py) in .gpu/ (FER2013, the teacher, the Hydra wheels); writes to $OUT.
set -u
T0=$(date +%s)
E1=${E1:-40}             # the teachers' epochs (the students': E2, or as many as phase 1's pace leaves time for)
SEEDS1=${SEEDS1:-1 2 3 4}  # the teachers' seeds
SEEDS2=${SEEDS2:-42 43}   # the students'
P1_END=${P1_END:-250}   # seconds after start by which phase 1 must end
P2_END=${P2_END:-540}   # ... and phase 2 (0: phase 1 alone, e.g. E1=40 P1_END=560 P2_END=0 for a 15-minute lease)
FOLDS=${FOLDS:-0}
PY=${PY:-python3}  # a dry run here: PY=.venv/bin/python TRAINER=cpu EXTRA="trainer.limit_train_batches=3 …"
TRAINER=${TRAINER:-gpu}
read -r -a EXTRA <<< "${EXTRA:-}"
KEEP=${KEEP:-/tmp/keep}; mkdir -p $KEEP
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=3
export FER2013_ROOT=/tmp/fer2013 EMOTION_ROOT=/tmp/er
$PY experiments/best/gpu/unpack.py .gpu $FER2013_ROOT $KEEP/teacher_v8v9.safetensors || exit 1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc
  $PY -c "import torch, lightning, torchmetrics, hydra; print(torch.__version__, lightning.__version__, torchmetrics.__version__, hydra.__version__)"; } > $KEEP/env.txt 2>&1
cat $KEEP/env.txt
RUNS=$EMOTION_ROOT/logs/train/runs
COMMON=(experiment=best trainer=$TRAINER callbacks=ema 'model.net.widths=[64,128,256,512]' "${EXTRA[@]}")
maxtime() { local s=$(( $1 - ($(date +%s) - T0) )); printf '00:00:%02d:%02d' $((s / 60)) $((s % 60)); }

best() { ls $RUNS/$1/checkpoints/epoch*.ckpt 2>/dev/null | head -1; }  # the run's best checkpoint
export_best() { local b; b=$(best $1) && [ -n "$b" ] && $PY -m emotion.export ckpt_path=$b format=safetensors out=$2 > /dev/null 2>&1; }
save_logs() { tar czf $OUT/logs.tgz -C $EMOTION_ROOT/logs --exclude='*.ckpt' --exclude='*tfevents*' train -C $KEEP env.txt $(cd $KEEP && ls *.out); }
launch() {  # launch ROLE TEACHER EPOCHS END SEED...: one training per seed, all at once, ending by END s
  local role=$1 teacher=$2 epochs=$3 end=$4 j=0; shift 4
  for s in "$@"; do
    local fold=()
    [ "$role" = teacher ] && [ "$FOLDS" = 1 ] && fold=("data.exclude=$PWD/.gpu/folds/fold$j.json")
    $PY -m emotion.train "${COMMON[@]}" model.distill.teacher=$teacher trainer.max_epochs=$epochs seed=$s \
      run_name=gpu-$role-s$s "+trainer.max_time=$(maxtime $((end - 15)))" "${fold[@]}" > $KEEP/gpu-$role-s$s.out 2>&1 &
    j=$((j + 1))
  done
  wait
  for s in "$@"; do tail -3 $KEEP/gpu-$role-s$s.out; done
}

TEACHER1=${TEACHER1:-$([ "$FOLDS" = 1 ] && echo null || echo $KEEP/teacher_v8v9.safetensors)}
echo "phase 1 at $(( $(date +%s) - T0 )) s (teacher: $TEACHER1, folds: $FOLDS)"
launch teacher $TEACHER1 $E1 $P1_END $SEEDS1
echo "phase 1 done at $(( $(date +%s) - T0 )) s"
TEACHERS=()
for s in $SEEDS1; do
  b=$(best gpu-teacher-s$s)
  [ -n "$b" ] && TEACHERS+=("$b") && echo "teacher s$s: $b"
done
[ ${#TEACHERS[@]} -gt 0 ] || exit 1
if [ "$FOLDS" = 1 ] && [ ${#TEACHERS[@]} -eq $(ls .gpu/folds/fold*.json | wc -l) ]; then  # one model per fold, in order
  $PY experiments/tools/label_issues.py find --data $FER2013_ROOT --folds .gpu/folds "${TEACHERS[@]}" \
    > $KEEP/label_issues.out 2>&1 && tar czf $OUT/label_issues.tgz -C .gpu/folds label_issues.json out_of_fold.npz
  cat $KEEP/label_issues.out
fi
if [ $(( P2_END - ($(date +%s) - T0) )) -lt 90 ]; then  # phase 1 alone (P2_END=0, or no time left for phase 2):
  for s in $SEEDS1; do  # the teachers back in float16 (4 × 11.8 MB fit one call's 64 MB), all at once
    { export_best gpu-teacher-s$s $KEEP/teacher-s$s.safetensors &&
      $PY -c "import sys, torch; sys.path.insert(0, 'experiments/best/gpu'); import pack; from pathlib import Path
pack.cast_copy(Path('$KEEP/teacher-s$s.safetensors'), Path('$OUT/teacher-s$s.fp16.safetensors'), torch.float16)"; } &
  done
  wait
  save_logs; ls -la $OUT; echo "end at $(( $(date +%s) - T0 )) s"; exit 0
fi
list=$(IFS=,; echo "${TEACHERS[*]}")
$PY -m emotion.export "ckpt_path=[$KEEP/teacher_v8v9.safetensors,$list]" format=safetensors out=$KEEP/ens.safetensors > $KEEP/export.out 2>&1 || { cat $KEEP/export.out; exit 1; }
[ -n "${E2:-}" ] || E2=$($PY - "$RUNS" "$(( P2_END - ($(date +%s) - T0) - 30 ))" <<'PY'
import json, sys, pathlib
paces = []
for h in pathlib.Path(sys.argv[1]).glob("gpu-teacher-s*/history.json"):
    rows = json.loads(h.read_text())
    if rows:
        paces.append(rows[-1]["elapsed_s"] / len(rows))  # the first epoch's start-up included: on the safe side
pace = 1.6 * max(paces)  # a six-network teacher instead of two
print(max(10, min(60, int(int(sys.argv[2]) / pace))))
PY
)
echo "phase 2 at $(( $(date +%s) - T0 )) s: $E2 epochs"
launch student $KEEP/ens.safetensors $E2 $P2_END $SEEDS2
echo "phase 2 done at $(( $(date +%s) - T0 )) s"
for s in $SEEDS2; do
  export_best gpu-student-s$s $KEEP/student-s$s.safetensors &&
    split -b 15000000 -d $KEEP/student-s$s.safetensors $OUT/student-s$s.safetensors.part
done
for s in $SEEDS1; do export_best gpu-teacher-s$s $KEEP/teacher-s$s.safetensors & done  # for a second call to fetch
wait
save_logs
ls -la $KEEP $OUT
echo "end at $(( $(date +%s) - T0 )) s"
