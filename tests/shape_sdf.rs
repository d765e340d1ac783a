//! Signed distance fields: brute force on small random masks (exact), an analytic sphere on an
//! anisotropic grid, scipy's values on the real liver label (tests/data/shape_refs/refs.json,
//! written by tests/oracle/make_shape_refs.py).

use ndarray::{Array3, Axis};
use sam3d_studio::geometry::SpacingIjk;
use sam3d_studio::shape::{edt, sdf, sdf_classes, sdf_of_labels};
use sam3d_studio::volume::OnGrid;
use serde_json::Value;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The scipy convention, by brute force in f64.
fn brute_sdf(m: &Array3<bool>, sp: [f64; 3]) -> Array3<f64> {
    let pts: Vec<([usize; 3], bool)> = m.indexed_iter().map(|((k, j, i), &v)| ([k, j, i], v)).collect();
    Array3::from_shape_fn(m.raw_dim(), |(k, j, i)| {
        let me = m[[k, j, i]];
        let d = pts
            .iter()
            .filter(|(_, v)| *v != me)
            .map(|(p, _)| {
                let dk = (p[0] as f64 - k as f64) * sp[2];
                let dj = (p[1] as f64 - j as f64) * sp[1];
                let di = (p[2] as f64 - i as f64) * sp[0];
                (dk * dk + dj * dj + di * di).sqrt()
            })
            .fold(f64::INFINITY, f64::min);
        if me { -d } else { d }
    })
}

#[test]
fn equals_brute_force_on_random_masks() {
    let mut rng = Lcg(99);
    for case in 0..30 {
        let shape = (1 + (rng.next() * 9.0) as usize, 1 + (rng.next() * 10.0) as usize, 1 + (rng.next() * 11.0) as usize);
        let fill = 0.05 + rng.next() * 0.6;
        let m = Array3::from_shape_fn(shape, |_| rng.next() < fill);
        if !m.iter().any(|&v| v) || m.iter().all(|&v| v) {
            continue;
        }
        let sp = [0.3 + rng.next() * 2.0, 0.3 + rng.next() * 2.0, 0.3 + rng.next() * 3.0];
        let got = sdf(m.view(), SpacingIjk(sp));
        let want = brute_sdf(&m, sp);
        for ((idx, &g), &w) in got.indexed_iter().zip(want.iter()) {
            assert!(
                (g as f64 - w).abs() <= 1e-5 * w.abs().max(1.0),
                "case {case} shape {shape:?} spacing {sp:?} at {idx:?}: {g} vs brute force {w}"
            );
        }
        // The unsigned transform is the outside half.
        let e = edt(m.view(), SpacingIjk(sp));
        for (&g, &w) in e.iter().zip(want.iter()) {
            assert!((g as f64 - w.max(0.0)).abs() <= 1e-5 * w.abs().max(1.0));
        }
    }
}

#[test]
fn sphere_on_anisotropic_grid() {
    // Array [k, j, i] = [30, 40, 60], spacing (si, sj, sk) = (0.7, 1.1, 1.6) mm.
    let sp = [0.7, 1.1, 1.6];
    let (nk, nj, ni) = (30, 40, 60);
    let c = [ni as f64 * sp[0] / 2.0, nj as f64 * sp[1] / 2.0, nk as f64 * sp[2] / 2.0];
    let r = 15.0;
    let rho = |k: usize, j: usize, i: usize| {
        let (x, y, z) = (i as f64 * sp[0] - c[0], j as f64 * sp[1] - c[1], k as f64 * sp[2] - c[2]);
        (x * x + y * y + z * z).sqrt()
    };
    let m = Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| rho(k, j, i) <= r);
    let d = sdf(m.view(), SpacingIjk(sp));
    // Voxel-centre convention: outside voxels measure to inside centres, so the field is
    // |x| − r shifted outward by up to one voxel diagonal (inward inside). Centring that band:
    // within half a voxel diagonal of |x| − r.
    let half_diag = 0.5 * (sp[0] * sp[0] + sp[1] * sp[1] + sp[2] * sp[2]).sqrt();
    let mut worst: f64 = 0.0;
    for ((k, j, i), &v) in d.indexed_iter() {
        let want = rho(k, j, i) - r;
        let v = v as f64;
        assert_eq!(v < 0.0, m[[k, j, i]], "sign at {k},{j},{i}");
        let centred = v - v.signum() * half_diag;
        worst = worst.max((centred - want).abs());
    }
    assert!(worst <= half_diag + 1e-4, "worst {worst} > {half_diag}");
    // Far from the sphere the band is much tighter than a voxel: a corner voxel.
    let corner = d[[0, 0, 0]] as f64;
    assert!((corner - (rho(0, 0, 0) - r)).abs() < 0.5, "corner {corner} vs {}", rho(0, 0, 0) - r);
}

fn refs() -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("tests/data/shape_refs/refs.json")).expect("refs.json"))
        .expect("json")
}

#[test]
fn matches_scipy_on_the_liver() {
    let labels = sam3d_studio::volume::open_labels(&root().join("assets/demo/labels.nii.gz")).expect("demo labels");
    let r = refs();
    for case in r["sdf"].as_array().expect("sdf") {
        let sp: Vec<f64> = case["spacing_ijk"].as_array().expect("sp").iter().map(|x| x.as_f64().expect("f")).collect();
        let label = case["label"].as_u64().expect("label") as u16;
        let d = sdf(labels.mask(label).view(), SpacingIjk([sp[0], sp[1], sp[2]]));
        let ijk = case["ijk"].as_array().expect("ijk");
        let vals = case["values"].as_array().expect("values");
        for (p, v) in ijk.iter().zip(vals) {
            let p: Vec<usize> = p.as_array().expect("p").iter().map(|x| x.as_u64().expect("u") as usize).collect();
            let want = v.as_f64().expect("v");
            // nibabel index (i, j, k) is our array index [k, j, i].
            let got = d[[p[2], p[1], p[0]]] as f64;
            assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{}: at ijk {p:?}: {got} vs scipy {want}", case["name"]);
        }
        let (mn, mx) = d.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |a, &x| (a.0.min(x as f64), a.1.max(x as f64)));
        let mean = d.iter().map(|&x| x as f64).sum::<f64>() / d.len() as f64;
        assert!((mn - case["min"].as_f64().expect("min")).abs() < 1e-3);
        assert!((mx - case["max"].as_f64().expect("max")).abs() < 1e-3);
        assert!((mean - case["mean"].as_f64().expect("mean")).abs() < 1e-3 * mean.abs().max(1.0));
    }
}

#[test]
fn per_class_channels_equal_single_class_fields() {
    let labels = sam3d_studio::volume::open_labels(&root().join("assets/demo/labels.nii.gz")).expect("demo labels");
    let classes = [5u16, 1, 2];
    let sp = labels.spacing_mm();
    let all = sdf_classes(labels.data.view(), &classes, SpacingIjk(sp));
    assert_eq!(all.shape(), &[3, labels.data.shape()[0], labels.data.shape()[1], labels.data.shape()[2]]);
    for (c, &l) in classes.iter().enumerate() {
        let one = sdf_of_labels(&labels, Some(l));
        assert!(one.same_grid(&labels, 0.0));
        assert_eq!(all.index_axis(Axis(0), c), one.data, "class {l}");
    }
}

#[test]
fn sdf_cli_writes_a_float_volume_on_the_same_grid() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("sdf.nii.gz");
    let src = root().join("assets/demo/labels.nii.gz");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_sam3d-studio"))
        .args(["sdf", src.to_str().expect("p"), out.to_str().expect("p"), "--label", "5"])
        .output()
        .expect("run");
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let v = sam3d_studio::volume::open(&out).expect("read back");
    let labels = sam3d_studio::volume::open_labels(&src).expect("labels");
    assert!(v.same_grid(&labels, 1e-4));
    let m = labels.mask(5);
    assert!(v.data.iter().zip(m.iter()).all(|(&d, &inside)| (d < 0.0) == inside));
    // An absent label is a one-line error naming the file.
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_sam3d-studio"))
        .args(["sdf", src.to_str().expect("p"), out.to_str().expect("p"), "--label", "999"])
        .output()
        .expect("run");
    assert!(!st.status.success());
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(err.contains("labels.nii.gz") && err.contains("999"), "{err}");
}
