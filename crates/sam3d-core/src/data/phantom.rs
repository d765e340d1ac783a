//! Synthetic CT-like and MR-like phantoms with labelled organ-like structures.
//!
//! Each case is an abdomen-like body (elliptic cylinder with a fat layer and a spine) holding
//! seven labelled structures with TotalSegmentator ids (liver 5, spleen 1, kidneys 2/3,
//! stomach 6, gallbladder 4 — touching the liver —, aorta 52): smoothly deformed ellipsoids and a
//! tube with random sizes and positions. Intensities are CT-like Hounsfield units or MR-like
//! signal with a bias field; noise; partial-volume mixing at every boundary. The grid has
//! anisotropic spacing and a random acquisition (axial, coronal or sagittal slices), oblique
//! tilt and axis flips. Everything is defined in RAS millimetres and sampled at each voxel
//! centre's RAS position, so labels sit exactly where the affine says. Deterministic per seed.

use crate::geometry::{RasFromVoxel, RasMm, VoxelIjk};
use crate::volume::{LabelMap, Modality, Volume, VolumeMeta};
use nalgebra::{Matrix3, Rotation3, Unit, Vector3};
use ndarray::{Array3, Zip};

/// A small deterministic RNG (SplitMix64), so phantoms do not depend on a crate's stream.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }
}

/// Cheap per-voxel noise: a hash of (seed, voxel index) → standard normal. Lets voxels be
/// filled in parallel yet deterministically.
pub(crate) fn hashed_normal(seed: u64, idx: u64) -> f32 {
    let mut r = Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ idx.wrapping_mul(0x9E37_79B9));
    r.normal() as f32
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct PhantomSpec {
    pub modality: Modality,
    /// Body size factor (1 = an adult abdomen, about 300 × 220 × 200 mm).
    pub scale: f64,
    /// In-plane spacing range (mm).
    pub in_plane_mm: (f64, f64),
    /// Slice spacing range (mm).
    pub slice_mm: (f64, f64),
    /// Largest oblique tilt (degrees).
    pub max_tilt_deg: f64,
    /// Noise standard deviation (HU for CT, signal units for MR).
    pub noise: f64,
}

impl PhantomSpec {
    /// Realistic sizes: in-plane 0.6–1 mm, slices 1.5–5 mm (about 3–15 M voxels).
    pub fn realistic(modality: Modality) -> Self {
        PhantomSpec { modality, scale: 1.0, in_plane_mm: (0.6, 1.0), slice_mm: (1.5, 5.0), max_tilt_deg: 15.0, noise: 15.0 }
    }
    /// Adult-sized organs on a coarse grid (1.5–2.5 mm in-plane, 3–5 mm slices; about half a
    /// million voxels): training data for the shipped model.
    pub fn medium(modality: Modality) -> Self {
        PhantomSpec { modality, scale: 0.85, in_plane_mm: (1.5, 2.5), slice_mm: (3.0, 5.0), max_tilt_deg: 15.0, noise: 15.0 }
    }
    /// Small and coarse, for tests and quick training runs (tens of thousands of voxels).
    pub fn small(modality: Modality) -> Self {
        PhantomSpec { modality, scale: 0.45, in_plane_mm: (2.0, 2.6), slice_mm: (3.0, 4.5), max_tilt_deg: 15.0, noise: 12.0 }
    }
}

/// One labelled structure of a phantom.
#[derive(Clone, Debug)]
pub struct Organ {
    pub label: u16,
    pub name: &'static str,
    /// Nominal centre (RAS mm).
    pub centre: RasMm,
    shape: OrganShape,
    ct_hu: f32,
    mr: f32,
}

#[derive(Clone, Debug)]
enum OrganShape {
    /// Deformed ellipsoid: `rot` maps body → organ frame; radii in mm; deformation modes.
    Blob { rot: Matrix3<f64>, radii: Vector3<f64>, modes: Vec<(f64, f64, f64, f64)> },
    /// Tube along S from z0 to z1 with a gentle sideways bend.
    Tube { radius: f64, z0: f64, z1: f64, bend: f64 },
}

impl Organ {
    /// Approximate signed distance (mm, negative inside) at RAS point `p`.
    fn sdf(&self, p: &Vector3<f64>) -> f64 {
        let d = p - self.centre.v;
        match &self.shape {
            OrganShape::Blob { rot, radii, modes } => deformed_ellipsoid_sdf(&(rot * d), radii, modes),
            OrganShape::Tube { radius, z0, z1, bend } => {
                let zc = d.z.clamp(*z0, *z1);
                let off = bend * ((d.z - z0) / (z1 - z0).max(1.0) * std::f64::consts::PI).sin();
                let radial = ((d.x - off).powi(2) + d.y.powi(2)).sqrt() - radius;
                let along = (d.z - zc).abs();
                if along > 0.0 { (radial.max(0.0).powi(2) + along * along).sqrt() } else { radial }
            }
        }
    }
}

/// Approximate signed distance (mm, negative inside) of an ellipsoid of semi-axes `radii` whose
/// radius is modulated by `modes` (amplitude, polar and azimuthal frequency, phase), at `q`: the
/// point in the ellipsoid's own frame, relative to its centre.
pub(crate) fn deformed_ellipsoid_sdf(q: &Vector3<f64>, radii: &Vector3<f64>, modes: &[(f64, f64, f64, f64)]) -> f64 {
    let s = Vector3::new(q.x / radii.x, q.y / radii.y, q.z / radii.z);
    let rho = s.norm();
    if rho < 1e-9 {
        return -radii.min();
    }
    let u = s / rho;
    let theta = u.z.clamp(-1.0, 1.0).acos();
    let phi = u.y.atan2(u.x);
    let deform: f64 = modes.iter().map(|(a, k1, k2, ph)| a * (k1 * theta + k2 * phi + ph).sin()).sum();
    let mean_r = (radii.x + radii.y + radii.z) / 3.0;
    (rho - (1.0 + deform)) * mean_r
}

/// A generated case.
#[derive(Clone, Debug)]
pub struct PhantomCase {
    pub volume: Volume,
    pub labels: LabelMap,
    pub organs: Vec<Organ>,
    /// Which world axis the slices are normal to (0 = sagittal, 1 = coronal, 2 = axial).
    pub slice_normal: usize,
}

/// Label ids and names of the phantom structures (TotalSegmentator ids).
pub const PHANTOM_LABELS: [(u16, &str); 7] = [
    (1, "spleen"),
    (2, "kidney_right"),
    (3, "kidney_left"),
    (4, "gallbladder"),
    (5, "liver"),
    (6, "stomach"),
    (52, "aorta"),
];

fn blob(rng: &mut Rng, label: u16, name: &'static str, c: [f64; 3], r: [f64; 3], s: f64, ct: f32, mr: f32) -> Organ {
    let jitter = |rng: &mut Rng| rng.range(0.88, 1.12);
    let centre = RasMm::new(c[0] * s + rng.range(-6.0, 6.0) * s, c[1] * s + rng.range(-6.0, 6.0) * s, c[2] * s + rng.range(-8.0, 8.0) * s);
    let radii = Vector3::new(r[0] * s * jitter(rng), r[1] * s * jitter(rng), r[2] * s * jitter(rng));
    let axis = Unit::new_normalize(Vector3::new(rng.normal(), rng.normal(), rng.normal()));
    let rot = *Rotation3::from_axis_angle(&axis, rng.range(-0.35, 0.35)).matrix();
    // A phase in [0, 6.28): the literal (not τ) fixes the phantoms the shipped model was trained on.
    #[allow(clippy::approx_constant)]
    let modes = (0..3)
        .map(|_| (rng.range(0.03, 0.10), (1 + rng.below(3)) as f64, (1 + rng.below(3)) as f64, rng.range(0.0, 6.28)))
        .collect();
    Organ { label, name, centre, shape: OrganShape::Blob { rot, radii, modes }, ct_hu: ct, mr }
}

/// Generates one case, deterministically from `seed`.
pub fn generate(spec: &PhantomSpec, seed: u64) -> PhantomCase {
    let mut rng = Rng::new(seed);
    let s = spec.scale * rng.range(0.9, 1.1);
    let body = Vector3::new(150.0 * s, 110.0 * s, 100.0 * s); // semi-axes LR, AP; half-height
    // Organs in RAS (x → patient right, y → anterior, z → superior), drawn in this order: a
    // later structure overwrites an earlier one where they overlap, so some touch.
    let mut organs = vec![
        blob(&mut rng, 5, "liver", [62.0, 8.0, 35.0], [70.0, 62.0, 55.0], s, 62.0, 460.0),
        blob(&mut rng, 4, "gallbladder", [52.0, 52.0, 5.0], [16.0, 16.0, 26.0], s, 8.0, 1000.0),
        blob(&mut rng, 1, "spleen", [-88.0, -22.0, 45.0], [28.0, 42.0, 48.0], s, 48.0, 620.0),
        blob(&mut rng, 6, "stomach", [-42.0, 42.0, 55.0], [44.0, 32.0, 38.0], s, 15.0, 260.0),
        blob(&mut rng, 2, "kidney_right", [62.0, -52.0, -15.0], [24.0, 28.0, 48.0], s, 150.0, 680.0),
        blob(&mut rng, 3, "kidney_left", [-62.0, -52.0, -5.0], [24.0, 28.0, 48.0], s, 150.0, 680.0),
    ];
    organs.push(Organ {
        label: 52,
        name: "aorta",
        centre: RasMm::new(-14.0 * s + rng.range(-4.0, 4.0) * s, -38.0 * s, 0.0),
        shape: OrganShape::Tube { radius: 11.0 * s * rng.range(0.85, 1.15), z0: -88.0 * s, z1: 88.0 * s, bend: rng.range(-8.0, 8.0) * s },
        ct_hu: 190.0,
        mr: 90.0,
    });
    let spine = Organ {
        label: 0,
        name: "spine",
        centre: RasMm::new(0.0, -78.0 * s, 0.0),
        shape: OrganShape::Tube { radius: 24.0 * s, z0: -110.0 * s, z1: 110.0 * s, bend: 0.0 },
        ct_hu: 650.0,
        mr: 220.0,
    };

    // Cover the body's bounding box (plus a margin) along each voxel axis.
    let half_box = Vector3::new(body.x + 10.0 * s, body.y + 10.0 * s, body.z);
    let Acquisition { ras_from_voxel, n, spacing: sp, slice_normal } = acquisition(&mut rng, spec, half_box);

    let bias = [rng.range(-0.25, 0.25), rng.range(-0.25, 0.25), rng.range(-0.2, 0.2), rng.range(-0.15, 0.15)];
    let noise_seed = rng.next_u64();
    let h = (sp.x + sp.y + sp.z) / 3.0; // partial-volume width
    let shape_arr = [n[2], n[1], n[0]];
    let mut img = Array3::<f32>::zeros(shape_arr);
    let mut lab = Array3::<u16>::zeros(shape_arr);
    let m = *ras_from_voxel.matrix();
    let ct = spec.modality != Modality::Mr;
    Zip::indexed(&mut img).and(&mut lab).par_for_each(|(k, j, i), v, l| {
        let p = Vector3::new(
            m[(0, 0)] * i as f64 + m[(0, 1)] * j as f64 + m[(0, 2)] * k as f64 + m[(0, 3)],
            m[(1, 0)] * i as f64 + m[(1, 1)] * j as f64 + m[(1, 2)] * k as f64 + m[(1, 3)],
            m[(2, 0)] * i as f64 + m[(2, 1)] * j as f64 + m[(2, 2)] * k as f64 + m[(2, 3)],
        );
        // Body: elliptic cylinder; fat layer under the skin.
        let e = ((p.x / body.x).powi(2) + (p.y / body.y).powi(2)).sqrt();
        let body_d = (e - 1.0) * body.y.min(body.x);
        let cap = p.z.abs() - body.z * 1.2;
        let body_d = body_d.max(cap);
        let occ = |d: f64| (0.5 - d / h).clamp(0.0, 1.0) as f32;
        // Skin → subcutaneous fat → abdominal muscle wall → visceral fat around the organs.
        let (air, fat, muscle, visceral) = if ct { (-1000.0, -100.0, 50.0, -85.0) } else { (0.0, 900.0, 330.0, 820.0) };
        let fat_occ = occ(body_d);
        let muscle_occ = occ(body_d + 14.0 * s);
        let inner_occ = occ(body_d + 24.0 * s);
        let mut val = air + (fat - air) * fat_occ;
        val += (muscle - fat) * muscle_occ;
        val += (visceral - muscle) * inner_occ;
        let mut label = 0u16;
        if inner_occ > 0.0 {
            let sd = spine.sdf(&p);
            let so = occ(sd);
            if so > 0.0 {
                let t = if ct { spine.ct_hu } else { spine.mr };
                val += (t - val) * so;
            }
            for o in &organs {
                let d = o.sdf(&p);
                if d < h {
                    let oo = occ(d);
                    let t = if ct { o.ct_hu } else { o.mr };
                    val += (t - val) * oo;
                    if d <= 0.0 {
                        label = o.label;
                    }
                }
            }
        }
        let idx = ((k * n[1] + j) * n[0] + i) as u64;
        if ct {
            val += spec.noise as f32 * hashed_normal(noise_seed, idx);
        } else {
            // Smooth multiplicative bias field and Rician-like noise.
            let q = p / (150.0 * s);
            let b = 1.0 + bias[0] * q.x + bias[1] * q.y + bias[2] * q.z + bias[3] * (q.x * q.x - q.z * q.z);
            let a = val * b as f32;
            let n1 = spec.noise as f32 * hashed_normal(noise_seed, idx);
            let n2 = spec.noise as f32 * hashed_normal(noise_seed ^ 0xABCD, idx);
            val = ((a + n1).powi(2) + n2 * n2).sqrt();
        }
        *v = val;
        *l = label;
    });
    let meta = VolumeMeta { description: format!("sam3d-studio phantom seed {seed}"), ..Default::default() };
    PhantomCase {
        volume: Volume { data: img, ras_from_voxel, meta: meta.clone() },
        labels: LabelMap { data: lab, ras_from_voxel, meta },
        organs,
        slice_normal,
    }
}

/// A random acquisition of a box of half-extents `half_box` (RAS mm, centred at the origin):
/// slices normal to S (axial), A (coronal) or R (sagittal), in-plane axes maybe swapped and
/// flipped, an oblique tilt about a random axis, spacing from `spec`; the grid covers the box.
pub(crate) struct Acquisition {
    pub ras_from_voxel: RasFromVoxel,
    /// Voxels along i, j, k.
    pub n: [usize; 3],
    pub spacing: Vector3<f64>,
    /// Which world axis the slices are normal to (0 = sagittal, 1 = coronal, 2 = axial).
    pub slice_normal: usize,
}

pub(crate) fn acquisition(rng: &mut Rng, spec: &PhantomSpec, half_box: Vector3<f64>) -> Acquisition {
    let slice_normal = match rng.uniform() {
        x if x < 0.6 => 2,
        x if x < 0.85 => 1,
        _ => 0,
    };
    let in_plane: Vec<usize> = (0..3).filter(|&a| a != slice_normal).collect();
    let mut dirs = Matrix3::zeros();
    let order = if rng.uniform() < 0.5 { [in_plane[0], in_plane[1]] } else { [in_plane[1], in_plane[0]] };
    for (col, &w) in order.iter().enumerate() {
        dirs[(w, col)] = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
    }
    dirs[(slice_normal, 2)] = if rng.uniform() < 0.3 { -1.0 } else { 1.0 };
    let tilt_axis = Unit::new_normalize(Vector3::new(rng.normal(), rng.normal(), rng.normal()));
    let tilt = *Rotation3::from_axis_angle(&tilt_axis, rng.range(0.0, spec.max_tilt_deg).to_radians()).matrix();
    let ip = rng.range(spec.in_plane_mm.0, spec.in_plane_mm.1);
    let sp = Vector3::new(ip, ip, rng.range(spec.slice_mm.0, spec.slice_mm.1));
    let lin = tilt * dirs * Matrix3::from_diagonal(&sp);
    let mut n = [0usize; 3];
    for a in 0..3 {
        let d = (tilt * dirs).column(a).into_owned();
        let extent = 2.0 * (d.x.abs() * half_box.x + d.y.abs() * half_box.y + d.z.abs() * half_box.z);
        n[a] = ((extent / sp[a]).ceil() as usize).max(4);
    }
    let centre_vox = Vector3::new((n[0] - 1) as f64 / 2.0, (n[1] - 1) as f64 / 2.0, (n[2] - 1) as f64 / 2.0);
    Acquisition { ras_from_voxel: RasFromVoxel::from_parts(lin, -(lin * centre_vox)), n, spacing: sp, slice_normal }
}

/// RAS centroid of a label's voxels.
pub fn label_centroid(labels: &LabelMap, label: u16) -> Option<RasMm> {
    let (mut sum, mut n) = (Vector3::zeros(), 0usize);
    for ((k, j, i), &l) in labels.data.indexed_iter() {
        if l == label {
            sum += Vector3::new(i as f64, j as f64, k as f64);
            n += 1;
        }
    }
    (n > 0).then(|| {
        let c = sum / n as f64;
        labels.ras_from_voxel.apply(VoxelIjk::new(c.x, c.y, c.z))
    })
}

/// The `labels.tsv` text for phantom labels (`id<TAB>name` per line).
pub fn labels_tsv() -> String {
    PHANTOM_LABELS.iter().map(|(id, name)| format!("{id}\t{name}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::axcodes;
    use crate::volume::OnGrid;

    #[test]
    fn deterministic_per_seed() {
        let spec = PhantomSpec::small(Modality::Ct);
        let a = generate(&spec, 11);
        let b = generate(&spec, 11);
        let c = generate(&spec, 12);
        assert_eq!(a.volume.data, b.volume.data);
        assert_eq!(a.labels.data, b.labels.data);
        assert_eq!(a.volume.ras_from_voxel, b.volume.ras_from_voxel);
        assert_ne!(a.volume.ras_from_voxel, c.volume.ras_from_voxel);
    }

    #[test]
    fn labels_sit_where_the_affine_says() {
        // Over several seeds (so flipped, permuted and oblique grids all occur), each blob's
        // label centroid in RAS lies near the organ's defined centre, and every label exists.
        let mut codes = std::collections::HashSet::new();
        for seed in 0..6 {
            let case = generate(&PhantomSpec::small(Modality::Ct), seed);
            codes.insert(axcodes(&case.volume.ras_from_voxel));
            let present: Vec<u16> = case.labels.counts().iter().map(|c| c.0).collect();
            assert!(present.len() >= 5, "seed {seed}: labels {present:?}");
            for o in case.organs.iter().filter(|o| matches!(o.shape, OrganShape::Blob { .. }) && o.label != 4) {
                let c = label_centroid(&case.labels, o.label).expect("present");
                // Deformation, overlap and partial voxels move the centroid by a few mm only.
                let tol = 12.0 * case.volume.spacing_mm().iter().cloned().fold(0.0, f64::max).max(1.0) / 2.5;
                assert!(c.distance(&o.centre) < tol, "seed {seed} {}: centroid {c:?} vs centre {:?}", o.name, o.centre);
            }
            // Liver is on the patient's right (RAS x > 0), spleen on the left.
            let liver = label_centroid(&case.labels, 5).expect("liver");
            let spleen = label_centroid(&case.labels, 1).expect("spleen");
            assert!(liver.x() > 0.0 && spleen.x() < 0.0, "seed {seed}");
        }
        assert!(codes.len() >= 3, "orientations vary: {codes:?}");
    }

    #[test]
    fn ct_and_mr_intensities() {
        let ct = generate(&PhantomSpec::small(Modality::Ct), 3);
        let st = ct.volume.stats();
        assert!(st.min < -900.0 && st.max > 400.0, "{st:?}");
        let liver = ct.labels.mask(5);
        let mean: f64 = ct.volume.data.iter().zip(liver.iter()).filter(|(_, m)| **m).map(|(v, _)| *v as f64).sum::<f64>()
            / liver.iter().filter(|m| **m).count() as f64;
        assert!((mean - 62.0).abs() < 15.0, "liver mean {mean}");
        let mr = generate(&PhantomSpec::small(Modality::Mr), 3);
        assert!(mr.volume.stats().min >= 0.0);
        assert_eq!(mr.volume.guess_modality(), Modality::Mr);
        assert_eq!(ct.volume.guess_modality(), Modality::Ct);
        let sp = ct.volume.spacing_mm();
        assert!(sp.iter().all(|&x| (2.0..=4.5).contains(&(x + 1e-9))), "{sp:?}");
    }
}
