#!/usr/bin/env bash
# What each preset promises, measured: every preset a CPU can train, trained on a few seeds with `gantrain`,
# scored with `gantrain-eval`, one line per preset: metric, value per seed, target, met / not met.
#
#   GANTRAIN_DATA=/path/to/data bash scripts/quality.sh OUT_FOLDER       # (default: quality-runs)
#
# SEEDS       seeds of the cheap presets (ring, grid, cgan_grid, digits, cgan_digits); default "0 1 2 3 4"
# SLOW_SEEDS  seeds of the MNIST presets (dcgan_mnist, cgan_mnist, pix2pix_edges2mnist, text_mnist, text_fashion);
#             default "0 1"
# MNIST_STEPS steps of dcgan_mnist and cgan_mnist (their 10,000 are GPU work); default 2000
# PRESETS     which presets to run; default all of the above
# QUICK=1     a few steps each, to check that the script runs end to end (the targets are then not met)
# REPORT_ONLY=1  train nothing: print the table of the runs already in OUT_FOLDER (two instances with
#             disjoint PRESETS can train side by side, one per core; then one REPORT_ONLY=1 call prints all)
# Every run computes on one thread (OMP_NUM_THREADS=1) on the CPU; runs already finished are not trained again,
# and a run stopped part way (Ctrl-C, a crash) continues from its last checkpoint. A run or evaluation that fails
# shows as "failed" in the table and the script goes on to the others; it then exits with 1.
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit 0
fi
case ${1:-} in -*) echo "quality.sh: unknown option $1; usage: bash scripts/quality.sh [OUT_FOLDER] (see --help)" >&2; exit 2 ;; esac
out=${1:-quality-runs}
failures=0
seeds=${SEEDS:-0 1 2 3 4}
slow_seeds=${SLOW_SEEDS:-0 1}
mnist_steps=${MNIST_STEPS:-2000}
presets=${PRESETS:-ring grid cgan_grid digits cgan_digits dcgan_mnist cgan_mnist pix2pix_edges2mnist text_mnist text_fashion}
export OMP_NUM_THREADS=1
mkdir -p "$out"

quick=()
if [ "${QUICK:-0}" = 1 ]; then
  quick=(trainer.steps=20 trainer.eval_every=0 trainer.sample_every=20 trainer.ckpt_every=20 trainer.log_every=10)
  mnist_steps=20
fi

# failed NAME SEED WHAT LOG: the run counts as failed (the table says so, the exit code is 1)
failed() {
  echo "$1 seed $2: $3 failed, see $4" >&2
  tail -n 5 "$4" >&2 || true
  touch "$out/${1}_$2.failed"
  failures=$((failures + 1))
}

# train NAME SEED ARGS...: one run into $out/NAME_SEED (skipped when finished; a stopped one continues);
# returns 1 when it failed
train() {
  local name=$1 seed=$2; shift 2
  local run="$out/${name}_$seed"
  [ -f "$run/checkpoints/last.pt" ] && [ -f "$run/.done" ] && [ ! -f "$run.failed" ] && return 0
  rm -f "$run.failed" "$run/eval.json"  # (an earlier attempt's scores are not this run's)
  local start=$(date +%s)
  if ! gantrain "$@" seed="$seed" trainer.device=cpu trainer.progress=false ${quick[@]+"${quick[@]}"} \
      resume=auto hydra.run.dir="$run" >"$run.log" 2>&1; then
    failed "$name" "$seed" training "$run.log"
    return 1
  fi
  echo "$(( $(date +%s) - start ))" >"$run/.done"
}

# evaluate NAME SEED ARGS...: gantrain-eval of the run (its eval.json)
evaluate() {
  local name=$1 seed=$2; shift 2
  gantrain-eval "$out/${name}_$seed" device=cpu "$@" >"$out/${name}_$seed.eval" 2>&1 \
    || failed "$name" "$seed" gantrain-eval "$out/${name}_$seed.eval"
}

# report NAME SEEDS METRIC OP TARGET [NOTE]: one line, the metric of every seed's eval.json against the target
report() {
  local name=$1 run_seeds=$2 metric=$3 op=$4 target=$5 note=${6:-}
  python3 - "$out" "$name" "$run_seeds" "$metric" "$op" "$target" "$note" <<'EOF'
import json, sys
out, name, seeds, metric, op, target, note = sys.argv[1:]
import os
values, failed = [], []
for seed in seeds.split():
    if os.path.exists(f"{out}/{name}_{seed}.failed"):
        values.append(None)
        failed.append(seed)
        continue
    try:
        report = json.load(open(f"{out}/{name}_{seed}/eval.json"))
        # a translation run's scores of the held-out outline styles sit under "translation"
        values.append(report["metrics"][metric] if metric in report["metrics"] else report["translation"][metric])
    except (OSError, KeyError, ValueError):
        values.append(None)
ok = all(v is not None and (v >= float(target) if op == ">=" else v <= float(target)) for v in values)
shown = " ".join(("failed" if seed in failed else "n/a") if v is None else f"{v:.4g}"
                 for seed, v in zip(seeds.split(), values))
print(f"{name:<22} {metric:<26} seeds {seeds}: {shown}   target {op} {target}{note}   {'met' if ok else 'NOT MET'}")
EOF
}

for preset in $presets; do
  [ "${REPORT_ONLY:-0}" = 1 ] && break
  case $preset in
    ring|grid|cgan_grid)
      for s in $seeds; do train "$preset" "$s" experiment="$preset" && evaluate "$preset" "$s" num_samples=10000 || true; done ;;
    digits)  # the README's quickstart: `gantrain dataset=digits`
      for s in $seeds; do train digits "$s" dataset=digits && evaluate digits "$s" || true; done ;;
    cgan_digits)
      for s in $seeds; do train cgan_digits "$s" experiment=cgan_digits && evaluate cgan_digits "$s" || true; done ;;
    dcgan_mnist|cgan_mnist)
      for s in $slow_seeds; do
        train "$preset" "$s" experiment="$preset" trainer.steps="$mnist_steps" trainer.eval_every=0 && \
          evaluate "$preset" "$s" num_samples=10000 || true
      done ;;
    pix2pix_edges2mnist|text_mnist|text_fashion)
      for s in $slow_seeds; do train "$preset" "$s" experiment="$preset" trainer.eval_every=0 && evaluate "$preset" "$s" num_samples=10000 || true; done ;;
    *) echo "unknown preset $preset" >&2; exit 2 ;;
  esac
done

echo
echo "preset                 metric                     seeds: value of each       target   result"
for preset in $presets; do
  case $preset in
    ring)        report ring "$seeds" modes ">=" 8
                 report ring "$seeds" high_quality_pct ">=" 95 ;;
    grid)        report grid "$seeds" modes ">=" 25
                 report grid "$seeds" high_quality_pct ">=" 96 ;;
    cgan_grid)   report cgan_grid "$seeds" modes ">=" 25
                 report cgan_grid "$seeds" cond_mode_pct_min ">=" 95 ;;
    digits)      report digits "$seeds" classes ">=" 10 " (every digit drawn)" ;;
    cgan_digits) report cgan_digits "$seeds" cond_accuracy ">=" 0.95
                 report cgan_digits "$seeds" cond_accuracy_min ">=" 0.85 ;;
    dcgan_mnist) report dcgan_mnist "$slow_seeds" classes ">=" 10 " ($mnist_steps steps)"
                 report dcgan_mnist "$slow_seeds" fid_classifier "<=" 49 " ($mnist_steps steps; 49.0 at 10,000 on a GPU)" ;;
    cgan_mnist)  report cgan_mnist "$slow_seeds" cond_accuracy ">=" 0.97 " ($mnist_steps steps; the target is at 10,000)"
                 report cgan_mnist "$slow_seeds" cond_accuracy_min ">=" 0.90 " ($mnist_steps steps)" ;;
    pix2pix_edges2mnist) report pix2pix_edges2mnist "$slow_seeds" label_acc ">=" 0.97 " (the training mix of styles)"
                 for style in canny morph_gradient thick sketch64; do  # held out: never drawn in training
                   report pix2pix_edges2mnist "$slow_seeds" "label_acc[$style]" ">=" 0.95 " (held-out style)"
                 done ;;
    text_mnist)  report text_mnist "$slow_seeds" text_class_agreement ">=" 0.95 " (held-out phrasings)"
                 report text_mnist "$slow_seeds" text_thickness_spearman ">=" 0.7 " (held-out phrasings)"
                 report text_mnist "$slow_seeds" text_slant_spearman ">=" 0.7 " (held-out phrasings)" ;;
    text_fashion) report text_fashion "$slow_seeds" text_class_agreement ">=" 0.95 " (held-out phrasings)"
                 report text_fashion "$slow_seeds" text_brightness_spearman ">=" 0.7 " (held-out phrasings)"
                 report text_fashion "$slow_seeds" text_size_spearman ">=" 0.7 " (held-out phrasings)" ;;
  esac
done
if [ "$failures" -gt 0 ]; then
  echo "$failures run(s) or evaluation(s) failed (see above)" >&2
  exit 1
fi
