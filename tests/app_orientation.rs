//! Orientation letters and pixel placement for RAS, LPS and oblique volumes: the same anatomy
//! lands on the same screen side whatever the storage order. Oracles: the files' affines
//! (nibabel facts in tests/data/nifti_cases/facts.json) and hand-derived letters.

use nalgebra::{Matrix3, Vector3};
use sam3d_studio::app::slice_image::{SliceScratch, render_slice};
use sam3d_studio::geometry::{DisplayConvention, GridShape, RasFromVoxel, SliceGeometry, ViewPlane};
use sam3d_studio::volume::intensity::Window;
use sam3d_studio::volume::{OnGrid, Volume};
use std::path::PathBuf;

fn case(name: &str) -> Volume {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/nifti_cases").join(name);
    sam3d_studio::volume::open(&p).expect("test file loads")
}

fn letters(a: &RasFromVoxel, shape: GridShape, conv: DisplayConvention) -> [[char; 4]; 3] {
    ViewPlane::ALL.map(|p| SliceGeometry::new(p, a, shape, conv).edge_letters())
}

/// (left, right, top, bottom) for axial, coronal, sagittal in the radiological convention.
const RADIOLOGICAL: [[char; 4]; 3] = [['R', 'L', 'A', 'P'], ['R', 'L', 'S', 'I'], ['A', 'P', 'S', 'I']];
const NEUROLOGICAL: [[char; 4]; 3] = [['L', 'R', 'A', 'P'], ['L', 'R', 'S', 'I'], ['A', 'P', 'S', 'I']];

#[test]
fn ras_lps_and_permuted_files_show_the_same_letters() {
    for name in ["lps.nii.gz", "las.nii", "coronal.nii.gz", "oblique30.nii.gz", "qfac_neg.nii"] {
        let v = case(name);
        assert_eq!(letters(&v.ras_from_voxel, v.shape(), DisplayConvention::Radiological), RADIOLOGICAL, "{name}");
        assert_eq!(letters(&v.ras_from_voxel, v.shape(), DisplayConvention::Neurological), NEUROLOGICAL, "{name}");
    }
}

#[test]
fn lps_pixels_are_where_the_letters_say() {
    // lps.nii.gz: i runs towards L, j towards P (affine diag(-0.9, -0.9, 3)).
    let v = case("lps.nii.gz");
    let win = Window { level: 0.0, width: 1.0 };
    let g = SliceGeometry::new(ViewPlane::Axial, &v.ras_from_voxel, v.shape(), DisplayConvention::Radiological);
    let mut px = Vec::new();
    let [w, h] = render_slice(&v, &g, 2, win, None, &mut SliceScratch::default(), &mut px);
    assert_eq!([w, h], [7, 6]);
    // Top-left pixel is the most right and most anterior voxel: i = 0 (R-most), j = 0 (A-most).
    let ras = |c: usize, r: usize| {
        let [i, j, k] = g.voxel_of_pixel(c, r, 2);
        v.ras_from_voxel.apply(sam3d_studio::geometry::VoxelIjk::new(i as f64, j as f64, k as f64))
    };
    assert_eq!(g.voxel_of_pixel(0, 0, 2), [0, 0, 2]);
    assert!(ras(0, 0).x() > ras(w - 1, 0).x(), "left of screen is patient right");
    assert!(ras(0, 0).y() > ras(0, h - 1).y(), "top of screen is anterior");
}

#[test]
fn oblique_letters_follow_the_nearest_axis() {
    // Rotated 60° about S: voxel i points mostly A, j mostly L. Voxel-aligned views show the
    // voxel planes; the letters name the world direction nearest to each screen direction.
    let (s, c) = (60f64.to_radians().sin(), 60f64.to_radians().cos());
    let rot = Matrix3::new(c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0);
    let a = RasFromVoxel::from_parts(rot * Matrix3::from_diagonal(&Vector3::new(1.0, 1.0, 2.0)), Vector3::zeros());
    let shape = GridShape::new(20, 20, 10);
    assert_eq!(letters(&a, shape, DisplayConvention::Radiological), RADIOLOGICAL);
    let ax = SliceGeometry::new(ViewPlane::Axial, &a, shape, DisplayConvention::Radiological);
    assert_eq!((ax.u_axis, ax.v_axis, ax.n_axis), (1, 0, 2), "j across the screen, i up it");
    // Tilted 40° about R (under 45°): axial stays axial, letters unchanged.
    let (s, c) = (40f64.to_radians().sin(), 40f64.to_radians().cos());
    let tilt = Matrix3::new(1.0, 0.0, 0.0, 0.0, c, -s, 0.0, s, c);
    let b = RasFromVoxel::from_parts(tilt, Vector3::zeros());
    assert_eq!(letters(&b, shape, DisplayConvention::Radiological), RADIOLOGICAL);
    // Tilted 50° about R: j = (0, .64, .77) is now nearest S and k = (0, -.77, .64) nearest P,
    // so the axial view shows the i-k voxel plane and the coronal one the i-j plane.
    let (s, c) = (50f64.to_radians().sin(), 50f64.to_radians().cos());
    let tilt = Matrix3::new(1.0, 0.0, 0.0, 0.0, c, -s, 0.0, s, c);
    let b = RasFromVoxel::from_parts(tilt, Vector3::zeros());
    let ax = SliceGeometry::new(ViewPlane::Axial, &b, shape, DisplayConvention::Radiological);
    let cor = SliceGeometry::new(ViewPlane::Coronal, &b, shape, DisplayConvention::Radiological);
    assert_eq!((ax.n_axis, cor.n_axis), (1, 2));
    assert_eq!(letters(&b, shape, DisplayConvention::Radiological), RADIOLOGICAL);
}
