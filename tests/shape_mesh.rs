//! Meshes: watertight and outward on analytic shapes (sphere, torus, touching blobs, shapes cut
//! by the grid border) and on the real liver label, through straight, oblique and flipped
//! affines; area and volume against closed forms; smoothing, decimation and export.

use nalgebra::{Matrix3, Vector3};
use ndarray::Array3;
use sam3d_studio::data::click::sdf_to_source_mask;
use sam3d_studio::geometry::{GridShape, Point3, RasFromGrid, RasFromVoxel, RasMm, VoxelIjk};
use sam3d_studio::shape::{Inside, Mesh, MeshObject, MeshSpace, mesh_from_field, mesh_from_mask, mesh_of_label, mesh_of_labels, mesh_of_mask_blocks, sdf_component_on_grid, write_mesh};
use sam3d_studio::volume::OnGrid;
use std::f64::consts::PI;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Anisotropic, axis-aligned: spacing (0.7, 1.1, 1.6) mm.
fn straight() -> RasFromVoxel {
    RasFromVoxel::scale_translate([0.7, 1.1, 1.6], [-20.0, 10.0, 5.0])
}

/// Oblique (30° about z, 10° about x) with a flipped j axis: negative determinant.
fn oblique_flipped() -> RasFromVoxel {
    let (s, c) = (30f64.to_radians().sin(), 30f64.to_radians().cos());
    let rz = Matrix3::new(c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0);
    let (s2, c2) = (10f64.to_radians().sin(), 10f64.to_radians().cos());
    let rx = Matrix3::new(1.0, 0.0, 0.0, 0.0, c2, -s2, 0.0, s2, c2);
    let lin = rz * rx * Matrix3::from_diagonal(&Vector3::new(0.7, -1.1, 1.6));
    RasFromVoxel::from_parts(lin, Vector3::new(100.0, -50.0, 30.0))
}

/// LPS-like storage: i and j both flipped (determinant positive), plus a k flip (negative).
fn flipped_k() -> RasFromVoxel {
    RasFromVoxel::scale_translate([-0.7, -1.1, -1.6], [40.0, 60.0, 50.0])
}

const SHAPE: (usize, usize, usize) = (30, 40, 60); // [k, j, i]

fn centre_voxel() -> VoxelIjk {
    VoxelIjk::new(SHAPE.2 as f64 / 2.0 - 0.3, SHAPE.1 as f64 / 2.0 + 0.2, SHAPE.0 as f64 / 2.0 - 0.1)
}

/// Field over the grid from a function of the voxel centre's RAS position.
fn field(a: &RasFromVoxel, f: impl Fn(RasMm) -> f64) -> Array3<f32> {
    Array3::from_shape_fn(SHAPE, |(k, j, i)| f(a.apply(VoxelIjk::new(i as f64, j as f64, k as f64))) as f32)
}

fn sphere_sdf(a: &RasFromVoxel, r: f64) -> Array3<f32> {
    let c = a.apply(centre_voxel());
    field(a, |p| p.distance(&c) - r)
}

fn assert_watertight(m: &Mesh, what: &str) {
    let e = m.edge_report();
    assert!(!m.triangles.is_empty(), "{what}: empty mesh");
    assert!(e.is_watertight(), "{what}: {e:?}");
    // Closed manifold: every edge in two faces, so 2E = 3F.
    assert_eq!(2 * e.edges, 3 * m.triangles.len(), "{what}");
}

fn assert_outward_from(m: &Mesh, c: RasMm, what: &str) {
    for t in 0..m.triangles.len() {
        let n = m.face_normal(t);
        let tri = m.triangles[t];
        let cen: Vec<f64> = (0..3).map(|d| tri.iter().map(|&v| m.vertices[v as usize][d] as f64).sum::<f64>() / 3.0).collect();
        let out = [cen[0] - c.x(), cen[1] - c.y(), cen[2] - c.z()];
        let dot = n[0] as f64 * out[0] + n[1] as f64 * out[1] + n[2] as f64 * out[2];
        assert!(dot > 0.0 || n == [0.0; 3], "{what}: triangle {t} points inward");
    }
}

#[test]
fn sphere_from_sdf_matches_closed_forms_for_every_affine() {
    let r = 15.0;
    for (name, a) in [("straight", straight()), ("oblique+flipped", oblique_flipped()), ("flipped k", flipped_k())] {
        let c = a.apply(centre_voxel());
        let m = mesh_from_field(sphere_sdf(&a, r).view(), 0.0, Inside::Below, &a);
        assert_watertight(&m, name);
        assert_outward_from(&m, c, name);
        // Vertices lie on the sphere (linear interpolation of an exact distance).
        for v in &m.vertices {
            let d = RasMm::new(v[0] as f64, v[1] as f64, v[2] as f64).distance(&c);
            assert!((d - r).abs() < 0.05, "{name}: vertex at radius {d}");
        }
        let (vol, area) = (m.volume_mm3(), m.area_mm2());
        let (want_v, want_a) = (4.0 / 3.0 * PI * r.powi(3), 4.0 * PI * r * r);
        assert!((vol / want_v - 1.0).abs() < 0.02, "{name}: volume {vol} vs {want_v}");
        assert!((area / want_a - 1.0).abs() < 0.02, "{name}: area {area} vs {want_a}");
        // Iso-level is configurable: the 2 mm level set is the sphere of radius 17.
        let m2 = mesh_from_field(sphere_sdf(&a, r).view(), 2.0, Inside::Below, &a);
        assert!((m2.volume_mm3() / (4.0 / 3.0 * PI * 17f64.powi(3)) - 1.0).abs() < 0.02, "{name}: iso 2");
    }
}

#[test]
fn sphere_from_mask_and_its_smoothing() {
    let r = 15.0;
    for (name, a) in [("straight", straight()), ("oblique+flipped", oblique_flipped())] {
        let c = a.apply(centre_voxel());
        let mask = sphere_sdf(&a, r).mapv(|d| d <= 0.0);
        let voxel_mm3 = a.determinant().abs();
        let count = mask.iter().filter(|&&b| b).count() as f64;
        let mut m = mesh_from_mask(mask.view(), &a);
        assert_watertight(&m, name);
        assert_outward_from(&m, c, name);
        let want_v = 4.0 / 3.0 * PI * r.powi(3);
        // Midpoint surface of the voxels: volume close to the voxel count's, and to the ball's.
        assert!((m.volume_mm3() / (count * voxel_mm3) - 1.0).abs() < 0.03, "{name}: {} vs {}", m.volume_mm3(), count * voxel_mm3);
        assert!((m.volume_mm3() / want_v - 1.0).abs() < 0.04, "{name}: volume {}", m.volume_mm3());
        // The staircase overestimates the area; Taubin smoothing brings it back near 4πr².
        let want_a = 4.0 * PI * r * r;
        let rough = m.area_mm2();
        m.taubin_smooth(20);
        assert_watertight(&m, name);
        let smooth = m.area_mm2();
        assert!(smooth < rough, "{name}: smoothing must reduce the staircase area");
        assert!((smooth / want_a - 1.0).abs() < 0.04, "{name}: smoothed area {smooth} vs {want_a}");
        assert!((m.volume_mm3() / want_v - 1.0).abs() < 0.04, "{name}: smoothed volume {}", m.volume_mm3());
    }
}

#[test]
fn torus_blobs_and_border_cuts_are_watertight() {
    let a = straight();
    let c = a.apply(centre_voxel());
    // Torus around z: major radius 12, minor 4.
    let torus = field(&a, |p| {
        let (x, y, z) = (p.x() - c.x(), p.y() - c.y(), p.z() - c.z());
        let q = ((x * x + y * y).sqrt() - 12.0).hypot(z);
        q - 4.0
    });
    let m = mesh_from_field(torus.view(), 0.0, Inside::Below, &a);
    assert_watertight(&m, "torus");
    let want = 2.0 * PI * PI * 12.0 * 16.0;
    assert!((m.volume_mm3() / want - 1.0).abs() < 0.03, "torus volume {} vs {want}", m.volume_mm3());
    // Euler characteristic of a torus: V − E + F = 0.
    let e = m.edge_report();
    assert_eq!(m.vertices.len() as i64 - e.edges as i64 + m.triangles.len() as i64, 0);
    let tmask = torus.mapv(|d| d <= 0.0);
    assert_watertight(&mesh_from_mask(tmask.view(), &a), "torus mask");

    // Two spheres that just touch, as masks and as the union field.
    let c2 = RasMm::new(c.x() + 16.0, c.y(), c.z());
    let two = field(&a, |p| (p.distance(&c) - 8.0).min(p.distance(&c2) - 8.0));
    assert_watertight(&mesh_from_field(two.view(), 0.0, Inside::Below, &a), "touching spheres");
    assert_watertight(&mesh_from_mask(two.mapv(|d| d <= 0.0).view(), &a), "touching sphere masks");

    // Voxels touching only along an edge or at a corner, and a checkerboard: the ambiguous cases.
    for contact in [[2, 2, 2], [1, 2, 2], [2, 1, 2], [2, 2, 1]] {
        let mut two = Array3::from_elem((4, 4, 4), false);
        two[[1, 1, 1]] = true;
        two[contact] = true; // shares only a corner or only an edge with [1, 1, 1]
        let m = mesh_from_mask(two.view(), &a);
        assert_watertight(&m, &format!("voxels touching at {contact:?}"));
        // Kept apart: two separate closed pieces (Euler characteristic 2 each).
        let e = m.edge_report();
        assert_eq!(m.vertices.len() as i64 - e.edges as i64 + m.triangles.len() as i64, 4, "{contact:?}");
    }
    let checker = Array3::from_shape_fn((6, 7, 8), |(k, j, i)| (k + j + i) % 2 == 0);
    assert_watertight(&mesh_from_mask(checker.view(), &a), "checkerboard");
    let mut rng = 7u64;
    for fill in [0.2, 0.35, 0.5, 0.65, 0.8] {
        let random = Array3::from_shape_fn((20, 21, 22), |_| {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((rng >> 11) as f64 / (1u64 << 53) as f64) < fill
        });
        let m = mesh_from_mask(random.view(), &a);
        assert_watertight(&m, &format!("random voxels, fill {fill}"));
        assert!(m.volume_mm3() > 0.0);
    }

    // A sphere cut by the grid border is closed by the padding; so is a full grid.
    let cut = field(&a, |p| p.distance(&a.apply(VoxelIjk::new(0.0, 0.0, 0.0))) - 10.0);
    let m = mesh_from_field(cut.view(), 0.0, Inside::Below, &a);
    assert_watertight(&m, "sphere cut by the border");
    assert!(m.volume_mm3() > 0.0);
    let full = Array3::from_elem((3, 4, 5), true);
    let m = mesh_from_mask(full.view(), &a);
    assert_watertight(&m, "full grid");
    // The box surface lies half a voxel beyond the outer centres: (n)·spacing per side,
    // minus the chamfers of the 12 edges and 8 corners of a midpoint surface.
    assert!(m.volume_mm3() < 5.0 * 4.0 * 3.0 * a.determinant().abs());
    assert!(m.volume_mm3() > 0.8 * 5.0 * 4.0 * 3.0 * a.determinant().abs());
}

#[test]
fn real_liver_label() {
    let labels = sam3d_studio::volume::open_labels(&root().join("assets/demo/labels.nii.gz")).expect("demo labels");
    let m = mesh_of_label(&labels, 5);
    assert_watertight(&m, "liver");
    let count = labels.data.iter().filter(|&&l| l == 5).count() as f64;
    let voxel = labels.spacing_mm().iter().product::<f64>();
    assert!((m.volume_mm3() / (count * voxel) - 1.0).abs() < 0.05, "liver {} vs voxels {}", m.volume_mm3(), count * voxel);
    // Vertices lie within the grid's RAS extent (mapped through the real affine).
    let inv = labels.voxel_from_ras();
    let sh = labels.shape();
    for v in &m.vertices {
        let p = inv.apply(RasMm::new(v[0] as f64, v[1] as f64, v[2] as f64));
        assert!(p.x() >= -0.5 && p.x() <= sh.ni as f64 - 0.5 && p.y() >= -0.5 && p.z() <= sh.nk as f64 - 0.5);
    }
    // Every label of the demo map, and their union (labels touching each other), all closed.
    for (l, _) in labels.counts() {
        assert_watertight(&mesh_of_label(&labels, l), &format!("demo label {l}"));
    }
    assert_watertight(&mesh_of_labels(&labels, |l| l != 0), "union of the demo labels");
    let mut d = m.clone();
    d.decimate(0.25);
    assert_watertight(&d, "decimated liver");
    let ratio = d.triangles.len() as f64 / m.triangles.len() as f64;
    assert!(ratio < 0.3 && ratio > 0.2, "decimated to {ratio}");
    assert!((d.volume_mm3() / m.volume_mm3() - 1.0).abs() < 0.02, "decimation volume {} vs {}", d.volume_mm3(), m.volume_mm3());
    let mut s = m.clone();
    s.taubin_smooth(10);
    assert_watertight(&s, "smoothed liver");
    assert!((s.volume_mm3() / m.volume_mm3() - 1.0).abs() < 0.03);
}

#[test]
fn decimated_sphere_stays_closed_and_round() {
    let a = oblique_flipped();
    let c = a.apply(centre_voxel());
    let m = mesh_from_field(sphere_sdf(&a, 15.0).view(), 0.0, Inside::Below, &a);
    let mut d = m.clone();
    d.decimate(0.1);
    assert_watertight(&d, "decimated sphere");
    assert_outward_from(&d, c, "decimated sphere");
    assert!(d.triangles.len() as f64 <= 0.11 * m.triangles.len() as f64);
    assert!((d.volume_mm3() / m.volume_mm3() - 1.0).abs() < 0.02);
}

#[test]
fn export_formats_and_lps() {
    let a = straight();
    let m1 = mesh_from_field(sphere_sdf(&a, 6.0).view(), 0.0, Inside::Below, &a);
    let m2 = mesh_from_field(sphere_sdf(&a, 3.0).view(), 0.0, Inside::Below, &a);
    let objs = [MeshObject { label: 1, name: "label_1", mesh: &m1 }, MeshObject { label: 7, name: "label_7", mesh: &m2 }];
    let dir = tempfile::tempdir().expect("tmp");
    let nf = m1.triangles.len() + m2.triangles.len();

    let stl = dir.path().join("a.stl");
    write_mesh(&stl, &objs, MeshSpace::Lps).expect("stl");
    let b = std::fs::read(&stl).expect("read");
    assert_eq!(b.len(), 84 + 50 * nf);
    assert_eq!(u32::from_le_bytes([b[80], b[81], b[82], b[83]]) as usize, nf);
    let f32_at = |o: usize| f32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    // First triangle, first vertex: LPS = (−x, −y, z) of RAS; normal likewise, and still outward.
    let v0 = m1.vertices[m1.triangles[0][0] as usize];
    assert_eq!([f32_at(84 + 12), f32_at(84 + 16), f32_at(84 + 20)], [-v0[0], -v0[1], v0[2]]);
    let n0 = m1.face_normal(0);
    assert_eq!([f32_at(84), f32_at(88), f32_at(92)], [-n0[0], -n0[1], n0[2]]);
    assert_eq!(m1.to_lps().volume_mm3().signum(), 1.0, "LPS keeps outward winding");

    let obj = dir.path().join("a.obj");
    write_mesh(&obj, &objs, MeshSpace::Ras).expect("obj");
    let text = std::fs::read_to_string(&obj).expect("read");
    assert_eq!(text.lines().filter(|l| l.starts_with("o ")).count(), 2);
    assert_eq!(text.lines().filter(|l| l.starts_with("v ")).count(), m1.vertices.len() + m2.vertices.len());
    let faces: Vec<&str> = text.lines().filter(|l| l.starts_with("f ")).collect();
    assert_eq!(faces.len(), nf);
    let last: usize = faces[nf - 1].split_whitespace().last().and_then(|x| x.parse().ok()).expect("idx");
    assert!(last > m1.vertices.len() && last <= m1.vertices.len() + m2.vertices.len(), "second object's indices are offset");

    let ply = dir.path().join("a.ply");
    write_mesh(&ply, &objs, MeshSpace::Ras).expect("ply");
    let b = std::fs::read(&ply).expect("read");
    let end = b.windows(11).position(|w| w == b"end_header\n").expect("header") + 11;
    let header = String::from_utf8_lossy(&b[..end]);
    assert!(header.contains(&format!("element vertex {}", m1.vertices.len() + m2.vertices.len())));
    assert!(header.contains(&format!("element face {nf}")));
    assert_eq!(b.len() - end, 12 * (m1.vertices.len() + m2.vertices.len()) + 15 * nf);
    // The last face carries label 7.
    assert_eq!(u16::from_le_bytes([b[b.len() - 2], b[b.len() - 1]]), 7);

    let bad = dir.path().join("a.vtk");
    let e = write_mesh(&bad, &objs, MeshSpace::Ras).expect_err("unknown extension");
    assert!(e.to_string().contains("a.vtk"));
}

#[test]
fn mesh_cli_every_label_as_obj_objects() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = root().join("assets/demo/labels.nii.gz");
    let out = dir.path().join("all.obj");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_sam3d-studio"))
        .args(["mesh", src.to_str().expect("p"), out.to_str().expect("p"), "--lps", "--smooth", "3"])
        .output()
        .expect("run");
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let labels = sam3d_studio::volume::open_labels(&src).expect("labels");
    let text = std::fs::read_to_string(&out).expect("obj");
    assert_eq!(text.lines().filter(|l| l.starts_with("o ")).count(), labels.counts().len());
    let out = dir.path().join("liver.stl");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_sam3d-studio"))
        .args(["mesh", src.to_str().expect("p"), out.to_str().expect("p"), "--label", "5", "--decimate", "0.5"])
        .output()
        .expect("run");
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    assert!(std::fs::metadata(&out).expect("stl").len() > 84);
}

/// A cube of `g³` grid points over `side_mm`, centred on `centre`, rotated (the model's output
/// cube is aligned with a slice frame, not with the voxels).
fn cube(centre: RasMm, side_mm: f64, g: usize, rotated: bool) -> RasFromGrid {
    let (s, c) = (25f64.to_radians().sin(), 25f64.to_radians().cos());
    let rot = if rotated { Matrix3::new(c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c) * Matrix3::new(1.0, 0.0, 0.0, 0.0, c, -s, 0.0, s, c) } else { Matrix3::identity() };
    let lin = rot * (side_mm / g as f64);
    let half = (g as f64 - 1.0) / 2.0;
    let t = Vector3::new(centre.x(), centre.y(), centre.z()) - lin * Vector3::new(half, half, half);
    RasFromGrid::from_parts(lin, t)
}

fn sdf_on_cube(a: &RasFromGrid, g: usize, f: impl Fn(RasMm) -> f64) -> Array3<f32> {
    Array3::from_shape_fn((g, g, g), |(z, y, x)| f(a.apply(Point3::new(x as f64, y as f64, z as f64))) as f32)
}

/// The cropped component equals the reference postprocess (every voxel of the cube sampled,
/// component through the click, or through the nearest inside voxel) on straight, oblique and
/// flipped grids, with voxels smaller and larger than the SDF's cells, clicks inside either of
/// two blobs joined by a thin neck, outside both, and cubes cut by the grid border.
#[test]
fn sdf_component_equals_the_full_cube_postprocess() {
    let shape = GridShape::from_array_shape(&[SHAPE.0, SHAPE.1, SHAPE.2]);
    let mut cases = 0;
    for (name, a) in [("straight", straight()), ("oblique+flipped", oblique_flipped()), ("flipped k", flipped_k())] {
        let c = a.apply(centre_voxel());
        let b1 = RasMm::new(c.x() - 7.0, c.y() + 1.0, c.z());
        let b2 = RasMm::new(c.x() + 8.0, c.y() - 2.0, c.z() + 3.0);
        let blobs = |p: RasMm| {
            // Two balls and a neck 1.2 mm thick: connected at 4 mm cells, often not at voxels.
            let neck = ((p.y() - c.y()).hypot(p.z() - c.z()) - 0.6).max((p.x() - c.x()).abs() - 8.0);
            (p.distance(&b1) - 5.0).min(p.distance(&b2) - 4.0).min(neck)
        };
        for (side, g) in [(40.0, 10), (48.0, 16), (30.0, 48), (12.0, 40)] {
            for rotated in [false, true] {
                for (click, what) in [(b1, "in blob 1"), (b2, "in blob 2"), (RasMm::new(c.x(), c.y() + 9.0, c.z() - 4.0), "outside"), (a.apply(VoxelIjk::new(1.0, 2.0, 1.0)), "at the border")] {
                    let rfg = cube(click, side, g, rotated);
                    let sdf = sdf_on_cube(&rfg, g, blobs);
                    let want = sdf_to_source_mask(sdf.view(), &rfg, shape, &a, click);
                    let got = sdf_component_on_grid(sdf.view(), &rfg, shape, &a, click);
                    let what = format!("{name}, cube {side} mm / {g}, rotated {rotated}, click {what}");
                    match &got {
                        Some(comp) => {
                            assert_eq!(comp.voxel_count, want.voxel_count, "{what}");
                            assert_eq!(comp.mask.iter().filter(|&&m| m).count(), comp.voxel_count, "{what}");
                            assert!(comp.to_labels(shape, 1) == want.data, "{what}: masks differ");
                            // The crop is the component's bounding box: every face touches it.
                            let m = &comp.mask;
                            for ax in 0..3 {
                                let n = m.shape()[ax];
                                assert!(m.index_axis(ndarray::Axis(ax), 0).iter().any(|&x| x) && m.index_axis(ndarray::Axis(ax), n - 1).iter().any(|&x| x), "{what}");
                            }
                        }
                        None => assert_eq!(want.voxel_count, 0, "{what}"),
                    }
                    cases += usize::from(want.voxel_count > 0);
                }
            }
        }
    }
    assert!(cases > 60, "only {cases} non-empty cases");
}

/// The block mesh of a mask crop: with 1-voxel blocks and no smoothing it is the plain mask
/// mesh; with 2×2×1 blocks and smoothing it stays watertight, inside the grid, with the mask's
/// volume, even for a ball cut by the grid border.
#[test]
fn block_mesh_of_a_mask_crop() {
    let shape = GridShape::from_array_shape(&[SHAPE.0, SHAPE.1, SHAPE.2]);
    for (name, a) in [("straight", straight()), ("oblique+flipped", oblique_flipped())] {
        let mask = sphere_sdf(&a, 12.0).mapv(|d| d <= 0.0);
        let (lo, hi) = sam3d_studio::shape::sdf::bounding_box(mask.view()).expect("ball");
        let crop = mask.slice(ndarray::s![lo[0]..=hi[0], lo[1]..=hi[1], lo[2]..=hi[2]]);
        let full = mesh_from_mask(mask.view(), &a);
        let one = mesh_of_mask_blocks(crop, lo, shape, &a, [1, 1, 1], 0);
        assert_eq!((one.vertices.len(), one.triangles.len()), (full.vertices.len(), full.triangles.len()), "{name}");
        assert!((one.volume_mm3() / full.volume_mm3() - 1.0).abs() < 1e-9, "{name}");
        let voxel_mm3 = a.determinant().abs();
        let mask_mm3 = mask.iter().filter(|&&m| m).count() as f64 * voxel_mm3;
        for block in [[2, 2, 1], [3, 2, 2]] {
            let m = mesh_of_mask_blocks(crop, lo, shape, &a, block, 10);
            assert_watertight(&m, &format!("{name} blocks {block:?}"));
            assert_outward_from(&m, a.apply(centre_voxel()), name);
            assert!(m.triangles.len() * 2 < full.triangles.len(), "{name} {block:?}: {} triangles", m.triangles.len());
            assert!((m.volume_mm3() / mask_mm3 - 1.0).abs() < 0.05, "{name} {block:?}: {} vs {mask_mm3}", m.volume_mm3());
        }
    }
    // Cut by the border, with crop sizes that are no multiple of the block. (The coarser the
    // blocks for the object, the more its edges are chamfered: about −6 % here.)
    let a = straight();
    let mask = field(&a, |p| p.distance(&a.apply(VoxelIjk::new(58.6, 1.0, 28.7))) - 12.0).mapv(|d| d <= 0.0);
    let (lo, hi) = sam3d_studio::shape::sdf::bounding_box(mask.view()).expect("cut ball");
    assert_eq!([hi[0], hi[2]], [SHAPE.0 - 1, SHAPE.2 - 1]);
    let crop = mask.slice(ndarray::s![lo[0]..=hi[0], lo[1]..=hi[1], lo[2]..=hi[2]]);
    let m = mesh_of_mask_blocks(crop, lo, shape, &a, [3, 2, 1], 10);
    assert_watertight(&m, "cut ball");
    let inv = a.try_inverse().expect("invertible");
    for v in &m.vertices {
        let p = inv.apply(RasMm::new(v[0] as f64, v[1] as f64, v[2] as f64));
        let n = shape.ijk();
        assert!((0..3).all(|d| p.v[d] >= -0.5 - 1e-4 && p.v[d] <= n[d] as f64 - 0.5 + 1e-4), "vertex outside the grid: {p:?}");
    }
    let mask_mm3 = mask.iter().filter(|&&m| m).count() as f64 * a.determinant().abs();
    assert!((m.volume_mm3() / mask_mm3 - 1.0).abs() < 0.1, "cut ball {} vs {mask_mm3}", m.volume_mm3());
}
