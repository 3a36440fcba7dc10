#!/usr/bin/env bash
# Get this checkout ready for one call of run.sh on a lent GPU, whose working tree may hold 64 MiB (issue #37):
#   1. pack.py: FER2013 and the teacher into .gpu/ (git-ignored through .git/info/exclude), plus the Hydra and cleanlab
#      wheels the lent machine lacks (.gpu/whl) and four training folds (.gpu/folds, for run.sh's FOLDS=1);
#   2. the shipped weights (~98 MB, not needed there: the teacher travels in .gpu) out of git's index and listed in
#      .git/info/exclude for the call, so that they do not travel;
#   3. prints the size that will travel. Then call the device tool with carry [".gpu"] and the command, e.g.
#      `E1=34 P1_END=575 P2_END=0 bash experiments/best/gpu/run.sh 2>&1 | tee $OUT/run.log`.
# Afterwards, always: `bash experiments/best/gpu/prepare.sh --restore` (the weights back in the index and visible).
#
#   bash experiments/best/gpu/prepare.sh [--data ../shared/data/fer2013] [--teacher emotion_vgg_v8_v9]
set -euo pipefail
SELF=$(realpath "$0")
cd "$(git rev-parse --show-toplevel)"
EXCLUDE=.git/info/exclude
MARK="# prepare.sh: the shipped weights stay here during a GPU call"
WEIGHTS=(emotion/weights/*.safetensors emotion/weights/*.onnx)
PY=${PY:-.venv/bin/python}

if [ "${1:-}" = "--restore" ]; then
  git reset -q -- emotion/weights
  [ -f $EXCLUDE ] && sed -i "/^$MARK\$/,+2d" $EXCLUDE
  git status --short -- emotion/weights
  echo "restored: $(git ls-files emotion/weights | wc -l) files under emotion/weights tracked"
  exit 0
fi

DATA=../shared/data/fer2013 TEACHER=emotion_vgg_v8_v9
while [ $# -gt 0 ]; do
  case $1 in
    --data) DATA=$2; shift 2 ;;
    --teacher) TEACHER=$2; shift 2 ;;
    *) echo "error: unknown argument $1 (use --data DIR, --teacher NAME or --restore)" >&2; exit 2 ;;
  esac
done
mkdir -p "$(dirname $EXCLUDE)"
grep -qx '/.gpu/' $EXCLUDE 2>/dev/null || echo '/.gpu/' >> $EXCLUDE
$PY experiments/best/gpu/pack.py --data "$DATA" --teacher "$TEACHER" --out .gpu
$PY experiments/tools/label_issues.py folds --data "$DATA" --k 4 --out .gpu/folds  # for run.sh's FOLDS=1
mkdir -p .gpu/whl
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 -d .gpu/whl hydra-core==1.3.8 omegaconf==2.3.1 cleanlab==2.9.0 termcolor==3.3.0
$PY -m pip wheel -q --no-deps -w .gpu/whl antlr4-python3-runtime==4.9.3  # sdist only on PyPI: built here, pure Python

grep -qx "$MARK" $EXCLUDE || printf '%s\n/emotion/weights/*.safetensors\n/emotion/weights/*.onnx\n' "$MARK" >> $EXCLUDE
git rm -q --cached --ignore-unmatch -- "${WEIGHTS[@]}"
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
others=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb | tail -1 | cut -f1)
gpu=$(du -sb .gpu | cut -f1)
total=$(( tree + ${others:-0} + gpu ))
echo "travels: tracked $tree B + untracked ${others:-0} B + .gpu $gpu B = $(( total / 1048576 )) MiB (limit 64 MiB)"
if [ $total -gt $(( 64 * 1048576 )) ]; then
  bash "$SELF" --restore > /dev/null
  echo "error: $(( total / 1048576 )) MiB would travel, over the 64 MiB limit; the weights are back in the index" >&2
  exit 1
fi
echo "the shipped weights are out of the index until: bash experiments/best/gpu/prepare.sh --restore"
