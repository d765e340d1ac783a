//! Metrics: two offset spheres against closed forms, empty masks, and the `surface-distance`
//! package's values for the real label pair (tests/data/shape_refs/refs.json, written by
//! tests/oracle/make_shape_refs.py from assets/demo/labels.nii.gz and a shifted, eroded copy).

use ndarray::Array3;
use sam3d_studio::shape::metrics::{mask_label_metrics, surfel_areas};
use sam3d_studio::shape::{compare_label_maps, label_metrics, mask_metrics, surface_distances};
use sam3d_studio::volume::{LabelMap, OnGrid};
use serde_json::Value;
use std::f64::consts::PI;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ball(shape: (usize, usize, usize), sp: [f64; 3], c: [f64; 3], r: f64) -> Array3<bool> {
    Array3::from_shape_fn(shape, |(k, j, i)| {
        let (x, y, z) = (i as f64 * sp[0] - c[0], j as f64 * sp[1] - c[1], k as f64 * sp[2] - c[2]);
        x * x + y * y + z * z <= r * r
    })
}

/// Area-weighted percentile of the distance from sphere A (radius r) to sphere B (radius r,
/// centre offset d): a point of A at polar cosine c (uniform in area) is |√(r²+d²−2rdc) − r|
/// from B's surface.
fn sphere_percentile(r: f64, d: f64, p: f64) -> f64 {
    let frac = |t: f64| {
        let c_of = |g: f64| (r * r + d * d - g * g) / (2.0 * r * d);
        let hi = c_of((r - t).max(0.0)).min(1.0);
        let lo = c_of(r + t).max(-1.0);
        ((hi - lo) / 2.0).max(0.0)
    };
    let (mut a, mut b) = (0.0, d);
    for _ in 0..100 {
        let m = 0.5 * (a + b);
        if frac(m) >= p { b = m } else { a = m }
    }
    b
}

#[test]
fn offset_spheres_against_closed_forms() {
    let sp = [0.5, 0.6, 0.8];
    let shape = (60, 70, 90); // [k, j, i]: 48 × 42 × 45 mm
    let (r, d) = (12.0, 5.0);
    let c1 = [20.0, 21.0, 24.0];
    let c2 = [c1[0] + d * 0.6, c1[1], c1[2] + d * 0.8]; // offset along a mixed i/k direction
    let a = ball(shape, sp, c1, r);
    let b = ball(shape, sp, c2, r);
    let m = mask_metrics(1, a.view(), b.view(), sp);
    // Lens volume of two balls: π(4r + d)(2r − d)²/12.
    let lens = PI * (4.0 * r + d) * (2.0 * r - d).powi(2) / 12.0;
    let want_dice = lens / (4.0 / 3.0 * PI * r.powi(3));
    assert!((m.dice - want_dice).abs() < 0.01, "dice {} vs {want_dice}", m.dice);
    let want_iou = lens / (2.0 * 4.0 / 3.0 * PI * r.powi(3) - lens);
    assert!((m.iou - want_iou).abs() < 0.01, "iou {} vs {want_iou}", m.iou);
    // Surfels sit on a lattice one voxel apart: allow one voxel diagonal.
    let tol = (sp[0] * sp[0] + sp[1] * sp[1] + sp[2] * sp[2]).sqrt();
    let hd = m.hd_mm.expect("hd");
    assert!((hd - d).abs() < tol, "hausdorff {hd} vs {d}");
    let want95 = sphere_percentile(r, d, 0.95);
    let hd95 = m.hd95_mm.expect("hd95");
    assert!((hd95 - want95).abs() < tol, "hd95 {hd95} vs {want95}");
    // Mean distance: ∫ |√(r²+d²−2rdc) − r| dc / 2 over c ∈ [−1, 1], numerically.
    let n = 20000;
    let mean: f64 = (0..n)
        .map(|s| {
            let c = -1.0 + (s as f64 + 0.5) * 2.0 / n as f64;
            ((r * r + d * d - 2.0 * r * d * c).sqrt() - r).abs()
        })
        .sum::<f64>()
        / n as f64;
    let assd = m.assd_mm.expect("assd");
    assert!((assd - mean).abs() < 0.5 * tol, "assd {assd} vs {mean}");
    assert!((m.chamfer_mm.expect("chamfer") - 2.0 * assd).abs() < 1e-9);
    // Surfel areas add up to the sphere's area (within the staircase approximation).
    let sd = surface_distances(a.view(), b.view(), sp);
    let area: f64 = sd.pred_to_gt.iter().map(|x| x.1).sum();
    assert!((area / (4.0 * PI * r * r) - 1.0).abs() < 0.1, "surfel area {area}");
}

#[test]
fn empty_masks_are_explicit() {
    let sp = [1.0, 1.0, 2.0];
    let none = Array3::from_elem((5, 6, 7), false);
    let some = ball((5, 6, 7), sp, [3.0, 3.0, 4.0], 2.0);
    let both = mask_metrics(3, none.view(), none.view(), sp);
    assert_eq!((both.dice, both.iou, both.hd95_mm, both.assd_mm), (1.0, 1.0, Some(0.0), Some(0.0)));
    for m in [mask_metrics(3, none.view(), some.view(), sp), mask_metrics(3, some.view(), none.view(), sp)] {
        assert_eq!((m.dice, m.iou), (0.0, 0.0));
        assert_eq!((m.hd95_mm, m.hd_mm, m.assd_mm, m.chamfer_mm), (None, None, None, None));
    }
    let same = mask_metrics(3, some.view(), some.view(), sp);
    assert_eq!((same.dice, same.hd95_mm, same.assd_mm), (1.0, Some(0.0), Some(0.0)));
    // JSON: null, never NaN.
    let j = serde_json::to_string(&mask_metrics(3, none.view(), some.view(), sp)).expect("json");
    assert!(j.contains("\"hd95_mm\":null"), "{j}");
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k} missing"))
}

fn close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "{what}: {got} vs surface-distance {want}");
}

#[test]
fn matches_surface_distance_on_the_real_label_pair() {
    let refs: Value = serde_json::from_str(&std::fs::read_to_string(root().join("tests/data/shape_refs/refs.json")).expect("refs"))
        .expect("json");
    let gt_path = root().join("assets/demo/labels.nii.gz");
    let pred_path = root().join("tests/data/shape_refs/pred_labels.nii.gz");
    let gt = sam3d_studio::volume::open_labels(&gt_path).expect("gt");
    let pred = sam3d_studio::volume::open_labels(&pred_path).expect("pred");
    for (key, spacing) in [("labels", gt.spacing_mm()), ("labels_aniso", [0.8, 1.3, 2.5])] {
        let want = refs[key].as_object().expect("labels");
        let got = label_metrics(pred.data.view(), gt.data.view(), spacing);
        let got: std::collections::BTreeMap<String, _> = got.into_iter().map(|m| (m.label.to_string(), m)).collect();
        if key == "labels" {
            assert_eq!(got.len(), want.len(), "same label set (union of both files)");
        }
        for (label, w) in want {
            let g = &got[label];
            let what = format!("{key} label {label}");
            assert_eq!(g.pred_voxels as u64, w["pred_voxels"].as_u64().expect("n"), "{what}");
            assert_eq!(g.gt_voxels as u64, w["gt_voxels"].as_u64().expect("n"), "{what}");
            close(g.dice, num(w, "dice"), &format!("{what} dice"));
            close(g.iou, num(w, "iou"), &format!("{what} iou"));
            if w.get("hd95").is_some() {
                close(g.hd95_mm.expect("hd95"), num(w, "hd95"), &format!("{what} hd95"));
                close(g.hd_mm.expect("hd"), num(w, "hd"), &format!("{what} hd"));
                close(g.assd_mm.expect("assd"), num(w, "assd"), &format!("{what} assd"));
                close(g.avg_gt_to_pred_mm.expect("a"), num(w, "avg_gt_to_pred"), &format!("{what} gt→pred"));
                close(g.avg_pred_to_gt_mm.expect("a"), num(w, "avg_pred_to_gt"), &format!("{what} pred→gt"));
            } else {
                assert!(g.hd95_mm.is_none() && g.assd_mm.is_none(), "{what}: one side empty");
            }
        }
    }
    // Surfel counts and areas of one label, directly.
    let w = &refs["labels"]["5"];
    let sd = surface_distances(pred.mask(5).view(), gt.mask(5).view(), gt.spacing_mm());
    assert_eq!(sd.gt_to_pred.len() as u64, w["surfels_gt"].as_u64().expect("n"));
    assert_eq!(sd.pred_to_gt.len() as u64, w["surfels_pred"].as_u64().expect("n"));
    close(sd.gt_to_pred.iter().map(|x| x.1).sum(), num(w, "area_gt"), "area gt");
    close(sd.pred_to_gt.iter().map(|x| x.1).sum(), num(w, "area_pred"), "area pred");
    // And through the file-level entry point.
    let rows = compare_label_maps(&pred, &gt, &pred_path, &gt_path).expect("same grid");
    assert_eq!(rows.len(), refs["labels"].as_object().expect("l").len());
}

#[test]
fn surfel_area_table_scales_with_spacing() {
    // A single inside corner's triangle: normal (1/8)(1,1,1) scaled by (s1·s2, s0·s2, s0·s1).
    let a = surfel_areas([1.0, 2.0, 3.0]);
    let want = 0.125 * ((6.0f64).powi(2) + 3.0f64.powi(2) + 2.0f64.powi(2)).sqrt();
    assert!((a[1] - want).abs() < 1e-12);
    assert_eq!(a[0], 0.0);
    assert_eq!(a[255], 0.0);
}

#[test]
fn metrics_cli_json_and_grid_mismatch() {
    let gt = root().join("assets/demo/labels.nii.gz");
    let pred = root().join("tests/data/shape_refs/pred_labels.nii.gz");
    let bin = env!("CARGO_BIN_EXE_sam3d-studio");
    let out = std::process::Command::new(bin)
        .args(["metrics", pred.to_str().expect("p"), gt.to_str().expect("p"), "--json"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim().lines().count(), 1, "one JSON object");
    let v: Value = serde_json::from_str(stdout.trim()).expect("json");
    let liver = v["labels"].as_array().expect("labels").iter().find(|r| r["label"] == 5).expect("liver");
    let refs: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("tests/data/shape_refs/refs.json")).expect("refs")).expect("json");
    close(num(liver, "dice"), num(&refs["labels"]["5"], "dice"), "cli dice");
    close(num(liver, "hd95_mm"), num(&refs["labels"]["5"], "hd95"), "cli hd95");

    // A label map on another grid: one line naming both files.
    let dir = tempfile::tempdir().expect("tmp");
    let other = dir.path().join("other.nii.gz");
    let g = sam3d_studio::volume::open_labels(&gt).expect("gt");
    let small = LabelMap::new(g.data.slice(ndarray::s![.., .., 1..]).to_owned(), g.ras_from_voxel).expect("map");
    small.save(&other).expect("save");
    let out = std::process::Command::new(bin)
        .args(["metrics", other.to_str().expect("p"), gt.to_str().expect("p")])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("other.nii.gz") && err.contains("labels.nii.gz"), "{err}");
}

/// The viewer's candidate against the label under the click: the boxed computation gives the
/// whole grid's figures exactly, including when the label is absent or the mask empty.
#[test]
fn a_mask_against_one_label_matches_the_whole_grid() {
    let sp = [0.8, 1.1, 2.5];
    let shape = (40, 48, 44);
    let pred = ball(shape, sp, [14.0, 24.0, 20.0], 9.0);
    let mut labels = ndarray::Array3::<u16>::zeros(shape);
    for ((idx, l), g) in labels.indexed_iter_mut().zip(ball(shape, sp, [17.0, 22.0, 27.0], 10.0).iter()) {
        if *g {
            *l = 3;
        } else if idx.2 < 6 {
            *l = 7; // another structure at the grid's edge
        }
    }
    for (label, p) in [(3u16, pred.clone()), (7, pred.clone()), (9, pred.clone()), (3, ndarray::Array3::from_elem(shape, false))] {
        let boxed = mask_label_metrics(p.view(), labels.view(), label, sp);
        let whole = mask_metrics(label, p.view(), labels.mapv(|v| v == label).view(), sp);
        assert_eq!(format!("{boxed:?}"), format!("{whole:?}"), "label {label}");
    }
    let m = mask_label_metrics(pred.view(), labels.view(), 3, sp);
    assert!(m.dice > 0.2 && m.dice < 0.9 && m.hd95_mm.is_some_and(|h| h > 1.0), "{m:?}");
}
