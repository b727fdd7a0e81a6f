#!/usr/bin/env bash
# The sample-quality runs behind docs/results.md: each preset trained, then scored by gantrain-eval.
#
#   GANTRAIN_DATA=/path/to/data bash scripts/quality.sh [OUT_FOLDER]     # (default: quality-runs)
#
# STEPS overrides every preset's step count (default: the presets' own).
set -euo pipefail
out=${1:-quality-runs}
steps=${STEPS:+trainer.steps=$STEPS}
mkdir -p "$out"
for preset in cgan_mnist dcgan_mnist; do
  start=$(date +%s)
  gantrain experiment=$preset $steps trainer.eval_every=0 trainer.progress=false hydra.run.dir="$out/$preset" \
    >"$out/$preset.log" 2>&1 || { tail -20 "$out/$preset.log"; exit 1; }
  echo "$preset: $(( $(date +%s) - start )) s; $(grep -o 'steps_per_s [0-9.]*' "$out/$preset.log" | tail -1)"
done
gantrain-eval "$out/cgan_mnist" "metrics=[cond_accuracy,cond_accuracy_min,intra_fid,fid_classifier,precision,recall]"
gantrain-eval "$out/dcgan_mnist" "metrics=[fid_classifier,precision,recall]"
gantrain-sample "$out/cgan_mnist" per_class=true seed=0 out="$out/cgan_mnist_classes.png"
