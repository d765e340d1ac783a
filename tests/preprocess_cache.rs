//! Preprocessing: pairing, sample counts per sampling method, cached arrays, and the samples
//! built from the cache (image / mask / pointmap / SDF shapes and the NaN rule).

use sam3d_studio::data::click::ClickParams;
use sam3d_studio::data::preprocess::{
    SliceSampling, UNIFORM_PER_AXIS, find_pairs, parse_shard, preprocess_dir, read_case, sample_click, slices_with,
};
use sam3d_studio::data::train_samples::{Similarity, TrainCase, make_sample};
use sam3d_engine::engine::train::write_phantoms;
use sam3d_studio::volume::{Modality, OnGrid};
use std::sync::Arc;

fn params() -> ClickParams {
    ClickParams { image_size: 32, spacing_mm: 6.0, cube_mm: 192.0, grid: 16, ct_window_hu: [-160.0, 240.0], prior_radius_px: 1.5, context: None }
}

#[test]
fn sample_counts_shapes_and_pointmap_nan_rule() {
    let tmp = tempfile::tempdir().expect("tmp");
    let input = tmp.path().join("in");
    write_phantoms(&input, 2, 5, Modality::Ct).expect("phantoms");
    let pairs = find_pairs(&input).expect("pairs");
    assert_eq!(pairs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["case_000", "case_001"]);

    let out_all = tmp.path().join("all");
    let idx_all = preprocess_dir(&input, &out_all, 4.0, SliceSampling::All, None, None, &|| {}).expect("all");
    assert_eq!(idx_all.cases.len(), 2);
    let mut expect_all = 0;
    let mut expect_uniform = 0;
    let mut n_classes = 0;
    for (name, file) in &idx_all.cases {
        let c = read_case(&out_all.join(file)).expect("read back");
        // Isotropic, SDF is C×D×H×W on the same grid.
        let sp = c.volume.spacing_mm();
        assert!(sp.iter().all(|s| (s - 4.0).abs() < 1e-6), "{name}: spacing {sp:?}");
        let sh = c.volume.data.shape().to_vec();
        assert_eq!(c.sdf.shape(), &[c.classes.len(), sh[0], sh[1], sh[2]]);
        assert_eq!(c.labels.data.shape(), sh.as_slice());
        assert!(c.classes.len() >= 5);
        // SDF sign = label membership.
        for (ci, &l) in c.classes.iter().enumerate() {
            let ch = c.sdf.index_axis(ndarray::Axis(0), ci);
            ndarray::Zip::from(&ch).and(&c.labels.data).for_each(|&d, &v| assert_eq!(d < 0.0, v == l));
        }
        n_classes += c.classes.len();
        for &l in &c.classes {
            for ax in 0..3 {
                let n = slices_with(&c.labels.data, l, ax).len();
                expect_all += n;
                expect_uniform += n.min(UNIFORM_PER_AXIS);
            }
        }
    }
    assert_eq!(idx_all.samples.len(), expect_all);
    let idx_c = preprocess_dir(&input, &tmp.path().join("c"), 4.0, SliceSampling::Central, None, None, &|| {}).expect("central");
    assert_eq!(idx_c.samples.len(), 3 * n_classes);
    let idx_u = preprocess_dir(&input, &tmp.path().join("u"), 4.0, SliceSampling::Uniform, None, None, &|| {}).expect("uniform");
    assert_eq!(idx_u.samples.len(), expect_uniform);
    let idx_r = preprocess_dir(&input, &tmp.path().join("r"), 4.0, SliceSampling::RandomAxis, Some(3), None, &|| {}).expect("random");
    // --classes 3: three classes per case, each on one axis with all its slices.
    let mut per: std::collections::BTreeMap<(String, u16), Vec<usize>> = Default::default();
    for s in &idx_r.samples {
        per.entry((s.case.clone(), s.class)).or_default().push(s.axis);
    }
    assert_eq!(per.len(), 6);
    for ((case, class), axes) in &per {
        assert!(axes.iter().all(|a| *a == axes[0]), "{case}/{class}: more than one axis");
        let c = read_case(&tmp.path().join("r").join(format!("{case}.safetensors"))).expect("case");
        assert_eq!(axes.len(), slices_with(&c.labels.data, *class, axes[0]).len());
    }
    // A shard holds every other case.
    assert_eq!(parse_shard("1/2"), Ok((1, 2)));
    assert!(parse_shard("2/2").is_err());
    let idx_s = preprocess_dir(&input, &tmp.path().join("s"), 4.0, SliceSampling::Central, None, Some((1, 2)), &|| {}).expect("shard");
    assert_eq!(idx_s.cases.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), ["case_001"]);
    assert!(tmp.path().join("s/index-1-of-2.json").exists());

    // Samples built from the cache: shapes, normalised image, binary mask, NaN rule.
    let p = params();
    let (name, file) = &idx_c.cases[0];
    let c = read_case(&tmp.path().join("c").join(file)).expect("case");
    let tc = TrainCase::new(name, Arc::new(c.volume.clone()), c.labels.clone(), Some(Modality::Ct), &[]);
    let mut checked = 0;
    for s in idx_c.samples.iter().filter(|s| &s.case == name) {
        let (click, plane) = sample_click(&c, s).expect("click on the slice");
        assert_eq!(c.labels.data[c.labels.index_of_ras(click).map(|a| [a.k, a.j, a.i]).expect("inside")], s.class);
        let ci = tc.classes.iter().position(|&l| l == s.class).expect("class");
        let smp = make_sample(&tc, ci, click, plane, &Similarity::identity(click), (1.0, 0.0), &p).expect("sample");
        assert_eq!(smp.image.dim(), (32, 32));
        assert!(smp.image.iter().all(|v| (0.0..=1.0).contains(v)), "CT image not in 0..1");
        assert_eq!(smp.pointmap.shape(), &[3, 32, 32]);
        assert_eq!(smp.sdf.shape(), &[16, 16, 16]);
        assert!(smp.mask.iter().all(|&m| m == 0.0 || m == 1.0));
        // The click lies between the four central pixels, 3·√2 mm from each: when it is deeper
        // than that (plus a voxel for the label grid), they are all inside the mask.
        if tc.sdf_at(ci, click) < -(3.0 * 2f32.sqrt() + 4.0) {
            for px in [[15, 15], [15, 16], [16, 15], [16, 16]] {
                assert_eq!(smp.mask[px], 1.0, "central pixel {px:?} outside the mask");
            }
        }
        for r in 0..32 {
            for col in 0..32 {
                let finite = (0..3).all(|k| smp.pointmap[[k, r, col]].is_finite());
                let nan = (0..3).all(|k| smp.pointmap[[k, r, col]].is_nan());
                assert!(finite || nan);
                assert_eq!(finite, smp.mask[[r, col]] == 1.0, "pixel ({r}, {col})");
            }
        }
        // The SDF target (units of L/2 = 96 mm) is 1-Lipschitz up to the voxel SDF's jump of
        // one voxel (4 mm) across the surface: the centre cells lie √3·6 mm from the click,
        // whose own SDF is negative.
        let at_click = tc.sdf_at(ci, click);
        assert!(at_click < 0.0);
        for cell in [[7, 7, 7], [8, 8, 8], [7, 8, 7]] {
            let d = smp.sdf[cell] * 96.0;
            assert!((d - at_click).abs() <= 3f32.sqrt() * 6.0 + 4.0 + 0.1, "cell {cell:?}: {d} mm vs {at_click} mm at the click");
        }
        checked += 1;
    }
    assert_eq!(checked, 3 * tc.classes.len());
}
