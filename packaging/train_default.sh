#!/usr/bin/env bash
# Reproduces the shipped model and the figures of its model card (assets/models/README.md):
#   1. stage 1: trains configs/train_default.toml (the `small` preset) into runs/default;
#   2. stage 2: trains configs/train_guided.toml (`small-guided`: the image-guided decoder,
#      warm-started from stage 1) into runs/guided;
#   3. stage 3: trains configs/train_balanced.toml (stage 2 trained on with classes drawn by
#      size) into runs/balanced; every stage resumes when interrupted;
#   4. evaluates the model on held-out phantoms and on the held-out organs of the demo CT
#      (spleen, kidneys, liver) as clicks give it (the three planes through the click) and with
#      the clicked plane alone; with the clicked plane: with and without the image refinement of
#      its masks, with and without the volume_context cube, with the reference 2D mask on the
#      clicked slice, and stages 1 and 2 beside it, all beside the baseline; and on training-side
#      structures of the demo CT (where the refinement's parameters and the plane fusion were
#      chosen);
#   5. fine-tunes a LoRA adapter on MR-like phantoms (configs/lora_mr.toml) and evaluates the
#      base and the adapter on held-out MR phantoms and on the real MR in assets/mr (where the
#      join of region growing is chosen), then a second adapter on the real MR itself
#      (configs/lora_mr_real.toml, its spleen, kidneys and liver held out);
#   6. the near part of a leaking grown region (session 8) and session 6's unshipped trial;
#   7. stage 4 (session 9): trains configs/train_balanced2.toml (stage 3 trained on for 500 more
#      steps) into runs/balanced2 and the MR adapter on it (configs/lora_mr_stage4.toml), checks
#      them against the rule written before they were evaluated, copies them into
#      assets/models/default.safetensors and assets/models/mr.safetensors (LoRA and trained
#      heads), and evaluates the shipped pair for the card (runs/eval/s9), the real MR's
#      held-out organs as a user gets them (no --weights, no --adapter) among them.
#   8. session 22's phantom scenes and two trials on them (configs/train_families*.toml), and
#      session 23's shipping of the second with the scale that follows the object, after the
#      check of session 22's rule, and the figures of session 23's close-up probe. The evaluations made before session 23 carry --no-zoom: one
#      scale was the pipeline's default when their figures were taken.
# Everything lands in runs/ (reports: runs/eval/*.csv and *.json).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=/dev/null
source packaging/linux/env.sh
cargo build --release --locked --workspace --bins
bin="$root/target/release/sam3d-studio-engine"
export OMP_WAIT_POLICY=PASSIVE

train() { # config, out
    local resume=()
    [ -f "$2/state.safetensors" ] && resume=(--resume)
    "$bin" train --config "$1" --out "$2" "${resume[@]}"
}
train configs/train_default.toml runs/default
train configs/train_guided.toml runs/guided
train configs/train_balanced.toml runs/balanced

mkdir -p runs/eval/sweep
[ -f runs/eval-phantoms-ct/case_003_labels.nii.gz ] || "$bin" phantom runs/eval-phantoms-ct --cases 4 --seed 9000 --modality ct --medium
[ -f runs/eval-phantoms-mr/case_003_labels.nii.gz ] || "$bin" phantom runs/eval-phantoms-mr --cases 4 --seed 9100 --modality mr --medium
w=runs/balanced/model.safetensors
heldout=(--data assets/demo --labels 1,2,3,5)
# Training-side organs of the demo CT (gallbladder, stomach, pancreas, aorta, inferior vena
# cava, iliopsoas muscles): the refinement's parameters were chosen on these.
trainside=(--data assets/demo --labels 4,6,7,52,63,88,89)
# The three sets' data options by name.
set_data() {
    case $1 in
        phantoms_ct) data=(--data runs/eval-phantoms-ct) ;;
        demo_heldout) data=("${heldout[@]}") ;;
        demo_trainside) data=("${trainside[@]}") ;;
    esac
}
# Weights $1 on the three sets, into $2/: as clicks give them, then the model's shapes alone (no
# region growing joined), and the ablations, which also keep to the clicked plane (--planes own).
pipeline_evals() {
    local d
    for d in phantoms_ct demo_heldout demo_trainside; do
        set_data "$d"
        "$bin" eval --no-zoom "${data[@]}" --weights "$1" --out "$2/$d.csv"
        "$bin" eval --no-zoom --no-join "${data[@]}" --weights "$1" --out "$2/${d}_nojoin.csv"
        "$bin" eval --no-zoom --no-join "${data[@]}" --weights "$1" --planes own --out "$2/${d}_own.csv"
        "$bin" eval --no-zoom --no-join "${data[@]}" --weights "$1" --planes own --no-refine --out "$2/${d}_raw.csv"
        [ "$d" = demo_trainside ] && continue
        "$bin" eval --no-zoom --no-join "${data[@]}" --weights "$1" --planes own --no-context --out "$2/${d}_noctx.csv"
        # One pass per click (no continuation past the output cube).
        "$bin" eval --no-zoom --no-join "${data[@]}" --weights "$1" --planes own --no-extend --out "$2/${d}_single.csv"
    done
    # (A drawn 2D mask keeps a click to its plane.)
    "$bin" eval --no-zoom --no-join "${heldout[@]}" --weights "$1" --mask2d reference --out "$2/demo_heldout_ref2d.csv"
}
pipeline_evals "$w" runs/eval
for d in phantoms_ct demo_heldout; do
    set_data "$d"
    "$bin" eval --no-zoom --no-join "${data[@]}" --weights runs/default/model.safetensors --planes own --out "runs/eval/${d}_stage1.csv"
    "$bin" eval --no-zoom --no-join "${data[@]}" --weights runs/guided/model.safetensors --planes own --out "runs/eval/${d}_stage2.csv"
done
# The refinement's parameter sweep on the training-side organs (band mm × multiplier).
for band in 4 8 12 16 24; do
    for k in 1.5 2 2.5 3; do
        "$bin" eval --no-zoom --no-join "${trainside[@]}" --weights "$w" --planes own --no-extend --refine-band-mm "$band" --refine-multiplier "$k" --out "runs/eval/sweep/trainside_b${band}_k${k}.csv"
    done
done
# The second sweep, on every training-side structure of the demo CT with at least 1500 voxels
# (32 structures, 96 clicks): intensity floor factor × statistics radius × pruning multiplier ×
# band × multiplier. The default is the best mean Dice; ties within 0.003 go to the simpler
# setting (no pruning, whole-interior statistics, the default floor, the smaller band, the
# smaller multiplier); packaging/model_card_tables.py applies the rule.
wide=(--data assets/demo --labels 20,18,21,86,87,81,77,78,80,88,89,83,82,25,6,75,76,85,14,84,27,29,28,117,19,63,30,31,52,32,26,79)
mkdir -p runs/eval/sweep2
for F in 1 0.3; do
    for R in off 6; do
        for kp in off 3 4; do
            for band in 8 12; do
                for k in 1 1.5; do
                    o="runs/eval/sweep2/wide_F${F}_R${R}_p${kp}_b${band}_k${k}.csv"
                    [ -f "${o%.csv}.json" ] || "$bin" eval --no-zoom --no-join "${wide[@]}" --weights "$w" --model-only --planes own --no-extend --refine-floor-factor "$F" \
                        --refine-stats-radius-mm "$R" --refine-prune "$kp" --refine-band-mm "$band" --refine-multiplier "$k" --out "$o"
                done
            done
        done
    done
done
# The wider training-side set as clicks give it (refined with the chosen defaults, extended).
"$bin" eval --no-zoom "${wide[@]}" --weights "$w" --model-only --out runs/eval/demo_wide.csv
"$bin" eval --no-zoom --no-join "${wide[@]}" --weights "$w" --model-only --out runs/eval/demo_wide_nojoin.csv
"$bin" eval --no-zoom --no-join "${wide[@]}" --weights "$w" --model-only --planes own --out runs/eval/demo_wide_own.csv
# The plane fusion: the clicked plane alone, or the mean or median of the signed distances from
# the three planes through the click. The default is the best mean Dice on the 32 training-side
# structures; ties within 0.003 go to the clicked plane alone (the cheaper); the held-out
# phantoms and organs are reported beside it (packaging/model_card_tables.py applies the rule).
mkdir -p runs/eval/fusion
for f in own mean median; do
    "$bin" eval --no-zoom --no-join "${wide[@]}" --weights "$w" --model-only --planes "$f" --out "runs/eval/fusion/wide_$f.csv"
    "$bin" eval --no-zoom --no-join --data runs/eval-phantoms-ct --weights "$w" --model-only --planes "$f" --out "runs/eval/fusion/phantoms_$f.csv"
    "$bin" eval --no-zoom --no-join "${heldout[@]}" --weights "$w" --model-only --planes "$f" --out "runs/eval/fusion/heldout_$f.csv"
done
# Off-centre clicks: each click halfway from the border to the deepest point of its slice
# (--click-depth 0.5), with three planes and with the clicked plane alone (the model's shapes
# alone), then as clicks give them.
mkdir -p runs/eval/offcentre
for f in median own; do
    "$bin" eval --no-zoom --no-join "${heldout[@]}" --weights "$w" --planes "$f" --click-depth 0.5 --out "runs/eval/offcentre/heldout_$f.csv"
    "$bin" eval --no-zoom --no-join --data runs/eval-phantoms-ct --weights "$w" --planes "$f" --click-depth 0.5 --out "runs/eval/offcentre/phantoms_$f.csv"
    "$bin" eval --no-zoom --no-join "${wide[@]}" --weights "$w" --planes "$f" --click-depth 0.5 --model-only --out "runs/eval/offcentre/wide_$f.csv"
done
# And as clicks give them (three planes, region growing joined where it agrees).
"$bin" eval --no-zoom "${heldout[@]}" --weights "$w" --click-depth 0.5 --out runs/eval/offcentre/heldout_join.csv
"$bin" eval --no-zoom --data runs/eval-phantoms-ct --weights "$w" --click-depth 0.5 --out runs/eval/offcentre/phantoms_join.csv
"$bin" eval --no-zoom "${wide[@]}" --weights "$w" --click-depth 0.5 --model-only --out runs/eval/offcentre/wide_join.csv
# A check that the refinement's default still holds for the three planes' (more conservative)
# masks: band × multiplier around it on the 32 structures, one pass, median of three planes.
mkdir -p runs/eval/sweep3
for band in 8 12; do
    for k in 1 1.5; do
        o="runs/eval/sweep3/wide_median_b${band}_k${k}.csv"
        [ -f "${o%.csv}.json" ] || "$bin" eval --no-zoom --no-join "${wide[@]}" --weights "$w" --model-only --no-extend --planes median \
            --refine-band-mm "$band" --refine-multiplier "$k" --out "$o"
    done
done

# LoRA on MR-like phantoms, before/after on held-out MR phantoms (and with the clicked plane alone).
# (--no-mr-adapter: the base alone, where clicks on MR get the shipped MR adapter by default.)
"$bin" eval --no-zoom --no-mr-adapter --data runs/eval-phantoms-mr --weights "$w" --out runs/eval/phantoms_mr_base.csv
"$bin" eval --no-zoom --no-mr-adapter --no-join --data runs/eval-phantoms-mr --weights "$w" --out runs/eval/phantoms_mr_base_nojoin.csv
"$bin" eval --no-zoom --no-mr-adapter --no-join --data runs/eval-phantoms-mr --weights "$w" --planes own --out runs/eval/phantoms_mr_base_own.csv
resume=()
[ -f runs/lora-mr/state.safetensors ] && resume=(--resume)
"$bin" train --config configs/lora_mr.toml --out runs/lora-mr "${resume[@]}"
# The adapter file carries the heads it trained: with the base it is the fine-tuned model.
"$bin" eval --no-zoom --data runs/eval-phantoms-mr --weights "$w" --adapter runs/lora-mr/adapter.safetensors --out runs/eval/phantoms_mr_lora.csv
"$bin" eval --no-zoom --no-join --data runs/eval-phantoms-mr --weights "$w" --adapter runs/lora-mr/adapter.safetensors --out runs/eval/phantoms_mr_lora_nojoin.csv

# The real MR (assets/mr), a scan no weights were trained on: the CT-trained model, the
# phantom adapter and region growing on its seven abdominal organs; then the join of region
# growing (baseline::join), chosen before the held-out CT organs were measured with it: it is
# the default if its mean Dice beats the model's shapes alone by more than 0.01 on the real MR's
# seven organs with the phantom adapter, and loses no more than 0.005 on the held-out CT
# phantoms (packaging/model_card_tables.py applies the rule; the table also shows the demo CT's
# 32 training-side structures, which decided earlier choices, and its held-out organs).
mrall=(--data assets/mr --labels 1,2,3,4,5,6,7)
lora=(--weights "$w" --adapter runs/lora-mr/adapter.safetensors)
mkdir -p runs/eval/realmr
"$bin" eval --no-zoom --no-mr-adapter "${mrall[@]}" --weights "$w" --out runs/eval/realmr/base.csv
"$bin" eval --no-zoom --no-mr-adapter --no-join "${mrall[@]}" --weights "$w" --model-only --out runs/eval/realmr/base_nojoin.csv
"$bin" eval --no-zoom "${mrall[@]}" "${lora[@]}" --model-only --out runs/eval/realmr/lora.csv
"$bin" eval --no-zoom --no-join "${mrall[@]}" "${lora[@]}" --model-only --out runs/eval/realmr/lora_nojoin.csv
# Fine-tuning on one's own scan: a LoRA adapter trained on the real MR's labels with its spleen,
# kidneys and liver held out (beside MR phantoms), evaluated on those four organs.
resume=()
[ -f runs/lora-mr-real/state.safetensors ] && resume=(--resume)
"$bin" train --config configs/lora_mr_real.toml --out runs/lora-mr-real "${resume[@]}"
mrheld=(--data assets/mr --labels 1,2,3,5)
"$bin" eval --no-zoom --no-mr-adapter "${mrheld[@]}" --weights "$w" --out runs/eval/realmr/heldout_base.csv
for a in lora-mr lora-mr-real; do
    "$bin" eval --no-zoom "${mrheld[@]}" --weights "$w" --adapter "runs/$a/adapter.safetensors" --model-only --out "runs/eval/realmr/heldout_$a.csv"
    "$bin" eval --no-zoom --no-join "${mrheld[@]}" --weights "$w" --adapter "runs/$a/adapter.safetensors" --model-only --out "runs/eval/realmr/heldout_${a}_nojoin.csv"
done
"$bin" eval --no-zoom --no-join --data runs/eval-phantoms-mr --weights "$w" --adapter runs/lora-mr/adapter.safetensors --planes own --out runs/eval/phantoms_mr_lora_own.csv

# The near part of a leaking grown region (session 8): where growing leaks, its part within
# --join-near-mm of the shape is joined when that part agrees (0: the whole region is dropped, as
# in session 7). The rule, fixed before the runs: a distance is adopted if the real MR's seven
# organs (MR adapter) gain more than 0.01 over 0 and the held-out CT phantoms lose no more than
# 0.005; of 4 and 8 mm the larger MR gain wins. The held-out CT organs and the 32 training-side
# structures are reported (packaging/model_card_tables.py applies the rule).
mkdir -p runs/eval/near
for mm in 0 4 8; do
    "$bin" eval --no-zoom --join-near-mm "$mm" "${mrall[@]}" "${lora[@]}" --model-only --out "runs/eval/near/mr_$mm.csv"
    "$bin" eval --no-zoom --join-near-mm "$mm" --data runs/eval-phantoms-ct --weights "$w" --model-only --out "runs/eval/near/phantoms_$mm.csv"
    "$bin" eval --no-zoom --join-near-mm "$mm" "${heldout[@]}" --weights "$w" --model-only --out "runs/eval/near/heldout_$mm.csv"
    "$bin" eval --no-zoom --join-near-mm "$mm" "${wide[@]}" --weights "$w" --model-only --out "runs/eval/near/wide_$mm.csv"
done

# (Until session 8, stage 3 and runs/lora-mr were the shipped weights and MR adapter: as a user
# got them, the real MR's held-out organs scored runs/eval/realmr/heldout_shipped.csv.)
"$bin" eval --no-zoom "${mrheld[@]}" "${lora[@]}" --model-only --out runs/eval/realmr/heldout_shipped.csv

# Session 6's trial of a fourth stage, not shipped (the model card's "A fourth stage"): stage 3
# trained on with 80 % real samples and wider geometric augmentation, evaluated as clicks give it.
train configs/train_real.toml runs/real
mkdir -p runs/eval/stage4
"$bin" eval --no-zoom --no-join "${wide[@]}" --weights runs/real/model.safetensors --model-only --out runs/eval/stage4/wide.csv
"$bin" eval --no-zoom --no-join --data runs/eval-phantoms-ct --weights runs/real/model.safetensors --model-only --out runs/eval/stage4/phantoms.csv
for f in median own; do
    "$bin" eval --no-zoom --no-join "${heldout[@]}" --weights runs/real/model.safetensors --model-only --planes "$f" --out "runs/eval/stage4/heldout_$f.csv"
done
# Stage 4 (session 9, shipped): stage 3 trained on for 500 more steps (configs/train_balanced2.toml),
# and the MR adapter of configs/lora_mr.toml trained on it (configs/lora_mr_stage4.toml). The
# rule, written before either was evaluated: shipped if the held-out CT phantoms score at least
# 0.8723 (stage 3 less 0.005), its own phantom validation at least 0.87, and the real MR's seven
# organs with its adapter at least 0.6451 (stage 3's 0.6351 + 0.01); the held-out CT organs and
# the 32 training-side structures are reported (the model card's "Stage 4").
train configs/train_balanced2.toml runs/balanced2
w4=runs/balanced2/model.safetensors
resume=()
[ -f runs/lora-mr-stage4/state.safetensors ] && resume=(--resume)
"$bin" train --config configs/lora_mr_stage4.toml --out runs/lora-mr-stage4 "${resume[@]}"
mkdir -p runs/eval/balanced2 runs/eval/s9
"$bin" eval --no-zoom --data runs/eval-phantoms-ct --weights "$w4" --model-only --out runs/eval/balanced2/phantoms.csv
"$bin" eval --no-zoom "${mrall[@]}" --weights "$w4" --adapter runs/lora-mr-stage4/adapter.safetensors --model-only --out runs/eval/balanced2/mr7.csv
"$bin" eval --no-zoom "${heldout[@]}" --weights "$w4" --model-only --out runs/eval/balanced2/heldout.csv
"$bin" eval --no-zoom "${wide[@]}" --weights "$w4" --model-only --out runs/eval/balanced2/wide.csv

# The rule decides: nothing is copied when stage 4 or its adapter falls short.
python3 - <<'PY' || { echo "stage 4 does not pass its rule: the shipped weights stay as they are" >&2; exit 1; }
import json, sys
dice = lambda p: json.load(open(p))["methods"]["model"]["mean_dice"]
val = [json.loads(x)["validation"] for x in open("runs/balanced2/log.jsonl") if '"validation"' in x]
v = [x for x in val if x.get("context", True)][-1]["dice_3d_grid_pred2d"]
ph, mr = dice("runs/eval/balanced2/phantoms.json"), dice("runs/eval/balanced2/mr7.json")
print(f"stage 4: held-out CT phantoms {ph:.4f} (>= 0.8723), real MR 7 organs {mr:.4f} (>= 0.6451), validation {v:.3f} (>= 0.87)")
sys.exit(0 if ph >= 0.8723 and mr >= 0.6451 and v >= 0.87 else 1)
PY
mkdir -p assets/models
cp "$w4" assets/models/default.safetensors.tmp && mv assets/models/default.safetensors.tmp assets/models/default.safetensors
# The MR adapter (LoRA and heads), put on by default for MR scans.
cp runs/lora-mr-stage4/adapter.safetensors assets/models/mr.safetensors.tmp && mv assets/models/mr.safetensors.tmp assets/models/mr.safetensors

# The shipped model's card figures (runs/eval/s9): as clicks give them and each step away.
pipeline_evals "$w4" runs/eval/s9
"$bin" eval --no-zoom "${wide[@]}" --weights "$w4" --model-only --out runs/eval/s9/demo_wide.csv
"$bin" eval --no-zoom "${heldout[@]}" --weights "$w4" --model-only --click-depth 0.5 --out runs/eval/s9/offcentre_heldout.csv
"$bin" eval --no-zoom --data runs/eval-phantoms-ct --weights "$w4" --model-only --click-depth 0.5 --out runs/eval/s9/offcentre_phantoms.csv
# As a user gets them: no --weights, no --adapter (the shipped weights, the MR adapter by itself).
"$bin" eval --no-zoom "${mrheld[@]}" --model-only --out runs/eval/s9/mr_heldout_shipped.csv
"$bin" eval --no-zoom "${mrheld[@]}" --out runs/eval/s9/mr_heldout_shipped_baseline.csv
"$bin" eval --no-zoom "${mrall[@]}" --model-only --out runs/eval/s9/mr_all_shipped.csv
"$bin" eval --no-zoom --no-mr-adapter "${mrheld[@]}" --model-only --out runs/eval/s9/mr_heldout_base.csv
"$bin" eval --no-zoom --no-join "${mrheld[@]}" --model-only --out runs/eval/s9/mr_heldout_nojoin.csv
"$bin" eval --no-zoom --data runs/eval-phantoms-mr --weights "$w4" --adapter runs/lora-mr-stage4/adapter.safetensors --model-only --out runs/eval/s9/phantoms_mr_lora.csv
"$bin" eval --no-zoom --no-mr-adapter --data runs/eval-phantoms-mr --weights "$w4" --model-only --out runs/eval/s9/phantoms_mr_base.csv
echo "weights: assets/models/default.safetensors; reports: runs/eval/"

# Session 10's trials (the model card's "Session 10"), none shipped: test views on the shipped
# pair, and stage 5 (stage 4 trained on; configs/train_balanced3.toml) with its MR adapter.
mkdir -p runs/eval/s10
mrall7=(--data assets/mr --labels 1,2,3,4,5,6,7)
for v in 0 2; do
    "$bin" eval --no-zoom --data runs/eval-phantoms-ct --model-only --views "$v" --out "runs/eval/s10/phantoms_v$v.csv"
    "$bin" eval --no-zoom --data runs/eval-phantoms-ct --model-only --click-depth 0.5 --views "$v" --out "runs/eval/s10/offphantoms_v$v.csv"
    "$bin" eval --no-zoom "${mrall7[@]}" --model-only --views "$v" --out "runs/eval/s10/mr7_v$v.csv"
    "$bin" eval --no-zoom "${heldout[@]}" --model-only --views "$v" --out "runs/eval/s10/heldout_v$v.csv"
done
train configs/train_balanced3.toml runs/balanced3
resume=()
[ -f runs/lora-mr-stage5/state.safetensors ] && resume=(--resume)
"$bin" train --config configs/lora_mr_stage5.toml --out runs/lora-mr-stage5 "${resume[@]}"
w5=runs/balanced3/model.safetensors
a5=runs/lora-mr-stage5/adapter.safetensors
"$bin" eval --no-zoom --data runs/eval-phantoms-ct --weights "$w5" --model-only --out runs/eval/s10/s5_phantoms.csv
"$bin" eval --no-zoom "${heldout[@]}" --weights "$w5" --model-only --out runs/eval/s10/s5_heldout.csv
"$bin" eval --no-zoom "${mrall7[@]}" --weights "$w5" --adapter "$a5" --model-only --out runs/eval/s10/s5_mr7.csv
"$bin" eval --no-zoom --data runs/eval-phantoms-mr --weights "$w5" --adapter "$a5" --model-only --out runs/eval/s10/s5_mrphantoms.csv
echo "session 10's trials: runs/eval/s10/"

# Session 18's trial, not shipped (the model card's "Session 18"): the corrector for refinement
# prompts, trained with simulated corrections with the six evaluated organs held out, against the
# rules (`--no-corrector`) on the demo CT and the real MR.
mkdir -p runs/eval/s18
"$bin" train-corrector --data assets/demo --holdout 1,2,3,5,6,7 --phantoms 4 --steps 2000 --batch 4 --seed 22 --out runs/corrector
for d in demo mr; do
    set6=(--data "assets/$d" --labels 1,2,3,5,6,7 --clicks 5 --model-only)
    "$bin" eval --no-zoom "${set6[@]}" --no-corrector --out "runs/eval/s18/${d}_rules.csv"
    SAM3D_CORRECTOR=runs/corrector/corrector.safetensors "$bin" eval --no-zoom "${set6[@]}" --out "runs/eval/s18/${d}_corrector.csv"
done
echo "session 18's corrector trial: runs/eval/s18/"

# Session 19 (the model card's "Session 19"): one click on the six organs of the demo CT and the
# real MR, after the continuation's click took its depth from the pass's own SDF (the card
# compares the same commands run by the previous commit's binary).
mkdir -p runs/eval/s19
for d in demo mr; do
    "$bin" eval --no-zoom --data "assets/$d" --labels 1,2,3,5,6,7 --out "runs/eval/s19/${d}_one_click.csv"
done
echo "session 19's one-click check: runs/eval/s19/"

# Session 22 (the model card's "Session 22", issue 22): the structures users click besides
# abdominal organs. Phantom scenes (data::scenes) for training and, with other seeds, held out;
# stage 4 trained on with them and with the scale that follows the object, twice
# (configs/train_families.toml, configs/train_families2.toml), their MR adapters
# (configs/lora_mr_families*.toml), and the figures of the rule written before either was
# evaluated, as the card gives it. Session 23 copies the second into assets/models (below).
for s in chest abdomen head; do
    seed=$(case $s in chest) echo 3000 ;; abdomen) echo 3100 ;; head) echo 3200 ;; esac)
    n=$([ "$s" = head ] && echo 8 || echo 10)
    [ -f "runs/families-data/$s/labels.tsv" ] || "$bin" phantom "runs/families-data/$s" --cases "$n" --seed "$seed" --medium --scene "$s"
    [ -f "runs/eval-scenes/ct_$s/labels.tsv" ] || "$bin" phantom "runs/eval-scenes/ct_$s" --cases 3 --seed 9100 --medium --scene "$s"
done
for s in abdomen head; do
    [ -f "runs/eval-scenes/mr_$s/labels.tsv" ] || "$bin" phantom "runs/eval-scenes/mr_$s" --cases 2 --seed 9200 --medium --modality mr --scene "$s"
done
mkdir -p runs/eval/s22
for d in runs/eval-scenes/*; do
    # (Each set's MR scans get their base's MR adapter, its CT scans none.)
    SAM3D_MR_ADAPTER=runs/lora-mr-stage4/adapter.safetensors "$bin" eval --no-zoom --data "$d" --weights "$w4" --out "runs/eval/s22/shipped_$(basename "$d").csv"
done
# The two trials (the second, with less of the scenes and half the learning rate, was chosen after
# the first failed the rule's organ phantoms) and their MR adapters, each with one scale
# (--no-zoom) and with the scale that follows the object (the default since session 23; its
# reports are named "--zoom", as when it was an option; --no-close-up: session 22 had no probe).
for t in families families2; do
    train "configs/train_$t.toml" "runs/$t"
    resume=()
    [ -f "runs/lora-mr-$t/state.safetensors" ] && resume=(--resume)
    "$bin" train --config "configs/lora_mr_$t.toml" --out "runs/lora-mr-$t" "${resume[@]}"
    wf="runs/$t/model.safetensors"
    af="runs/lora-mr-$t/adapter.safetensors"
    for z in "" --zoom; do
        flag=(--no-zoom)
        [ -n "$z" ] && flag=(--no-close-up)
        for d in runs/eval-scenes/*; do
            SAM3D_MR_ADAPTER="$af" "$bin" eval --data "$d" --weights "$wf" --model-only "${flag[@]}" --out "runs/eval/s22/$t${z}_$(basename "$d").csv"
        done
        "$bin" eval --data runs/eval-phantoms-ct --weights "$wf" --model-only "${flag[@]}" --out "runs/eval/s22/$t${z}_phantoms.csv"
        "$bin" eval "${heldout[@]}" --weights "$wf" --model-only "${flag[@]}" --out "runs/eval/s22/$t${z}_heldout.csv"
        "$bin" eval "${mrall7[@]}" --weights "$wf" --adapter "$af" --model-only "${flag[@]}" --out "runs/eval/s22/$t${z}_mr7.csv"
    done
done
echo "session 22's trials: runs/eval/s22/"

# Session 23: trial 2 with the scale that follows the object passed the four figures of session
# 22's rule (the card's "Session 22"); it ships. The rule's check on the reports above, then the
# weights and the adapter are copied into assets/models (the zoom is the pipeline's default).
python3 - <<'PY' || { echo "trial 2 does not pass session 22's rule: the shipped weights stay as they are" >&2; exit 1; }
import glob, json, sys
def families(pattern, method):
    pool = {}
    for f in glob.glob(pattern):
        for row in json.load(open(f))["methods"][method]["by_family"]:
            n, s = pool.get(row["family"], (0, 0.0))
            pool[row["family"]] = (n + row["clicks"], s + row["clicks"] * row["mean_dice"])
    return {k: s / n for k, (n, s) in pool.items()}
four = lambda f: sum(f[k] for k in ("lesions", "vessels", "lungs and airways", "bone")) / 4
dice = lambda p: json.load(open(p))["methods"]["model"]["mean_dice"]
old, new = families("runs/eval/s22/shipped_ct_*.json", "model"), families("runs/eval/s22/families2--zoom_ct_*.json", "model")
checks = {
    "four families": (four(new), four(old) + 0.05),
    "organs": (new["organs"], old["organs"] - 0.02),
    "organ phantoms": (dice("runs/eval/s22/families2--zoom_phantoms.json"), 0.8855),
    "held-out organs": (dice("runs/eval/s22/families2--zoom_heldout.json"), 0.7398),
    "real MR": (dice("runs/eval/s22/families2--zoom_mr7.json"), 0.6523),
}
for name, (got, need) in checks.items():
    print(f"{name}: {got:.4f} (>= {need:.4f})")
sys.exit(0 if all(got >= need for got, need in checks.values()) else 1)
PY
cp runs/families2/model.safetensors assets/models/default.safetensors.tmp && mv assets/models/default.safetensors.tmp assets/models/default.safetensors
cp runs/lora-mr-families2/adapter.safetensors assets/models/mr.safetensors.tmp && mv assets/models/mr.safetensors.tmp assets/models/mr.safetensors
echo "session 23: trial 2 and its MR adapter are the shipped weights"

# Session 23's close-up probe (the card's "Session 23"): the training-side clicks its gate was
# chosen on (the first three cases of each training scene set, the demo CT's training-side
# structures; RUST_LOG=sam3d_engine=debug logs each probe's object, distinctness and edge), then
# the shipped pipeline on the rule's held-out sets with and without the probe.
mkdir -p runs/eval/s23 runs/s23-trainside
for s in chest abdomen head; do
    mkdir -p "runs/s23-trainside/$s"
    for c in 000 001 002; do
        ln -sf "../../families-data/$s/case_$c.nii.gz" "../../families-data/$s/case_${c}_labels.nii.gz" "runs/s23-trainside/$s/"
    done
    cp "runs/families-data/$s/labels.tsv" "runs/s23-trainside/$s/"
    RUST_LOG=sam3d_engine=debug "$bin" eval --data "runs/s23-trainside/$s" --model-only --out "runs/eval/s23/trainside_$s.csv" 2> "runs/eval/s23/trainside_$s.log"
done
RUST_LOG=sam3d_engine=debug "$bin" eval "${trainside[@]}" --model-only --out runs/eval/s23/trainside_demo.csv 2> runs/eval/s23/trainside_demo.log
for p in "" --no-close-up; do
    for d in runs/eval-scenes/*; do
        "$bin" eval --data "$d" --model-only $p --out "runs/eval/s23/shipped${p}_$(basename "$d").csv"
    done
    "$bin" eval --data runs/eval-phantoms-ct --model-only $p --out "runs/eval/s23/shipped${p}_phantoms.csv"
    "$bin" eval "${heldout[@]}" --model-only $p --out "runs/eval/s23/shipped${p}_heldout.csv"
    "$bin" eval "${mrall7[@]}" --model-only $p --out "runs/eval/s23/shipped${p}_mr7.csv"
done
echo "session 23's close-up probe: runs/eval/s23/"
