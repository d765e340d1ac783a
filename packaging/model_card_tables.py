#!/usr/bin/env python3
"""Prints the model card's tables (markdown) from the reports packaging/train_default.sh writes
into runs/eval/ and the training logs in runs/. Standard library only.

    python3 packaging/model_card_tables.py [RUNS_DIR]
"""
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")
ev = runs / "eval"
NAMES = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "liver", 6: "stomach", 7: "pancreas", 52: "aorta",
         63: "inferior_vena_cava", 88: "iliopsoas_left", 89: "iliopsoas_right"}


def rows(name):
    p = ev / f"{name}.csv"
    if not p.exists():
        return []
    with p.open() as f:
        return list(csv.DictReader(f))


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else float("nan")


def summary(rs, method):
    r = [x for x in rs if x["method"] == method]
    dice = [float(x["dice"]) for x in r]
    hd = [float(x["hd95_mm"]) if x["hd95_mm"] else None for x in r]
    return len(r), mean(dice), min(dice) if dice else float("nan"), mean(hd)


def per_label(rs, method):
    by = defaultdict(list)
    for x in rs:
        if x["method"] == method:
            by[int(x["label"])].append(float(x["dice"]))
    return {k: mean(v) for k, v in sorted(by.items())}


def cell(rs, method):
    if not rs or not any(x["method"] == method for x in rs):
        return "–"
    _, d, _, h = summary(rs, method)
    return f"{d:.3f} (HD95 {h:.1f} mm)"


def step_cells(a):
    """Without the join, clicked plane, one pass, own mask, no context, reference 2D mask: the
    ablation columns of report `a` (a path under runs/eval without `.csv`)."""
    return " | ".join(cell(rows(a + suffix), method) for suffix, method in [("_nojoin", "model"), ("_own", "model"), ("_single", "model"),
                                                                           ("_raw", "model_raw"), ("_noctx", "model"), ("_ref2d", "model_ref2d")])


def dice2d(rs, method="model"):
    v = [float(x["dice_2d"]) for x in rs if x["method"] == method and x.get("dice_2d")]
    return f"{mean(v):.3f}" if v else "–"


# Stage 4 (session 9, shipped): its rule, then its figures beside stage 3's (runs/eval/s9 against
# the stage-3 reports below).
st4 = [("held-out CT phantoms, 84 clicks (≥ 0.8723)", "balanced2/phantoms", "near/phantoms_4"),
       ("real MR, 7 organs, each with its MR adapter (≥ 0.6451)", "balanced2/mr7", "near/mr_4"),
       ("32 training-side structures of the demo CT (reported)", "balanced2/wide", "near/wide_4"),
       ("held-out organs of the demo CT (reported)", "balanced2/heldout", "near/heldout_4")]
if all(rows(a) and rows(b) for _, a, b in st4):
    print("### Stage 4: the rule (decides on the first two rows; validation ≥ 0.87 too)\n")
    print("| data | stage 3 | stage 4 |")
    print("|---|---|---|")
    for name, a, b in st4:
        print(f"| {name} | {summary(rows(b), 'model')[1]:.4f} | {summary(rows(a), 'model')[1]:.4f} |")
    log = runs / "balanced2" / "log.jsonl"
    if log.exists():
        v = [json.loads(x) for x in log.open() if '"validation"' in x]
        last = [x["validation"] for x in v if x["validation"].get("context", True)][-1]
        print(f"\nStage 4's phantom validation at its last step (3D grid Dice, own 2D mask): {last['dice_3d_grid_pred2d']:.3f}.")

s9 = [("held-out CT phantoms (4 cases × 7 structures)", "phantoms_ct"), ("demo CT, held-out organs (spleen, kidneys, liver)", "demo_heldout"),
      ("demo CT, training-side organs (gallbladder, stomach, pancreas, aorta, IVC, iliopsoas)", "demo_trainside")]
if rows("s9/demo_heldout"):
    print("\n### The shipped model (stage 4): one-click Dice (mean over the three planes' clicks)\n")
    print("| data | clicks | baseline (region growing) | **model (as a click gives it)** | stage 3 (shipped until session 8) | without the join | clicked plane only | one pass | model's own mask (no refinement) "
          "| single slice (no context) | given the reference 2D mask | model's 2D Dice on the clicked slice |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, a in s9:
        ra = rows("s9/" + a)
        if not ra:
            continue
        n = sum(1 for x in ra if x["method"] == "baseline")
        print(f"| {label} | {n} | {cell(ra, 'baseline')} | **{cell(ra, 'model')}** | {cell(rows(a), 'model')} | {step_cells('s9/' + a)} | {dice2d(ra)} |")
    print("\n| per organ (Dice) | stage 3 | stage 4 | stage 4, predicted / true volume |")
    print("|---|---|---|---|")
    for a in ("demo_heldout", "phantoms_ct", "demo_trainside"):
        ra, rb = rows("s9/" + a), rows(a)
        m4, m3 = per_label(ra, "model"), per_label(rb, "model")
        vol = per_label([dict(x, dice=float(x["pred_voxels"]) / float(x["gt_voxels"])) for x in ra], "model")
        for k in m4:
            print(f"| {a}: {NAMES.get(k, k)} | {m3.get(k, float('nan')):.3f} | {m4[k]:.3f} | {vol[k]:.2f} |")
    extra = [("32 training-side structures", "s9/demo_wide", "near/wide_4"), ("off-centre clicks, held-out organs", "s9/offcentre_heldout", "offcentre/heldout_join"),
             ("off-centre clicks, CT phantoms", "s9/offcentre_phantoms", "offcentre/phantoms_join"),
             ("real MR's spleen, kidneys, liver as a user gets them", "s9/mr_heldout_shipped", "realmr/heldout_shipped"),
             ("real MR, 7 organs as a user gets them", "s9/mr_all_shipped", "near/mr_4"),
             ("real MR's spleen, kidneys, liver, the base alone (--no-mr-adapter)", "s9/mr_heldout_base", "realmr/heldout_base"),
             ("MR phantoms with the MR adapter", "s9/phantoms_mr_lora", "phantoms_mr_lora"), ("MR phantoms, the base alone", "s9/phantoms_mr_base", "phantoms_mr_base")]
    print("\n| more sets (as clicks give them) | stage 3 | stage 4 |")
    print("|---|---|---|")
    for name, a, b in extra:
        if rows(a):
            print(f"| {name} | {cell(rows(b), 'model')} | {cell(rows(a), 'model')} |")
    mh = rows("s9/mr_heldout_shipped")
    if mh:
        per = per_label(mh, "model")
        print("\nThe real MR's organs as a user gets them (stage 4 and its adapter): " + ", ".join(f"{NAMES[k]} {v:.3f}" for k, v in per.items()) + ".")

print("\n### One-click Dice (mean over the three planes' clicks), stage 3\n")
print("Beside the baseline, the shipped model as a click gives it (the three planes through the click, region growing joined where it agrees), "
      "then without the join, then with the clicked plane alone, and from there each column takes one step away: one pass "
      "(no continuation past the cube), no refinement, no context cube, the reference 2D mask, the earlier training stages.\n")
print("| data | clicks | baseline (region growing) | **model (as a click gives it)** | without the join | clicked plane only | one pass | model's own mask (no refinement) "
      "| single slice (no context) | given the reference 2D mask | stage 1 | stage 2 | model's 2D Dice on the clicked slice |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for label, a in [("held-out CT phantoms (4 cases × 7 structures)", "phantoms_ct"),
                 ("demo CT, held-out organs (spleen, kidneys, liver)", "demo_heldout"),
                 ("demo CT, training-side organs (gallbladder, stomach, pancreas, aorta, IVC, iliopsoas)", "demo_trainside")]:
    ra = rows(a)
    if not ra:
        continue
    n = sum(1 for x in ra if x["method"] == "baseline")
    print(f"| {label} | {n} | {cell(ra, 'baseline')} | **{cell(ra, 'model')}** | {step_cells(a)} "
          f"| {cell(rows(a + '_stage1'), 'model')} | {cell(rows(a + '_stage2'), 'model')} | {dice2d(ra)} |")

for title, a in [("Held-out CT phantoms, per structure (Dice, mean of 4 cases × 3 clicks)", "phantoms_ct"),
                 ("Held-out organs of the demo CT, per organ (Dice, mean of three clicks)", "demo_heldout"),
                 ("Training-side organs of the demo CT, per organ (Dice, mean of three clicks)", "demo_trainside")]:
    ra = rows(a)
    if not ra:
        continue
    print(f"\n### {title}\n")
    print("| structure | baseline | model | without the join | clicked plane | one pass | model's own mask | no context | reference 2D mask | stage 1 | stage 2 | predicted / true volume |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    b, m, one = per_label(ra, "baseline"), per_label(ra, "model"), per_label(rows(a + "_single"), "model")
    nj = per_label(rows(a + "_nojoin"), "model")
    own = per_label(rows(a + "_own"), "model")
    raw, n, r = per_label(rows(a + "_raw"), "model_raw"), per_label(rows(a + "_noctx"), "model"), per_label(rows(a + "_ref2d"), "model_ref2d")
    s1, s2 = per_label(rows(a + "_stage1"), "model"), per_label(rows(a + "_stage2"), "model")
    vol = per_label([dict(x, dice=float(x["pred_voxels"]) / float(x["gt_voxels"])) for x in ra], "model")
    f = lambda d, k: f"{d[k]:.3f}" if k in d else "–"
    for k in b:
        print(f"| {NAMES.get(k, k)} | {b[k]:.3f} | {f(m, k)} | {f(nj, k)} | {f(own, k)} | {f(one, k)} | {f(raw, k)} | {f(n, k)} | {f(r, k)} | {f(s1, k)} | {f(s2, k)} | {f(vol, k)} |")

sweep = sorted((ev / "sweep").glob("trainside_b*_k*.csv")) if (ev / "sweep").exists() else []
if sweep:
    grid = {}
    for p in sweep:
        band, k = p.stem[len("trainside_b"):].split("_k")
        grid[(float(band), float(k))] = summary(rows("sweep/" + p.stem), "model")[1]
    bands, ks = sorted({b for b, _ in grid}), sorted({k for _, k in grid})
    print("\n### Refinement sweep on the training-side organs (mean Dice; rows: band in mm, columns: multiplier)\n")
    print("| band \\ multiplier | " + " | ".join(f"{k:g}" for k in ks) + " |")
    print("|---|" + "---|" * len(ks))
    for b in bands:
        print(f"| {b:g} | " + " | ".join(f"{grid[(b, k)]:.3f}" if (b, k) in grid else "–" for k in ks) + " |")

w1 = rows("demo_wide")
if w1:
    n, d, wd, h = summary(w1, "model")
    print(f"\nThe 32 training-side structures of the second sweep ({n} clicks) as clicks give them (three planes, refined, continued past the cube, region growing joined where it agrees): mean Dice {d:.3f}, worst {wd:.3f}, HD95 {h:.1f} mm.", end="")
    w0 = rows("demo_wide_own")
    if w0:
        n, d, wd, h = summary(w0, "model")
        print(f" With the clicked plane alone (no join): {d:.3f}, worst {wd:.3f}, HD95 {h:.1f} mm.", end="")
    print()

fus = {(s, f): rows(f"fusion/{s}_{f}") for s in ["wide", "phantoms", "heldout"] for f in ["own", "mean", "median"]}
if all(fus[("wide", f)] for f in ["own", "mean", "median"]):
    # The rule: the best mean on the 32 training-side structures; within 0.003 of it, the
    # cheaper (the clicked plane alone before a fusion; mean and median cost the same).
    wd = {f: summary(fus[("wide", f)], "model")[1] for f in ["own", "mean", "median"]}
    best = max(wd.values())
    pick = "own" if wd["own"] >= best - 0.003 else max(wd, key=wd.get)
    print("\n### Plane fusion (refined, continued; mean Dice, HD95 in brackets). The default is chosen on the first row.\n")
    print("| data | clicks | clicked plane only | mean of three planes | median of three planes |")
    print("|---|---|---|---|---|")
    for s, label in [("wide", "32 training-side structures of the demo CT"), ("phantoms", "held-out CT phantoms"), ("heldout", "held-out organs of the demo CT")]:
        if not all(fus[(s, f)] for f in ["own", "mean", "median"]):
            continue
        n = summary(fus[(s, "own")], "model")[0]
        cells = []
        for f in ["own", "mean", "median"]:
            _, d, _, h = summary(fus[(s, f)], "model")
            c = f"{d:.4f} ({h:.1f} mm)"
            cells.append(f"**{c}** (chosen)" if s == "wide" and f == pick else c)
        print(f"| {label} | {n} | " + " | ".join(cells) + " |")

wide = sorted((ev / "sweep2").glob("wide_F*_R*_p*_b*_k*.csv")) if (ev / "sweep2").exists() else []
if wide:
    res = []
    for p in wide:
        F, R, kp, band, k = (x[1:] for x in p.stem[len("wide_"):].split("_"))
        res.append((summary(rows("sweep2/" + p.stem), "model")[1], float(F), R, kp, float(band), float(k)))
    # The rule: the best mean; within 0.003 of it, the simplest (no pruning, whole-interior
    # statistics, the default floor, the smaller band, the smaller multiplier).
    best = max(r[0] for r in res)
    simple = lambda r: (r[3] != "off", r[2] != "off", r[1] != 1.0, r[4], r[5])
    pick = min((r for r in res if r[0] >= best - 0.003), key=simple)
    print("\n### Second refinement sweep: 32 training-side structures of the demo CT, 96 clicks (mean Dice, best first)\n")
    print("| floor factor | statistics radius (mm) | pruning multiplier | band (mm) | multiplier | mean Dice | |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(res, key=lambda r: -r[0]):
        print(f"| {r[1]:g} | {r[2]} | {r[3]} | {r[4]:g} | {r[5]:g} | {r[0]:.4f} | {'**chosen**' if r == pick else ''} |")

off = {(s, f): rows(f"offcentre/{s}_{f}") for s in ["heldout", "phantoms", "wide"] for f in ["median", "own", "join"]}
if any(off.values()):
    print("\n### Off-centre clicks: halfway from the border to the deepest point (`--click-depth 0.5`; mean Dice, HD95 in brackets)\n")
    print("| data | clicks | baseline | model (three planes, no join) | clicked plane only (no join) | model's 2D Dice on the clicked slice | deepest-point clicks, model (no join) "
          "| as clicks give it (with the join) | deepest-point clicks, as clicks give it |")
    print("|---|---|---|---|---|---|---|---|---|")
    deep = {"heldout": rows("demo_heldout_nojoin"), "phantoms": rows("phantoms_ct_nojoin"), "wide": rows("demo_wide_nojoin")}
    deepj = {"heldout": rows("demo_heldout"), "phantoms": rows("phantoms_ct"), "wide": rows("demo_wide")}
    for s, label in [("heldout", "held-out organs of the demo CT"), ("phantoms", "held-out CT phantoms"), ("wide", "32 training-side structures of the demo CT")]:
        m, o = off[(s, "median")], off[(s, "own")]
        if not m:
            continue
        n = summary(m, "model")[0]
        print(f"| {label} | {n} | {cell(m, 'baseline')} | **{cell(m, 'model')}** | {cell(o, 'model')} | {dice2d(m)} | {cell(deep[s], 'model')} "
              f"| {cell(off[(s, 'join')], 'model')} | {cell(deepj[s], 'model')} |")

s3 = sorted((ev / "sweep3").glob("wide_median_b*_k*.csv"), key=lambda p: tuple(float(x) for x in p.stem[len("wide_median_b"):].split("_k"))) if (ev / "sweep3").exists() else []
if s3:
    print("\n### The refinement with three planes: 32 training-side structures, one pass, median of three planes (mean Dice)\n")
    print("| band (mm) | multiplier | mean Dice |")
    print("|---|---|---|")
    for p in s3:
        band, k = p.stem[len("wide_median_b"):].split("_k")
        print(f"| {band} | {k} | {summary(rows('sweep3/' + p.stem), 'model')[1]:.4f} |")

r0, r1 = rows("phantoms_mr_base"), rows("phantoms_mr_lora")
if r0 and r1:
    print("\n### LoRA fine-tuning on MR-like phantoms (held-out MR phantoms, 4 cases)\n")
    print("| | clicks | mean Dice | worst Dice | mean HD95 (mm) | mean Dice without the join | mean Dice, clicked plane only (no join) |")
    print("|---|---|---|---|---|---|---|")
    own0, own1 = rows("phantoms_mr_base_own"), rows("phantoms_mr_lora_own")
    nj0, nj1 = rows("phantoms_mr_base_nojoin"), rows("phantoms_mr_lora_nojoin")
    for name, rs, meth, o, nj in [("region growing", r0, "baseline", None, None), ("shipped model (CT-trained)", r0, "model", own0, nj0),
                                  ("+ LoRA adapter (MR phantoms)", r1, "model", own1, nj1)]:
        n, d, w, h = summary(rs, meth)
        oc = f"{summary(o, meth)[1]:.3f}" if o else "–"
        jc = f"{summary(nj, meth)[1]:.3f}" if nj else "–"
        print(f"| {name} | {n} | {d:.3f} | {w:.3f} | {h:.1f} | {jc} | {oc} |")

# The join of region growing: the rule (fixed before the held-out CT organs were measured with
# it) decides on the real MR's seven organs with the phantom adapter (more than 0.01 better) and
# the held-out CT phantoms (no more than 0.005 worse).
# (The joined columns are session 7's join, a leaking region dropped whole: --join-near-mm 0.)
sel = [("real MR, 7 organs, phantom adapter (decides)", "near/mr_0", "realmr/lora_nojoin", 0.01),
       ("held-out CT phantoms (must not lose more than 0.005)", "near/phantoms_0", "phantoms_ct_nojoin", -0.005),
       ("32 training-side structures of the demo CT", "near/wide_0", "demo_wide_nojoin", None),
       ("held-out organs of the demo CT (reported, not used)", "near/heldout_0", "demo_heldout_nojoin", None)]
if all(rows(a) and rows(b) for _, a, b, _ in sel):
    print("\n### The join of region growing (mean Dice, HD95 in brackets; three planes, refined, continued)\n")
    print("| data | clicks | model's shapes alone | joined where growing agrees | clicks joined |")
    print("|---|---|---|---|---|")
    ok = True
    for label, a, b, need in sel:
        n, dj, _, hj = summary(rows(a), "model")
        _, dn, _, hn = summary(rows(b), "model")
        if need is not None:
            ok = ok and (dj - dn > need)
        # A joined click has more voxels than the same click without the join.
        nv = {(x["case"], x["label"], x["plane"]): int(x["pred_voxels"]) for x in rows(b) if x["method"] == "model"}
        joined = sum(1 for x in rows(a) if x["method"] == "model" and int(x["pred_voxels"]) > nv.get((x["case"], x["label"], x["plane"]), 1 << 60))
        print(f"| {label} | {n} | {dn:.4f} ({hn:.1f} mm) | {dj:.4f} ({hj:.1f} mm) | {joined} |")
    print(f"\nThe rule {'keeps' if ok else 'drops'} the join.")

# The near part of a leaking region (session 8): adopted at a distance if the real MR's seven
# organs gain more than 0.01 over 0 mm and the CT phantoms lose no more than 0.005; of the
# distances that pass, the larger MR gain wins. The other two sets are reported.
near = [("real MR, 7 organs, MR adapter (decides)", "mr", 0.01), ("held-out CT phantoms (must not lose more than 0.005)", "phantoms", -0.005),
        ("32 training-side structures of the demo CT", "wide", None), ("held-out organs of the demo CT (reported, not used)", "heldout", None)]
if all(rows(f"near/{a}_{mm}") for _, a, _ in near for mm in (0, 4, 8)):
    print("\n### The near part of a leaking grown region (mean Dice, HD95 in brackets; as clicks give it otherwise)\n")
    print("| data | clicks | dropped whole (0 mm) | within 4 mm | within 8 mm |")
    print("|---|---|---|---|---|")
    passed = {4: True, 8: True}
    for label, a, need in near:
        cells = []
        n, d0, _, h0 = summary(rows(f"near/{a}_0"), "model")
        for mm in (0, 4, 8):
            _, d, _, h = summary(rows(f"near/{a}_{mm}"), "model")
            cells.append(f"{d:.4f} ({h:.1f} mm)")
            if mm and need is not None:
                passed[mm] = passed[mm] and (d - d0 > need)
        print(f"| {label} | {n} | " + " | ".join(cells) + " |")
    gain = {mm: summary(rows(f"near/mr_{mm}"), "model")[1] for mm in (4, 8)}
    best = max((mm for mm in (4, 8) if passed[mm]), key=lambda mm: gain[mm], default=None)
    print(f"\nThe rule {'adopts ' + str(best) + ' mm' if best else 'adopts neither'}.")

mr = [("region growing", "realmr/heldout_base", "baseline", None), ("shipped model (CT-trained)", "realmr/heldout_base", "model", None),
      ("+ LoRA adapter, MR phantoms (`lora-mr`)", "realmr/heldout_lora-mr", "model", "realmr/heldout_lora-mr_nojoin"),
      ("+ LoRA adapter, the real MR's other structures and MR phantoms (`lora-mr-real`)", "realmr/heldout_lora-mr-real", "model", "realmr/heldout_lora-mr-real_nojoin")]
if all(rows(a) for _, a, _, _ in mr):
    print("\n### The real MR's spleen, kidneys and liver (assets/mr; 12 clicks; mean Dice, HD95 in brackets)\n")
    print("| | as clicks give it | without the join | spleen | kidney_right | kidney_left | liver |")
    print("|---|---|---|---|---|---|---|")
    for name, a, meth, nj in mr:
        per = per_label(rows(a), meth)
        njc = cell(rows(nj), meth) if nj else "–"
        print(f"| {name} | {cell(rows(a), meth)} | {njc} | " + " | ".join(f"{per.get(k, float('nan')):.3f}" for k in (1, 2, 3, 5)) + " |")

for run in ["default", "guided", "balanced", "balanced2", "lora-mr", "lora-mr-stage4", "lora-mr-real"]:
    log = runs / run / "log.jsonl"
    if not log.exists():
        continue
    L = [json.loads(x) for x in log.open()]
    steps = [x for x in L if "secs" in x]
    vals = [x for x in L if "validation" in x]
    secs = sum(x["secs"] for x in steps)
    print(f"\n### Training run `{run}`: {len(steps)} steps, {secs / 60:.1f} min of step time, "
          f"loss {steps[0]['loss']:.3f} → {mean([x['loss'] for x in steps[-20:]]):.3f} (mean of the last 20)\n")
    print("| step | context | 2D Dice | 3D grid Dice (true 2D mask) | 3D grid Dice (own 2D mask) |")
    print("|---|---|---|---|---|")
    for v in vals:
        x = v["validation"]
        print(f"| {v['step']} | {'yes' if x.get('context', True) else 'no'} | {x['dice_2d']:.3f} | {x['dice_3d_grid']:.3f} | {x.get('dice_3d_grid_pred2d', float('nan')):.3f} |")
