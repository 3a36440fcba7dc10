#!/usr/bin/env bash
# experiment=best on one lent GPU, in two phases inside one ~9-minute call (issue #37):
#   1. four teachers at once: v12's recipe (EmotionVGG 64-128-256-512, EMA) distilled from the shipped
#      emotion_vgg_v8_v9, seeds 1-4, E1 epochs;
#   2. two students at once (seeds 42, 43): the same recipe distilled from the ensemble of emotion_vgg_v8_v9 and
#      the four teachers, for as many epochs (≤ 60) as phase 1's measured pace leaves time for.
# Needs: the folder made by pack.py in .gpu/ (FER2013, the teacher, the Hydra wheels); writes to $OUT.
set -u
T0=$(date +%s)
E1=${E1:-40}
P1_END=${P1_END:-250}   # seconds after start by which phase 1 must end
P2_END=${P2_END:-540}   # ... and phase 2 (0: phase 1 alone, e.g. E1=40 P1_END=560 P2_END=0 for a 15-minute lease)
PY=${PY:-python3}  # a dry run here: PY=.venv/bin/python TRAINER=cpu EXTRA="trainer.limit_train_batches=3 …"
TRAINER=${TRAINER:-gpu}
read -r -a EXTRA <<< "${EXTRA:-}"
KEEP=${KEEP:-/tmp/keep}; mkdir -p $KEEP
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=3
export FER2013_ROOT=/tmp/fer2013 EMOTION_ROOT=/tmp/er
$PY experiments/best/gpu/unpack.py .gpu $FER2013_ROOT $KEEP/teacher_v8v9.safetensors || exit 1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc
  $PY -c "import torch, lightning, torchmetrics, hydra; print(torch.__version__, lightning.__version__, torchmetrics.__version__, hydra.__version__)"; } > $KEEP/env.txt 2>&1
cat $KEEP/env.txt
RUNS=$EMOTION_ROOT/logs/train/runs
COMMON=(experiment=best trainer=$TRAINER callbacks=ema 'model.net.widths=[64,128,256,512]' "${EXTRA[@]}")
maxtime() { local s=$(( $1 - ($(date +%s) - T0) )); printf '00:00:%02d:%02d' $((s / 60)) $((s % 60)); }

echo "phase 1 at $(( $(date +%s) - T0 )) s"
for s in 1 2 3 4; do
  $PY -m emotion.train "${COMMON[@]}" model.distill.teacher=$KEEP/teacher_v8v9.safetensors \
    trainer.max_epochs=$E1 seed=$s run_name=gpu-teacher-s$s "+trainer.max_time=$(maxtime $((P1_END - 15)))" \
    > $KEEP/gpu-teacher-s$s.out 2>&1 &
done
wait
echo "phase 1 done at $(( $(date +%s) - T0 )) s"
TEACHERS=()
for s in 1 2 3 4; do
  b=$(ls $RUNS/gpu-teacher-s$s/checkpoints/epoch*.ckpt 2>/dev/null | head -1)
  [ -n "$b" ] && TEACHERS+=("$b") && echo "teacher s$s: $b"
  tail -3 $KEEP/gpu-teacher-s$s.out
done
[ ${#TEACHERS[@]} -gt 0 ] || exit 1
if [ "$P2_END" -eq 0 ]; then  # phase 1 alone: bring the teachers back in float16 (4 × 11.8 MB fit one call's 64 MB)
  for s in 1 2 3 4; do
    b=$(ls $RUNS/gpu-teacher-s$s/checkpoints/epoch*.ckpt 2>/dev/null | head -1)
    [ -n "$b" ] && $PY -m emotion.export ckpt_path=$b format=safetensors out=$KEEP/teacher-s$s.safetensors > /dev/null 2>&1 &&
      $PY -c "import sys, torch; sys.path.insert(0, 'experiments/best/gpu'); import pack; from pathlib import Path
pack.cast_copy(Path('$KEEP/teacher-s$s.safetensors'), Path('$OUT/teacher-s$s.fp16.safetensors'), torch.float16)"
  done
  tar czf $OUT/logs.tgz -C $EMOTION_ROOT/logs --exclude='*.ckpt' --exclude='*tfevents*' train -C $KEEP env.txt $(cd $KEEP && ls *.out)
  ls -la $OUT; echo "end at $(( $(date +%s) - T0 )) s"; exit 0
fi
list=$(IFS=,; echo "${TEACHERS[*]}")
$PY -m emotion.export "ckpt_path=[$KEEP/teacher_v8v9.safetensors,$list]" format=safetensors out=$KEEP/ens.safetensors > $KEEP/export.out 2>&1 || { cat $KEEP/export.out; exit 1; }
E2=$($PY - "$RUNS" "$(( P2_END - ($(date +%s) - T0) - 30 ))" <<'PY'
import json, sys, pathlib
paces = []
for h in pathlib.Path(sys.argv[1]).glob("gpu-teacher-s*/history.json"):
    rows = json.loads(h.read_text())
    if len(rows) >= 2:
        paces.append((rows[-1]["elapsed_s"] - rows[0]["elapsed_s"]) / (len(rows) - 1))
pace = 1.6 * max(paces)  # a six-network teacher instead of two
print(max(10, min(60, int(int(sys.argv[2]) / pace))))
PY
)
echo "phase 2 at $(( $(date +%s) - T0 )) s: $E2 epochs"
for s in 42 43; do
  $PY -m emotion.train "${COMMON[@]}" model.distill.teacher=$KEEP/ens.safetensors \
    trainer.max_epochs=$E2 seed=$s run_name=gpu-student-s$s "+trainer.max_time=$(maxtime $((P2_END - 15)))" \
    > $KEEP/gpu-student-s$s.out 2>&1 &
done
wait
echo "phase 2 done at $(( $(date +%s) - T0 )) s"
for s in 42 43; do
  tail -3 $KEEP/gpu-student-s$s.out
  b=$(ls $RUNS/gpu-student-s$s/checkpoints/epoch*.ckpt 2>/dev/null | head -1)
  [ -n "$b" ] || continue
  $PY -m emotion.export ckpt_path=$b format=safetensors out=$KEEP/student-s$s.safetensors > /dev/null 2>&1 &&
    split -b 15000000 -d $KEEP/student-s$s.safetensors $OUT/student-s$s.safetensors.part
done
for s in 1 2 3 4; do  # the teachers, for a second call to fetch
  b=$(ls $RUNS/gpu-teacher-s$s/checkpoints/epoch*.ckpt 2>/dev/null | head -1)
  [ -n "$b" ] && $PY -m emotion.export ckpt_path=$b format=safetensors out=$KEEP/teacher-s$s.safetensors > /dev/null 2>&1 &
done
wait
tar czf $OUT/logs.tgz -C $EMOTION_ROOT/logs --exclude='*.ckpt' --exclude='*tfevents*' train -C $KEEP env.txt $(cd $KEEP && ls *.out)
ls -la $KEEP $OUT
echo "end at $(( $(date +%s) - T0 )) s"
