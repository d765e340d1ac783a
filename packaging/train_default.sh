#!/usr/bin/env bash
# Reproduces the shipped model and the figures of its model card (assets/models/README.md):
#   1. stage 1: trains configs/train_default.toml (the `small` preset) into runs/default;
#   2. stage 2: trains configs/train_guided.toml (`small-guided`: the image-guided decoder,
#      warm-started from stage 1) into runs/guided; both stages resume when interrupted;
#   3. evaluates the model on held-out phantoms and on the held-out organs of the demo CT
#      (spleen, kidneys, liver), with and without the volume_context cube, with the reference
#      2D mask on the clicked slice, and stage 1 beside it, all beside the baseline;
#   4. fine-tunes a LoRA adapter on MR-like phantoms (configs/lora_mr.toml) and evaluates the
#      base and the adapter on held-out MR phantoms;
#   5. copies the weights into assets/models/default.safetensors.
# Everything lands in runs/ (reports: runs/eval/*.csv and *.json).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=/dev/null
source packaging/linux/env.sh
cargo build --release --locked --bins
bin="$root/target/release/sam3d-studio-engine"
export OMP_WAIT_POLICY=PASSIVE

train() { # config, out
    local resume=()
    [ -f "$2/state.safetensors" ] && resume=(--resume)
    "$bin" train --config "$1" --out "$2" "${resume[@]}"
}
train configs/train_default.toml runs/default
train configs/train_guided.toml runs/guided

mkdir -p runs/eval
[ -f runs/eval-phantoms-ct/case_003_labels.nii.gz ] || "$bin" phantom runs/eval-phantoms-ct --cases 4 --seed 9000 --modality ct --medium
[ -f runs/eval-phantoms-mr/case_003_labels.nii.gz ] || "$bin" phantom runs/eval-phantoms-mr --cases 4 --seed 9100 --modality mr --medium
w=runs/guided/model.safetensors
heldout=(--data assets/demo --labels 1,2,3,5)
"$bin" eval --data runs/eval-phantoms-ct --weights "$w" --out runs/eval/phantoms_ct.csv
"$bin" eval --data runs/eval-phantoms-ct --weights "$w" --no-context --out runs/eval/phantoms_ct_noctx.csv
"$bin" eval --data runs/eval-phantoms-ct --weights runs/default/model.safetensors --out runs/eval/phantoms_ct_stage1.csv
"$bin" eval "${heldout[@]}" --weights "$w" --out runs/eval/demo_heldout.csv
"$bin" eval "${heldout[@]}" --weights "$w" --no-context --out runs/eval/demo_heldout_noctx.csv
"$bin" eval "${heldout[@]}" --weights "$w" --mask2d reference --out runs/eval/demo_heldout_ref2d.csv
"$bin" eval "${heldout[@]}" --weights runs/default/model.safetensors --out runs/eval/demo_heldout_stage1.csv

# LoRA on MR-like phantoms, before/after on held-out MR phantoms.
"$bin" eval --data runs/eval-phantoms-mr --weights "$w" --out runs/eval/phantoms_mr_base.csv
resume=()
[ -f runs/lora-mr/state.safetensors ] && resume=(--resume)
"$bin" train --config configs/lora_mr.toml --out runs/lora-mr "${resume[@]}"
"$bin" eval --data runs/eval-phantoms-mr --weights runs/lora-mr/model.safetensors --adapter runs/lora-mr/adapter.safetensors --out runs/eval/phantoms_mr_lora.csv

mkdir -p assets/models
cp "$w" assets/models/default.safetensors.tmp && mv assets/models/default.safetensors.tmp assets/models/default.safetensors
echo "weights: assets/models/default.safetensors; reports: runs/eval/"
