//! Click preprocessing (`data::click`): geometry of the slice, pointmap and output cube, LPS vs
//! RAS storage, and SDF → source-grid mask.

use nalgebra::{Matrix3, Vector3};
use ndarray::Array3;
use sam3d_studio::data::click::{
    ClickError, ClickParams, ContextParams, PreparedVolume, click_prior_mask, masked_pointmap, prepare_click, sdf_to_source_mask,
};
use sam3d_studio::geometry::{Point3, RasFromVoxel, RasMm, ViewPlane, VoxelIjk};
use sam3d_studio::volume::{Modality, OnGrid, Volume};
use std::sync::Arc;

const PARAMS: ClickParams = ClickParams {
    image_size: 24,
    spacing_mm: 2.5,
    cube_mm: 60.0,
    grid: 12,
    ct_window_hu: [-200.0, 300.0],
    prior_radius_px: 2.0,
    context: Some(ContextParams { size: 8, guide: false }),
};

/// A smooth, asymmetric CT-like field in world coordinates, so any orientation mix-up shows.
fn field(p: RasMm) -> f32 {
    (-100.0 + 3.0 * p.x() - 2.0 * p.y() + 1.5 * p.z() + 0.02 * p.x() * p.y()) as f32
}

/// RAS-stored volume, anisotropic, slightly oblique.
fn ras_volume() -> Volume {
    let (s, c) = (10f64.to_radians().sin(), 10f64.to_radians().cos());
    let rot = Matrix3::new(c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0);
    let lin = rot * Matrix3::from_diagonal(&Vector3::new(1.5, 1.8, 3.0));
    let a = RasFromVoxel::from_parts(lin, Vector3::new(-40.0, -50.0, -45.0));
    let (ni, nj, nk) = (56, 50, 32);
    let data = Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| field(a.apply(VoxelIjk::new(i as f64, j as f64, k as f64))));
    Volume::new(data, a).expect("volume")
}

/// The same scan stored LPS: i and j reversed, the affine adjusted to keep every voxel's place.
fn lps_copy(v: &Volume) -> Volume {
    let sh = v.shape();
    let flip = RasFromVoxel::from_parts(
        Matrix3::from_diagonal(&Vector3::new(-1.0, -1.0, 1.0)),
        Vector3::new(sh.ni as f64 - 1.0, sh.nj as f64 - 1.0, 0.0),
    )
    .relabel();
    let a: RasFromVoxel = v.ras_from_voxel * flip;
    let mut data = v.data.clone();
    data.invert_axis(ndarray::Axis(2));
    data.invert_axis(ndarray::Axis(1));
    Volume::new(data, a).expect("volume")
}

fn prepared(v: Volume) -> PreparedVolume {
    PreparedVolume::new(Arc::new(v), Some(Modality::Ct), PARAMS.ct_window_hu).expect("prepare")
}

#[test]
fn slice_geometry_image_and_pointmap() {
    let vol = ras_volume();
    let click = vol.ras_from_voxel.apply(VoxelIjk::new(27.3, 24.8, 15.2));
    let pv = prepared(vol.clone());
    for plane in ViewPlane::ALL {
        let smp = prepare_click(&pv, click, plane, &PARAMS).expect("inside");
        let n = PARAMS.image_size;
        assert_eq!(smp.image.dim(), (n, n));
        assert_eq!(smp.pointmap_full.shape(), &[3, n, n]);
        let pix = |c: usize, r: usize| smp.ras_from_pixel.apply(Point3::new(c as f64, r as f64, 0.0));
        // Centred on the click: the four central pixels average to it.
        let h = n / 2;
        let centre = (pix(h - 1, h - 1).v + pix(h, h - 1).v + pix(h - 1, h).v + pix(h, h).v) / 4.0;
        assert!((centre - click.v).norm() < 1e-9, "{plane:?}");
        // Pixels are s apart and every pixel lies in the world plane through the click.
        assert!((pix(1, 0).distance(&pix(0, 0)) - PARAMS.spacing_mm).abs() < 1e-9);
        assert!((pix(0, 1).distance(&pix(0, 0)) - PARAMS.spacing_mm).abs() < 1e-9);
        let axis = plane.normal_world_axis();
        // Row 0 is the top: superior (coronal, sagittal) or anterior (axial).
        let up = if plane == ViewPlane::Axial { 1 } else { 2 };
        assert!(pix(0, 0).v[up] > pix(0, n - 1).v[up], "{plane:?}: row 0 must be the top");
        let half_l = PARAMS.cube_mm / 2.0;
        for (c, r) in [(0, 0), (3, 17), (n - 1, 5), (12, 12), (n - 1, n - 1)] {
            let p = pix(c, r);
            assert!((p.v[axis] - click.v[axis]).abs() < 1e-9, "{plane:?}: pixel off the plane");
            // Pointmap = (RAS − click) / (L/2).
            for k in 0..3 {
                let want = (p.v[k] - click.v[k]) / half_l;
                assert!((smp.pointmap_full[[k, r, c]] as f64 - want).abs() < 1e-5, "{plane:?} ({c},{r}) ch {k}");
            }
            // Image = the volume's trilinear value there, windowed (independently via sample_ras).
            let raw = vol.sample_ras(p).unwrap_or(pv.fill_raw);
            let want = (raw.clamp(-200.0, 300.0) + 200.0) / 500.0;
            assert!((smp.image[[r, c]] - want).abs() < 1e-5, "{plane:?} ({c},{r}): {} vs {want}", smp.image[[r, c]]);
        }
        // The output cube: centred on the click, cells of L/G, aligned with the slice frame.
        let g = PARAMS.grid as f64;
        let mid = smp.ras_from_grid.apply(Point3::new((g - 1.0) / 2.0, (g - 1.0) / 2.0, (g - 1.0) / 2.0));
        assert!(mid.distance(&click) < 1e-9);
        let cols = smp.ras_from_grid.column_norms();
        assert!(cols.iter().all(|c| (c - PARAMS.cube_mm / g).abs() < 1e-9), "{cols:?}");
        let u_grid = smp.ras_from_grid.linear().column(0).normalize();
        let u_pix = smp.ras_from_pixel.linear().column(0).normalize();
        assert!((u_grid - u_pix).norm() < 1e-12);
        assert_eq!(smp.context.as_ref().map(|c| c.shape().to_vec()), Some(vec![8, 8, 8]));
    }
}

#[test]
fn pointmap_is_nan_exactly_outside_the_mask() {
    let vol = ras_volume();
    let click = vol.ras_from_voxel.apply(VoxelIjk::new(20.0, 20.0, 10.0));
    let smp = prepare_click(&prepared(vol), click, ViewPlane::Coronal, &PARAMS).expect("inside");
    let mask = click_prior_mask(PARAMS.image_size, 5.0);
    let inside = mask.iter().filter(|&&m| m).count();
    assert!(inside > 50 && inside < PARAMS.image_size.pow(2));
    let pm = masked_pointmap(&smp.pointmap_full, &mask);
    for ((k, r, c), &x) in pm.indexed_iter() {
        assert_eq!(x.is_nan(), !mask[[r, c]], "channel {k} pixel ({c},{r})");
        if mask[[r, c]] {
            assert_eq!(x, smp.pointmap_full[[k, r, c]]);
        }
    }
}

#[test]
fn lps_and_ras_copies_give_the_same_inputs() {
    let ras = ras_volume();
    let lps = lps_copy(&ras);
    assert_ne!(ras.data, lps.data, "the storage really differs");
    let click = ras.ras_from_voxel.apply(VoxelIjk::new(30.2, 21.7, 14.4));
    let (a, b) = (prepared(ras), prepared(lps));
    for plane in ViewPlane::ALL {
        let sa = prepare_click(&a, click, plane, &PARAMS).expect("ras");
        let sb = prepare_click(&b, click, plane, &PARAMS).expect("lps");
        let d = (&sa.image - &sb.image).mapv(f32::abs).fold(0f32, |m, &x| m.max(x));
        assert!(d < 1e-4, "{plane:?}: image differs by {d}");
        assert_eq!(sa.pointmap_full, sb.pointmap_full, "{plane:?}");
        assert!(sa.ras_from_grid.max_abs_diff(&sb.ras_from_grid) < 1e-12);
        let (ca, cb) = (sa.context.expect("ctx"), sb.context.expect("ctx"));
        let d = (&ca - &cb).mapv(f32::abs).fold(0f32, |m, &x| m.max(x));
        assert!(d < 1e-4, "{plane:?}: context differs by {d}");
    }
}

#[test]
fn guide_cube_holds_the_scan_at_the_sdf_cells() {
    let ras = ras_volume();
    let lps = lps_copy(&ras);
    let click = ras.ras_from_voxel.apply(VoxelIjk::new(30.2, 21.7, 14.4));
    let guided = ClickParams { context: Some(ContextParams { size: 8, guide: true }), ..PARAMS };
    let (a, b) = (prepared(ras), prepared(lps));
    assert!(prepare_click(&a, click, ViewPlane::Axial, &PARAMS).expect("unguided").guide.is_none());
    for plane in ViewPlane::ALL {
        let sa = prepare_click(&a, click, plane, &guided).expect("ras");
        let ga = sa.guide.as_ref().expect("guide cube");
        assert_eq!(ga.shape(), &[PARAMS.grid; 3]);
        let mut varied = 0;
        for ((k, j, i), &v) in ga.indexed_iter() {
            let p = sa.ras_from_grid.apply(Point3::new(i as f64, j as f64, k as f64));
            assert_eq!(v, a.sample_normalised(p), "{plane:?} cell ({i},{j},{k})");
            // The window maps field() linearly inside the volume (trilinear on a near-linear field).
            let q = a.voxel_from_ras().apply(p);
            let inside = q.x() > 0.0 && q.y() > 0.0 && q.z() > 0.0 && q.x() < 55.0 && q.y() < 49.0 && q.z() < 31.0;
            let want = ((field(p).clamp(-200.0, 300.0) + 200.0) / 500.0) as f32;
            if inside && want > 0.0 && want < 1.0 {
                assert!((v - want).abs() < 0.02, "{plane:?} cell ({i},{j},{k}): {v} vs {want}");
                varied += 1;
            }
        }
        assert!(varied > 100, "{plane:?}: only {varied} cells checked against the field");
        let gb = prepare_click(&b, click, plane, &guided).expect("lps").guide.expect("guide");
        let d = (ga - &gb).mapv(f32::abs).fold(0f32, |m, &x| m.max(x));
        assert!(d < 1e-4, "{plane:?}: guide differs by {d} between RAS and LPS storage");
    }
}

#[test]
fn a_click_outside_is_a_clear_error() {
    let vol = ras_volume();
    let pv = prepared(vol);
    let e = prepare_click(&pv, RasMm::new(500.0, 0.0, 0.0), ViewPlane::Axial, &PARAMS).expect_err("outside");
    assert!(matches!(e, ClickError::OutsideVolume { .. }));
    assert!(e.to_string().contains("outside the volume"), "{e}");
    let e = prepare_click(&pv, RasMm::new(f64::NAN, 0.0, 0.0), ViewPlane::Axial, &PARAMS).expect_err("nan");
    assert!(matches!(e, ClickError::NotFinite(_)));
}

#[test]
fn sdf_of_a_sphere_becomes_the_sphere_on_the_source_grid() {
    // Source grid: 1 mm isotropic but permuted/flipped axes; cube from an oblique-free click.
    let lin = Matrix3::new(0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0);
    let a = RasFromVoxel::from_parts(lin, Vector3::new(40.0, -40.0, -40.0));
    let vol = Volume::new(Array3::zeros((80, 80, 80)), a).expect("vol");
    let click = RasMm::new(3.0, -2.0, 1.0);
    let p = ClickParams { image_size: 16, spacing_mm: 4.0, cube_mm: 64.0, grid: 32, context: None, ..PARAMS };
    let smp = prepare_click(&prepared(vol.clone()), click, ViewPlane::Sagittal, &p).expect("inside");
    // SDF (mm) of a sphere of radius 15 mm around the click and of a small far blob.
    let far = RasMm::new(3.0, -2.0 + 27.0, 1.0);
    let g = p.grid;
    let sdf = Array3::from_shape_fn((g, g, g), |(k, j, i)| {
        let q = smp.ras_from_grid.apply(Point3::new(i as f64, j as f64, k as f64));
        (q.distance(&click) - 15.0).min(q.distance(&far) - 3.0) as f32
    });
    let m = sdf_to_source_mask(sdf.view(), &smp.ras_from_grid, vol.shape(), &vol.ras_from_voxel, click);
    assert_eq!(m.data.shape(), vol.data.shape());
    let want = 4.0 / 3.0 * std::f64::consts::PI * 15f64.powi(3);
    let got = m.voxel_count as f64;
    assert!((got - want).abs() / want < 0.03, "sphere: {got} voxels vs {want:.0}");
    assert!((m.volume_ml - got / 1000.0).abs() < 1e-9);
    // The far blob is not connected to the click's component.
    let far_idx = vol.index_of_ras(far).expect("inside");
    assert_eq!(m.data[far_idx.as_kji()], 0);
    let click_idx = vol.index_of_ras(click).expect("inside");
    assert_eq!(m.data[click_idx.as_kji()], 1);
    // Every set voxel is within the sphere (+ half a voxel diagonal).
    for ((k, j, i), &x) in m.data.indexed_iter() {
        if x != 0 {
            let q = vol.ras_from_voxel.apply(VoxelIjk::new(i as f64, j as f64, k as f64));
            assert!(q.distance(&click) < 15.0 + 0.9, "{q:?}");
        }
    }
}
