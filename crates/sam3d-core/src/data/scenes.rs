//! Phantom scenes of the structures users click besides abdominal organs ([`Scene`]): lesions,
//! vessel trees, lungs and bone, in CT-like and MR-like contrasts. [`super::phantom`]'s abdomen
//! holds seven smooth organs; these hold what issue 22's families name, each a labelled
//! structure with TotalSegmentator's id where it has one ([`SCENE_LABELS`]):
//!
//! - **chest**: lungs with an airway tree (trachea, main and lobar bronchi) and pulmonary
//!   vessels branching inside them, the heart, the aorta with its arch and the three arch
//!   branches, the pulmonary trunk, thoracic vertebrae T4–T11 (body with a cortical shell, pedicles,
//!   lamina and spinous process, discs between), and 1–3 lung nodules or tumours;
//! - **abdomen**: liver, spleen, kidneys, stomach, the abdominal aorta with renal branches and
//!   its bifurcation into the iliac arteries, the inferior vena cava, lumbar vertebrae, and 1–3
//!   liver lesions;
//! - **head**: skull, brain with ventricles, and a brain tumour with oedema around it.
//!
//! Lesions span 0.5–400 ml (log-uniform), round to spiculated, solid or with an enhancing rim
//! and a necrotic core; half the chest and abdomen cases are contrast-enhanced (vessels and the
//! heart's blood pool bright), half not. Everything is defined in RAS millimetres and sampled at
//! each voxel centre, with the acquisitions of [`super::phantom`] (anisotropic, oblique, flipped)
//! and its noise, partial-volume mixing and MR bias field. Deterministic per seed.

use super::phantom::{Acquisition, PhantomCase, PhantomSpec, Rng, acquisition, deformed_ellipsoid_sdf, hashed_normal};
use super::zoom::ball_radius_mm;
use crate::volume::{LabelMap, Modality, Volume, VolumeMeta};
use nalgebra::{Matrix3, Rotation3, Unit, Vector3};
use ndarray::{Array3, Zip};

type V3 = Vector3<f64>;

/// What a phantom holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scene {
    /// [`super::phantom::generate`]'s seven abdominal organs (the shipped model's phantoms).
    Organs,
    Chest,
    Abdomen,
    Head,
}

impl std::str::FromStr for Scene {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "organs" => Ok(Scene::Organs),
            "chest" => Ok(Scene::Chest),
            "abdomen" => Ok(Scene::Abdomen),
            "head" => Ok(Scene::Head),
            other => Err(format!("'{other}': expected organs, chest, abdomen or head")),
        }
    }
}

/// Label ids and names of the scenes' structures: TotalSegmentator's ids where it has the
/// structure, ids from 120 up where it has none (whole lungs, lesions).
pub const SCENE_LABELS: &[(u16, &str)] = &[
    (1, "spleen"),
    (2, "kidney_right"),
    (3, "kidney_left"),
    (5, "liver"),
    (6, "stomach"),
    (16, "trachea"),
    (27, "vertebrae_L5"),
    (28, "vertebrae_L4"),
    (29, "vertebrae_L3"),
    (30, "vertebrae_L2"),
    (31, "vertebrae_L1"),
    (32, "vertebrae_T12"),
    (33, "vertebrae_T11"),
    (34, "vertebrae_T10"),
    (35, "vertebrae_T9"),
    (36, "vertebrae_T8"),
    (37, "vertebrae_T7"),
    (38, "vertebrae_T6"),
    (39, "vertebrae_T5"),
    (40, "vertebrae_T4"),
    (51, "heart"),
    (52, "aorta"),
    (54, "brachiocephalic_trunk"),
    (56, "subclavian_artery_left"),
    (58, "common_carotid_artery_left"),
    (63, "inferior_vena_cava"),
    (65, "iliac_artery_left"),
    (66, "iliac_artery_right"),
    (90, "brain"),
    (91, "skull"),
    (120, "lung_left"),
    (121, "lung_right"),
    (122, "pulmonary_artery"),
    (130, "lung_nodule_1"),
    (131, "lung_nodule_2"),
    (132, "lung_nodule_3"),
    (140, "liver_lesion_1"),
    (141, "liver_lesion_2"),
    (142, "liver_lesion_3"),
    (150, "brain_tumour"),
];

/// The `labels.tsv` text of the scenes' labels.
pub fn scene_labels_tsv() -> String {
    SCENE_LABELS.iter().map(|(id, name)| format!("{id}\t{name}\n")).collect()
}

/// A tapered capsule: the segment `a`–`b` with radius `ra` at `a` and `rb` at `b`.
#[derive(Clone, Copy, Debug)]
struct Capsule {
    a: V3,
    b: V3,
    ra: f64,
    rb: f64,
}

impl Capsule {
    fn sdf(&self, p: &V3) -> f64 {
        let ab = self.b - self.a;
        let t = ((p - self.a).dot(&ab) / ab.norm_squared().max(1e-12)).clamp(0.0, 1.0);
        (p - (self.a + ab * t)).norm() - (self.ra + (self.rb - self.ra) * t)
    }
}

/// One piece of a structure's shape (a structure is the union of its pieces).
#[derive(Clone, Debug)]
enum Piece {
    /// A smoothly deformed ellipsoid (as the abdominal phantom's organs), with optional
    /// spicules: thin cones from the surface along `spikes`' directions (unit vectors in the
    /// ellipsoid's frame) reaching `len` times the mean radius out.
    Blob { c: V3, rot: Matrix3<f64>, radii: V3, modes: Vec<(f64, f64, f64, f64)>, spikes: Vec<(V3, f64)> },
    Capsule(Capsule),
    /// A box with rounded edges (`round` mm), `rot` mapping world → box frame.
    RoundBox { c: V3, rot: Matrix3<f64>, half: V3, round: f64 },
}

impl Piece {
    fn sdf(&self, p: &V3) -> f64 {
        match self {
            Piece::Blob { c, rot, radii, modes, spikes } => {
                let q = rot * (p - c);
                let mean_r = (radii.x + radii.y + radii.z) / 3.0;
                let mut d = deformed_ellipsoid_sdf(&q, radii, modes);
                for (dir, len) in spikes {
                    // A cone from the centre along `dir`, as wide as the blob at its base and a
                    // point at `1 + len` mean radii.
                    let along = q.dot(dir) / mean_r;
                    if along > 0.0 && along < 1.0 + len {
                        let radial = (q - dir * q.dot(dir)).norm();
                        let width = mean_r * 0.35 * (1.0 + len - along) / (1.0 + len);
                        d = d.min(radial - width);
                    }
                }
                d
            }
            Piece::Capsule(c) => c.sdf(p),
            Piece::RoundBox { c, rot, half, round } => {
                let q = rot * (p - c);
                let e = V3::new(q.x.abs() - half.x + round, q.y.abs() - half.y + round, q.z.abs() - half.z + round);
                let outside = V3::new(e.x.max(0.0), e.y.max(0.0), e.z.max(0.0)).norm();
                outside + e.x.max(e.y).max(e.z).min(0.0) - round
            }
        }
    }

    /// A box (RAS mm) holding the piece.
    fn bounds(&self) -> (V3, V3) {
        match self {
            Piece::Blob { c, radii, modes, spikes, .. } => {
                let amp: f64 = modes.iter().map(|m| m.0.abs()).sum();
                let reach = spikes.iter().map(|s| 1.0 + s.1).fold(1.0 + amp, f64::max);
                let r = V3::repeat(radii.max() * reach);
                (c - r, c + r)
            }
            Piece::Capsule(c) => {
                let r = V3::repeat(c.ra.max(c.rb));
                (c.a.inf(&c.b) - r, c.a.sup(&c.b) + r)
            }
            Piece::RoundBox { c, half, .. } => {
                let r = V3::repeat(half.norm());
                (c - r, c + r)
            }
        }
    }
}

/// Intensities of a tissue: CT (HU) and MR (signal), and optionally a rim and a core.
#[derive(Clone, Copy, Debug)]
struct Tissue {
    ct: f32,
    mr: f32,
    /// Within this depth (mm) of the surface: (ct, mr) — a vertebra's cortex, a lesion's
    /// enhancing rim, the myocardium.
    rim: Option<(f64, f32, f32)>,
    /// Deeper than this (mm): (ct, mr) — a lesion's necrotic core.
    core: Option<(f64, f32, f32)>,
}

impl Tissue {
    const fn plain(ct: f32, mr: f32) -> Self {
        Tissue { ct, mr, rim: None, core: None }
    }
    fn at(&self, depth: f64, ct: bool) -> f32 {
        let pick = |c: f32, m: f32| if ct { c } else { m };
        match (self.rim, self.core) {
            (_, Some((d, c, m))) if depth > d => pick(c, m),
            (Some((d, c, m)), _) if depth < d => pick(c, m),
            _ => pick(self.ct, self.mr),
        }
    }
}

/// A structure: its pieces, tissue and label (0: drawn, but not labelled — it keeps the label
/// under it, as a bronchus keeps its lung's).
#[derive(Clone, Debug)]
struct Part {
    label: u16,
    pieces: Vec<Piece>,
    tissue: Tissue,
    lo: V3,
    hi: V3,
}

impl Part {
    fn new(label: u16, pieces: Vec<Piece>, tissue: Tissue) -> Self {
        let (mut lo, mut hi) = (V3::repeat(f64::INFINITY), V3::repeat(f64::NEG_INFINITY));
        for p in &pieces {
            let (a, b) = p.bounds();
            lo = lo.inf(&a);
            hi = hi.sup(&b);
        }
        Part { label, pieces, tissue, lo, hi }
    }
    /// Signed distance (mm, negative inside), or `None` when `p` lies over `margin` outside its box.
    fn sdf(&self, p: &V3, margin: f64) -> Option<f64> {
        if (0..3).any(|a| p[a] < self.lo[a] - margin || p[a] > self.hi[a] + margin) {
            return None;
        }
        Some(self.pieces.iter().map(|q| q.sdf(p)).fold(f64::INFINITY, f64::min))
    }
}

/// The body around the structures: an elliptic cylinder (chest, abdomen) or an ellipsoid
/// (head), with skin, fat and muscle layers.
#[derive(Clone, Copy, Debug)]
struct Body {
    semi: V3,
    ellipsoid: bool,
}

impl Body {
    fn sdf(&self, p: &V3) -> f64 {
        if self.ellipsoid {
            let e = V3::new(p.x / self.semi.x, p.y / self.semi.y, p.z / self.semi.z).norm();
            (e - 1.0) * self.semi.min()
        } else {
            let e = ((p.x / self.semi.x).powi(2) + (p.y / self.semi.y).powi(2)).sqrt();
            ((e - 1.0) * self.semi.x.min(self.semi.y)).max(p.z.abs() - self.semi.z * 1.2)
        }
    }
}

fn jitter(rng: &mut Rng, v: f64, frac: f64) -> f64 {
    v * rng.range(1.0 - frac, 1.0 + frac)
}

fn rotation(rng: &mut Rng, max_rad: f64) -> Matrix3<f64> {
    let axis = Unit::new_normalize(V3::new(rng.normal(), rng.normal(), rng.normal()));
    *Rotation3::from_axis_angle(&axis, rng.range(-max_rad, max_rad)).matrix()
}

fn modes(rng: &mut Rng, amp: (f64, f64), n: usize) -> Vec<(f64, f64, f64, f64)> {
    (0..n).map(|_| (rng.range(amp.0, amp.1), (1 + rng.below(3)) as f64, (1 + rng.below(3)) as f64, rng.range(0.0, std::f64::consts::TAU))).collect()
}

fn organ(rng: &mut Rng, c: [f64; 3], r: [f64; 3], s: f64) -> Piece {
    let c = V3::new(c[0] * s + rng.range(-6.0, 6.0) * s, c[1] * s + rng.range(-6.0, 6.0) * s, c[2] * s + rng.range(-8.0, 8.0) * s);
    let radii = V3::new(jitter(rng, r[0] * s, 0.12), jitter(rng, r[1] * s, 0.12), jitter(rng, r[2] * s, 0.12));
    let rot = rotation(rng, 0.35);
    let modes = modes(rng, (0.03, 0.10), 3);
    Piece::Blob { c, rot, radii, modes, spikes: Vec::new() }
}

/// A lesion of `ml` millilitres centred at `c`: round or lobulated, spiculated with probability
/// `spiculated`; its tissue is chosen by the caller.
fn lesion_piece(rng: &mut Rng, c: V3, ml: f64, spiculated: f64) -> Piece {
    let r = ball_radius_mm(ml);
    let e = [rng.range(0.8, 1.2), rng.range(0.8, 1.2), rng.range(0.8, 1.2)];
    let g = (e[0] * e[1] * e[2]).cbrt();
    let radii = V3::new(r * e[0] / g, r * e[1] / g, r * e[2] / g);
    let modes = modes(rng, (0.0, 0.12), 3);
    let spikes = if rng.uniform() < spiculated {
        (0..4 + rng.below(6)).map(|_| (Unit::new_normalize(V3::new(rng.normal(), rng.normal(), rng.normal())).into_inner(), rng.range(0.2, 0.6))).collect()
    } else {
        Vec::new()
    };
    Piece::Blob { c, rot: rotation(rng, 3.1), radii, modes, spikes }
}

/// A lesion volume (ml), log-uniform in `lo ..= hi`.
fn lesion_ml(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    (lo.ln() + rng.uniform() * (hi.ln() - lo.ln())).exp()
}

/// A point inside `part` at least `depth` mm deep and `depth` mm away from every part of
/// `others` (the structures drawn over it), by rejection sampling in its box; `None` when 400
/// draws find none.
fn point_inside(rng: &mut Rng, part: &Part, others: &[Part], depth: f64) -> Option<V3> {
    for _ in 0..400 {
        let p = V3::new(rng.range(part.lo.x, part.hi.x), rng.range(part.lo.y, part.hi.y), rng.range(part.lo.z, part.hi.z));
        if part.sdf(&p, 0.0).is_some_and(|d| d < -depth) && others.iter().all(|o| o.sdf(&p, depth).is_none_or(|d| d > depth)) {
            return Some(p);
        }
    }
    None
}

/// A branching tree of tapered capsules from `root` along `dir`: each segment `len` long (times
/// a jitter), then two children turned `spread` radians apart, radius shrinking by 0.72 and
/// length by 0.8 per generation, `gens` generations; segments ending outside `inside` (when
/// given) are dropped with their children.
#[allow(clippy::too_many_arguments)]
fn tree(rng: &mut Rng, root: V3, dir: V3, len: f64, r: f64, gens: usize, spread: f64, inside: Option<&Part>, out: &mut Vec<Piece>) {
    let end = root + dir.normalize() * jitter(rng, len, 0.2);
    if inside.is_some_and(|p| p.sdf(&end, 0.0).is_none_or(|d| d > -r)) {
        return;
    }
    out.push(Piece::Capsule(Capsule { a: root, b: end, ra: r, rb: r * 0.85 }));
    if gens == 0 {
        return;
    }
    let axis = Unit::new_normalize(dir.cross(&V3::new(rng.normal(), rng.normal(), rng.normal())));
    for side in [-1.0, 1.0] {
        let turn = Rotation3::from_axis_angle(&axis, side * jitter(rng, spread, 0.3));
        tree(rng, end, turn * dir, len * 0.8, r * 0.72, gens - 1, spread, inside, out);
    }
}

/// A vertebra of `label` at height `z` behind `y_front` (the body's anterior face): a body with a
/// cortical shell, two pedicles, the lamina and a spinous process; `w` scales it (1: lumbar).
fn vertebra(label: u16, x: f64, y_front: f64, z: f64, w: f64, height: f64, tilt: Matrix3<f64>) -> Part {
    let half = V3::new(22.0 * w, 16.0 * w, height / 2.0);
    let body_c = V3::new(x, y_front - half.y, z);
    // The spinal canal's centre, about 9 mm across (lumbar), behind the body.
    let canal = body_c - V3::new(0.0, half.y + 9.0 * w, 0.0);
    let arch_r = 4.5 * w;
    let cap = |a: V3, b: V3, ra: f64, rb: f64| Piece::Capsule(Capsule { a, b, ra, rb });
    let side = |s: f64| canal + V3::new(s * 12.0 * w, 0.0, 0.0);
    let back = canal + V3::new(0.0, -11.0 * w, 0.0);
    let pieces = vec![
        Piece::RoundBox { c: body_c, rot: tilt, half, round: 3.0 * w },
        // Pedicles, the lamina's two halves, the spinous and the transverse processes.
        cap(body_c + V3::new(-10.0 * w, -half.y + 2.0, 0.0), side(-1.0), arch_r, arch_r),
        cap(body_c + V3::new(10.0 * w, -half.y + 2.0, 0.0), side(1.0), arch_r, arch_r),
        cap(side(-1.0), back, arch_r * 0.8, arch_r * 0.8),
        cap(side(1.0), back, arch_r * 0.8, arch_r * 0.8),
        cap(back, back + V3::new(0.0, -20.0 * w, -8.0 * w), arch_r * 0.9, arch_r * 0.6),
        cap(side(-1.0), side(-1.0) + V3::new(-20.0 * w, -4.0 * w, 0.0), arch_r * 0.7, arch_r * 0.5),
        cap(side(1.0), side(1.0) + V3::new(20.0 * w, -4.0 * w, 0.0), arch_r * 0.7, arch_r * 0.5),
    ];
    Part::new(label, pieces, Tissue { ct: 230.0, mr: 420.0, rim: Some((1.6, 750.0, 120.0)), core: None })
}

/// A column of vertebrae with labels `labels` (top first) from `z_top` down, discs between.
fn spine(rng: &mut Rng, labels: &[u16], x: f64, y_front: f64, z_top: f64, w: f64, height: f64, parts: &mut Vec<Part>) {
    let mut z = z_top;
    for &l in labels {
        let h = jitter(rng, height, 0.08);
        let tilt = rotation(rng, 0.06);
        parts.push(vertebra(l, x, y_front, z - h / 2.0, w, h, tilt));
        let disc = Piece::RoundBox { c: V3::new(x, y_front - 16.0 * w, z - h - 3.5 * w), rot: Matrix3::identity(), half: V3::new(20.0 * w, 15.0 * w, 3.5 * w), round: 2.0 };
        parts.push(Part::new(0, vec![disc], Tissue::plain(85.0, 520.0)));
        z -= h + 7.0 * w;
    }
}

/// A lesion's tissue: solid (a nodule), or with an enhancing rim (contrast) and a necrotic core
/// when large enough; hypo- or hyper-attenuating against `host` (ct, mr).
fn lesion_tissue(rng: &mut Rng, ml: f64, host: (f32, f32), contrast: bool) -> Tissue {
    let hyper = rng.uniform() < 0.3;
    let (ct, mr) = if hyper { (host.0 + rng.range(40.0, 80.0) as f32, host.1 * rng.range(1.4, 1.8) as f32) } else { (host.0 - rng.range(35.0, 70.0) as f32, host.1 * rng.range(0.45, 0.7) as f32) };
    let r = ball_radius_mm(ml);
    let rim = (contrast && rng.uniform() < 0.5).then(|| (rng.range(1.5, 3.5), host.0 + 60.0, host.1 * 1.7));
    let core = (r > 12.0 && rng.uniform() < 0.5).then(|| (r * rng.range(0.35, 0.6), host.0 - 60.0, host.1 * 0.35));
    Tissue { ct, mr, rim, core }
}

/// A scene: its body and parts, in drawing order (a later part overwrites an earlier one).
fn chest(rng: &mut Rng, s: f64) -> (Body, Vec<Part>) {
    let body = Body { semi: V3::new(165.0 * s, 115.0 * s, 105.0 * s), ellipsoid: false };
    let contrast = rng.uniform() < 0.5;
    let blood = if contrast { Tissue { ct: rng.range(220.0, 380.0) as f32, mr: 700.0, rim: None, core: None } } else { Tissue::plain(42.0, 180.0) };
    let lung_t = Tissue::plain(-850.0, 25.0);
    let mut parts = Vec::new();
    let lung_r = Part::new(121, vec![organ(rng, [68.0, 0.0, 10.0], [62.0, 80.0, 95.0], s)], lung_t);
    let lung_l = Part::new(120, vec![organ(rng, [-72.0, 0.0, 5.0], [58.0, 78.0, 92.0], s)], lung_t);
    parts.push(lung_r.clone());
    parts.push(lung_l.clone());
    // Pulmonary vessels (unlabelled: part of their lung) and the airways, inside the lungs.
    let hilum_r = V3::new(38.0 * s, -5.0 * s, 15.0 * s);
    let hilum_l = V3::new(-40.0 * s, -5.0 * s, 12.0 * s);
    for (hilum, lung, side) in [(hilum_r, &lung_r, 1.0), (hilum_l, &lung_l, -1.0)] {
        let mut v = Vec::new();
        for dir in [V3::new(side, 0.3, 0.8), V3::new(side, 0.4, -0.6), V3::new(side, -0.6, -0.2), V3::new(side, 0.8, 0.1)] {
            let start = hilum + dir.normalize() * 18.0 * s;
            tree(rng, start, dir, 30.0 * s, 4.5 * s, 3, 0.55, Some(lung), &mut v);
        }
        if !v.is_empty() {
            parts.push(Part::new(0, v, blood));
        }
    }
    let carina = V3::new(0.0, -2.0 * s, 48.0 * s);
    let trachea = Capsule { a: V3::new(0.0, 8.0 * s, 125.0 * s), b: carina, ra: 9.0 * s, rb: 8.0 * s };
    let air = Tissue { ct: -1000.0, mr: 5.0, rim: Some((1.5, -150.0, 60.0)), core: None };
    let mut bronchi = Vec::new();
    for (lung, side) in [(&lung_r, 1.0), (&lung_l, -1.0)] {
        let main_end = carina + V3::new(side * 30.0, -6.0, -22.0) * s;
        bronchi.push(Piece::Capsule(Capsule { a: carina, b: main_end, ra: 6.5 * s, rb: 5.5 * s }));
        for dir in [V3::new(side, 0.2, 1.0), V3::new(side * 0.6, 0.3, -1.0), V3::new(side, -0.5, -0.5)] {
            tree(rng, main_end, dir, 24.0 * s, 4.0 * s, 2, 0.5, Some(lung), &mut bronchi);
        }
    }
    parts.push(Part::new(0, bronchi, air));
    parts.push(Part::new(16, vec![Piece::Capsule(trachea)], air));
    // The heart: myocardium (a rim) around the blood pool.
    let heart = organ(rng, [-18.0, 42.0, -20.0], [58.0, 45.0, 48.0], s);
    parts.push(Part::new(51, vec![heart], Tissue { rim: Some((rng.range(7.0, 11.0), 45.0, 300.0)), ..blood }));
    // The aorta: ascending from the heart, the arch passing left and back, descending by the
    // spine; three branches from the arch; the pulmonary trunk from the heart, left and up.
    let asc0 = V3::new(8.0, 40.0, 5.0) * s;
    let arch_top = V3::new(-5.0, 15.0, jitter(rng, 88.0, 0.08)) * s;
    let desc0 = V3::new(-24.0, -35.0, 70.0) * s;
    let desc1 = V3::new(-22.0, -45.0, -110.0) * s;
    let r_ao = jitter(rng, 14.0, 0.15) * s;
    let aorta = vec![
        Piece::Capsule(Capsule { a: asc0, b: V3::new(10.0, 32.0, 65.0) * s, ra: r_ao, rb: r_ao }),
        Piece::Capsule(Capsule { a: V3::new(10.0, 32.0, 65.0) * s, b: arch_top, ra: r_ao, rb: r_ao * 0.95 }),
        Piece::Capsule(Capsule { a: arch_top, b: desc0, ra: r_ao * 0.95, rb: r_ao * 0.85 }),
        Piece::Capsule(Capsule { a: desc0, b: desc1, ra: r_ao * 0.85, rb: r_ao * 0.8 }),
    ];
    parts.push(Part::new(52, aorta, blood));
    let branch = |from: V3, to: V3, r: f64| vec![Piece::Capsule(Capsule { a: from, b: to, ra: r, rb: r * 0.8 })];
    parts.push(Part::new(54, branch(V3::new(4.0, 22.0, 92.0) * s, V3::new(22.0, 25.0, 135.0) * s, 6.5 * s), blood));
    parts.push(Part::new(58, branch(V3::new(-6.0, 14.0, 95.0) * s, V3::new(-12.0, 18.0, 140.0) * s, 4.5 * s), blood));
    parts.push(Part::new(56, branch(V3::new(-15.0, 2.0, 92.0) * s, V3::new(-40.0, 5.0, 125.0) * s, 5.0 * s), blood));
    let pa = vec![
        Piece::Capsule(Capsule { a: V3::new(-15.0, 48.0, 10.0) * s, b: V3::new(-20.0, 25.0, 45.0) * s, ra: 13.0 * s, rb: 12.0 * s }),
        Piece::Capsule(Capsule { a: V3::new(-20.0, 25.0, 45.0) * s, b: hilum_l, ra: 9.0 * s, rb: 7.0 * s }),
        Piece::Capsule(Capsule { a: V3::new(-20.0, 25.0, 45.0) * s, b: hilum_r, ra: 9.0 * s, rb: 7.0 * s }),
    ];
    parts.push(Part::new(122, pa, blood));
    // Thoracic vertebrae T4 … T11 (top to bottom).
    spine(rng, &[40, 39, 38, 37, 36, 35, 34, 33], 0.0, -55.0 * s, 102.0 * s, 0.8 * s, 20.0 * s, &mut parts);
    // Nodules and tumours in the lungs.
    let n = 1 + rng.below(3);
    for i in 0..n {
        let ml = lesion_ml(rng, 0.5, 300.0);
        let r = ball_radius_mm(ml);
        let lung = if rng.uniform() < 0.5 { &lung_r } else { &lung_l };
        let after: Vec<Part> = parts.iter().filter(|p| p.label != lung.label && p.label != 0).cloned().collect();
        if let Some(c) = point_inside(rng, lung, &after, r * 0.7) {
            let t = Tissue { ct: rng.range(15.0, 45.0) as f32, mr: rng.range(250.0, 420.0) as f32, rim: None, core: (r > 15.0 && rng.uniform() < 0.5).then(|| (r * 0.5, -10.0, 120.0)) };
            parts.push(Part::new(130 + i as u16, vec![lesion_piece(rng, c, ml, 0.6)], t));
        }
    }
    (body, parts)
}

fn abdomen(rng: &mut Rng, s: f64) -> (Body, Vec<Part>) {
    let body = Body { semi: V3::new(150.0 * s, 118.0 * s, 110.0 * s), ellipsoid: false };
    let contrast = rng.uniform() < 0.5;
    let (liver_hu, liver_mr) = if contrast { (rng.range(95.0, 125.0) as f32, 520.0) } else { (rng.range(50.0, 65.0) as f32, 460.0) };
    let blood = if contrast { Tissue::plain(rng.range(160.0, 260.0) as f32, 650.0) } else { Tissue::plain(40.0, 90.0) };
    let mut parts = Vec::new();
    let liver = Part::new(5, vec![organ(rng, [62.0, 8.0, 35.0], [70.0, 62.0, 55.0], s)], Tissue::plain(liver_hu, liver_mr));
    parts.push(liver.clone());
    parts.push(Part::new(1, vec![organ(rng, [-88.0, -22.0, 45.0], [28.0, 42.0, 48.0], s)], Tissue::plain(if contrast { 120.0 } else { 48.0 }, 620.0)));
    parts.push(Part::new(6, vec![organ(rng, [-42.0, 42.0, 55.0], [44.0, 32.0, 38.0], s)], Tissue::plain(15.0, 260.0)));
    let kidney = Tissue { ct: if contrast { 170.0 } else { 35.0 }, mr: 680.0, rim: contrast.then_some((5.0, 220.0, 760.0)), core: None };
    parts.push(Part::new(2, vec![organ(rng, [62.0, -52.0, -15.0], [24.0, 28.0, 48.0], s)], kidney));
    parts.push(Part::new(3, vec![organ(rng, [-62.0, -52.0, -5.0], [24.0, 28.0, 48.0], s)], kidney));
    // The aorta down to its bifurcation, renal branches (unlabelled), the iliac arteries, the IVC.
    let r_ao = jitter(rng, 10.5, 0.15) * s;
    let top = V3::new(-14.0, -38.0, 110.0) * s;
    let bif = V3::new(-6.0, -30.0, jitter(rng, -60.0, 0.15)) * s;
    parts.push(Part::new(52, vec![Piece::Capsule(Capsule { a: top, b: bif, ra: r_ao, rb: r_ao * 0.85 })], blood));
    let renal = vec![
        Piece::Capsule(Capsule { a: V3::new(-13.0, -38.0, -2.0) * s, b: V3::new(50.0, -50.0, -12.0) * s, ra: 3.0 * s, rb: 2.5 * s }),
        Piece::Capsule(Capsule { a: V3::new(-15.0, -38.0, 2.0) * s, b: V3::new(-50.0, -50.0, -2.0) * s, ra: 3.0 * s, rb: 2.5 * s }),
    ];
    parts.push(Part::new(0, renal, blood));
    for (label, side) in [(66u16, 1.0), (65u16, -1.0)] {
        let mid = bif + V3::new(side * 30.0, 5.0, -45.0) * s;
        let end = bif + V3::new(side * 55.0, 20.0, -95.0) * s;
        let pieces = vec![
            Piece::Capsule(Capsule { a: bif, b: mid, ra: r_ao * 0.65, rb: r_ao * 0.6 }),
            Piece::Capsule(Capsule { a: mid, b: end, ra: r_ao * 0.6, rb: r_ao * 0.55 }),
        ];
        parts.push(Part::new(label, pieces, blood));
    }
    let ivc = Capsule { a: V3::new(22.0, -30.0, 110.0) * s, b: V3::new(18.0, -28.0, -65.0) * s, ra: 11.0 * s, rb: 10.0 * s };
    parts.push(Part::new(63, vec![Piece::Capsule(ivc)], if contrast { Tissue::plain(130.0, 500.0) } else { blood }));
    spine(rng, &[32, 31, 30, 29, 28, 27], 0.0, -50.0 * s, 125.0 * s, s, 27.0 * s, &mut parts);
    // Liver lesions.
    let n = 1 + rng.below(3);
    for i in 0..n {
        let ml = lesion_ml(rng, 0.5, 250.0);
        let r = ball_radius_mm(ml);
        let after: Vec<Part> = parts.iter().filter(|p| p.label != 5).cloned().collect();
        if let Some(c) = point_inside(rng, &liver, &after, r * 0.8) {
            let t = lesion_tissue(rng, ml, (liver_hu, liver_mr), contrast);
            parts.push(Part::new(140 + i as u16, vec![lesion_piece(rng, c, ml, 0.25)], t));
        }
    }
    (body, parts)
}

fn head(rng: &mut Rng, s: f64) -> (Body, Vec<Part>) {
    let body = Body { semi: V3::new(76.0 * s, 96.0 * s, 112.0 * s), ellipsoid: true };
    let mut parts = Vec::new();
    let skull_r = V3::new(70.0, 90.0, 100.0) * s;
    let rot = rotation(rng, 0.08);
    let skull = Piece::Blob { c: V3::new(0.0, 0.0, 8.0 * s), rot, radii: skull_r, modes: modes(rng, (0.0, 0.03), 2), spikes: Vec::new() };
    parts.push(Part::new(91, vec![skull], Tissue { ct: 1100.0, mr: 60.0, rim: None, core: None }));
    let t = jitter(rng, 7.0, 0.2) * s;
    let brain = Part::new(90, vec![Piece::Blob { c: V3::new(0.0, 0.0, 8.0 * s), rot, radii: skull_r - V3::repeat(t), modes: modes(rng, (0.0, 0.03), 2), spikes: Vec::new() }], Tissue { ct: 36.0, mr: 430.0, rim: Some((4.0, 42.0, 380.0)), core: None });
    parts.push(brain.clone());
    for side in [-1.0, 1.0] {
        let v = Piece::Blob { c: V3::new(side * 9.0, 5.0, 25.0) * s, rot: rotation(rng, 0.2), radii: V3::new(6.0, 28.0, 10.0) * s, modes: modes(rng, (0.0, 0.1), 2), spikes: Vec::new() };
        parts.push(Part::new(0, vec![v], Tissue::plain(6.0, 120.0)));
    }
    let ml = lesion_ml(rng, 1.0, 120.0);
    let r = ball_radius_mm(ml);
    let after: Vec<Part> = parts.iter().filter(|p| p.label != 90 && p.label != 91).cloned().collect();
    if let Some(c) = point_inside(rng, &brain, &after, r + 6.0) {
        let spread = rng.range(2.0, 5.0);
        let oedema = lesion_piece(rng, c, ml * spread, 0.0);
        parts.push(Part::new(0, vec![oedema], Tissue::plain(22.0, 330.0)));
        let enhancing = rng.uniform() < 0.75;
        let tissue = Tissue {
            ct: 40.0,
            mr: if enhancing { 520.0 } else { 300.0 },
            rim: enhancing.then(|| (rng.range(2.0, 4.0), 62.0, 850.0)),
            core: (r > 8.0 && rng.uniform() < 0.6).then(|| (r * 0.45, 14.0, 160.0)),
        };
        parts.push(Part::new(150, vec![lesion_piece(rng, c, ml, 0.2)], tissue));
    }
    (body, parts)
}

/// Generates one case of `scene`, deterministically from `seed` ([`Scene::Organs`]: exactly
/// [`super::phantom::generate`]).
pub fn generate_scene(scene: Scene, spec: &PhantomSpec, seed: u64) -> PhantomCase {
    if scene == Scene::Organs {
        return super::phantom::generate(spec, seed);
    }
    let mut rng = Rng::new(seed ^ 0x5CE7_E000);
    let s = spec.scale * rng.range(0.9, 1.1);
    let (body, parts) = match scene {
        Scene::Chest => chest(&mut rng, s),
        Scene::Abdomen => abdomen(&mut rng, s),
        Scene::Head | Scene::Organs => head(&mut rng, s),
    };
    let half_box = body.semi + V3::new(10.0, 10.0, 0.0) * s;
    let Acquisition { ras_from_voxel, n, spacing: sp, slice_normal } = acquisition(&mut rng, spec, half_box);
    let bias = [rng.range(-0.25, 0.25), rng.range(-0.25, 0.25), rng.range(-0.2, 0.2), rng.range(-0.15, 0.15)];
    let noise_seed = rng.next_u64();
    // A head CT's noise is lower than a body CT's (a smaller, less attenuating cross-section).
    let noise = if scene == Scene::Head && spec.modality != Modality::Mr { spec.noise * 0.35 } else { spec.noise };
    let h = (sp.x + sp.y + sp.z) / 3.0;
    let shape = [n[2], n[1], n[0]];
    let mut img = Array3::<f32>::zeros(shape);
    let mut lab = Array3::<u16>::zeros(shape);
    let ct = spec.modality != Modality::Mr;
    Zip::indexed(&mut img).and(&mut lab).par_for_each(|(k, j, i), v, l| {
        let p = ras_from_voxel.apply(crate::geometry::VoxelIjk::new(i as f64, j as f64, k as f64)).v;
        let occ = |d: f64| (0.5 - d / h).clamp(0.0, 1.0) as f32;
        let body_d = body.sdf(&p);
        let (air, fat, muscle, inner) = if ct { (-1000.0, -100.0, 50.0, -85.0) } else { (0.0, 900.0, 330.0, 820.0) };
        let mut val = air + (fat - air) * occ(body_d);
        val += (muscle - fat) * occ(body_d + 8.0 * s);
        val += (inner - muscle) * occ(body_d + 16.0 * s);
        let mut label = 0u16;
        if body_d < h {
            for part in &parts {
                let Some(d) = part.sdf(&p, h) else { continue };
                if d < h {
                    let t = part.tissue.at(-d, ct);
                    val += (t - val) * occ(d);
                    if d <= 0.0 && part.label != 0 {
                        label = part.label;
                    }
                }
            }
        }
        let idx = ((k * n[1] + j) * n[0] + i) as u64;
        if ct {
            val += noise as f32 * hashed_normal(noise_seed, idx);
        } else {
            let q = p / (150.0 * s);
            let b = 1.0 + bias[0] * q.x + bias[1] * q.y + bias[2] * q.z + bias[3] * (q.x * q.x - q.z * q.z);
            let a = val * b as f32;
            let n1 = noise as f32 * hashed_normal(noise_seed, idx);
            let n2 = noise as f32 * hashed_normal(noise_seed ^ 0xABCD, idx);
            val = ((a + n1).powi(2) + n2 * n2).sqrt();
        }
        *v = val;
        *l = label;
    });
    let name = match scene {
        Scene::Chest => "chest",
        Scene::Abdomen => "abdomen",
        _ => "head",
    };
    let meta = VolumeMeta { description: format!("sam3d-studio {name} phantom seed {seed}"), ..Default::default() };
    PhantomCase {
        volume: Volume { data: img, ras_from_voxel, meta: meta.clone() },
        labels: LabelMap { data: lab, ras_from_voxel, meta },
        organs: Vec::new(),
        slice_normal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::family::Family;
    use crate::data::phantom::label_centroid;
    use std::collections::{BTreeMap, BTreeSet};

    fn name(id: u16) -> &'static str {
        SCENE_LABELS.iter().find(|l| l.0 == id).map(|l| l.1).unwrap_or_else(|| panic!("label {id} has no name"))
    }

    fn mean_where(case: &PhantomCase, label: u16) -> f64 {
        let (mut sum, mut n) = (0.0, 0usize);
        for (v, l) in case.volume.data.iter().zip(case.labels.data.iter()) {
            if *l == label {
                sum += *v as f64;
                n += 1;
            }
        }
        sum / n.max(1) as f64
    }

    #[test]
    fn scenes_are_deterministic_per_seed() {
        let spec = PhantomSpec::medium(Modality::Ct);
        for scene in [Scene::Chest, Scene::Abdomen, Scene::Head] {
            let a = generate_scene(scene, &spec, 3);
            let b = generate_scene(scene, &spec, 3);
            let c = generate_scene(scene, &spec, 4);
            assert_eq!(a.volume.data, b.volume.data, "{scene:?}");
            assert_eq!(a.labels.data, b.labels.data, "{scene:?}");
            assert_ne!(a.labels.data.shape(), &[0, 0, 0]);
            assert!(a.volume.ras_from_voxel != c.volume.ras_from_voxel || a.labels.data != c.labels.data, "{scene:?}");
        }
        let organs = generate_scene(Scene::Organs, &PhantomSpec::small(Modality::Ct), 5);
        assert_eq!(organs.labels.data, crate::data::phantom::generate(&PhantomSpec::small(Modality::Ct), 5).labels.data);
    }

    /// Over seeds that flip, permute and tilt the grid, every scene holds the families it
    /// promises, each structure where the scene puts it.
    #[test]
    fn each_scene_holds_its_families_where_it_puts_them() {
        let spec = PhantomSpec::medium(Modality::Ct);
        let mut lesion_ml = Vec::new();
        let mut orientations = BTreeSet::new();
        for seed in 0..4 {
            for (scene, want) in [
                (Scene::Chest, vec![Family::Lung, Family::Vessel, Family::Bone, Family::Organ, Family::Lesion]),
                (Scene::Abdomen, vec![Family::Organ, Family::Vessel, Family::Bone, Family::Lesion]),
                (Scene::Head, vec![Family::Organ, Family::Bone, Family::Lesion]),
            ] {
                let case = generate_scene(scene, &spec, seed);
                orientations.insert(crate::geometry::axcodes(&case.volume.ras_from_voxel));
                let counts: BTreeMap<u16, usize> = case.labels.counts().into_iter().filter(|c| c.0 != 0).collect();
                let families: BTreeSet<Family> = counts.keys().map(|&l| Family::of(name(l))).collect();
                for f in &want {
                    assert!(families.contains(f), "{scene:?} seed {seed}: no {f:?} among {:?}", counts.keys().map(|&l| name(l)).collect::<Vec<_>>());
                }
                let ml = case.volume.ras_from_voxel.voxel_ml();
                for (&l, &n) in &counts {
                    if Family::of(name(l)) == Family::Lesion {
                        lesion_ml.push(n as f64 * ml);
                    }
                }
                let c = |l: u16| label_centroid(&case.labels, l).unwrap_or_else(|| panic!("{scene:?} seed {seed}: no {}", name(l)));
                match scene {
                    Scene::Chest => {
                        // RAS: the left lung at x < 0, the trachea above the heart, the
                        // vertebrae T4 … T11 from top to bottom, behind the heart.
                        assert!(c(120).x() < -20.0 && c(121).x() > 20.0, "seed {seed}: lungs {:?} {:?}", c(120), c(121));
                        assert!(c(16).z() > c(51).z() + 40.0, "seed {seed}");
                        let zs: Vec<f64> = (33..=40).rev().map(|l| c(l).z()).collect();
                        assert!(zs.windows(2).all(|w| w[0] > w[1] + 10.0), "seed {seed}: vertebrae z {zs:?}");
                        assert!(c(36).y() < c(51).y() - 40.0, "seed {seed}");
                        assert!(mean_where(&case, 121) < -650.0, "seed {seed}: lung {}", mean_where(&case, 121));
                        assert!(mean_where(&case, 36) > 280.0, "seed {seed}: vertebra {}", mean_where(&case, 36));
                    }
                    Scene::Abdomen => {
                        assert!(c(5).x() > 20.0 && c(1).x() < -20.0, "seed {seed}");
                        assert!(c(31).z() > c(27).z() + 60.0, "seed {seed}");
                        // Each liver lesion lies in the liver: most of what borders it is liver.
                        for l in 140..143u16 {
                            let (mut liver, mut other) = (0usize, 0usize);
                            let d = case.labels.data.dim();
                            for ((k, j, i), &v) in case.labels.data.indexed_iter() {
                                if v != l {
                                    continue;
                                }
                                for (dk, dj, di) in [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)] {
                                    let q = (k as i64 + dk, j as i64 + dj, i as i64 + di);
                                    if q.0 < 0 || q.1 < 0 || q.2 < 0 || q.0 >= d.0 as i64 || q.1 >= d.1 as i64 || q.2 >= d.2 as i64 {
                                        continue;
                                    }
                                    match case.labels.data[[q.0 as usize, q.1 as usize, q.2 as usize]] {
                                        x if x == l => {}
                                        5 => liver += 1,
                                        _ => other += 1,
                                    }
                                }
                            }
                            assert!(liver >= 2 * other, "seed {seed}: lesion {l} borders liver {liver}, other {other}");
                        }
                    }
                    _ => {
                        // The skull around the brain: the brain's centroid is brain, and the
                        // skull is brighter than 700 HU, the brain (36–42 HU, its edge mixed with bone) darker than 60.
                        assert!((c(90).v - c(91).v).norm() < 15.0, "seed {seed}");
                        let (skull, brain) = (mean_where(&case, 91), mean_where(&case, 90));
                        assert!(skull > 700.0 && (25.0..60.0).contains(&brain), "seed {seed}: skull {skull}, brain {brain}");
                    }
                }
            }
        }
        assert!(orientations.len() >= 3, "{orientations:?}");
        // Lesions from under 5 ml to over 50 ml, none over the largest drawn.
        assert!(lesion_ml.iter().any(|&v| v < 5.0) && lesion_ml.iter().any(|&v| v > 50.0), "{lesion_ml:?}");
        assert!(lesion_ml.iter().all(|&v| v < 600.0), "{lesion_ml:?}");
    }

    #[test]
    fn shapes_measure_what_they_are_drawn_with() {
        let cap = Capsule { a: V3::zeros(), b: V3::new(0.0, 0.0, 10.0), ra: 2.0, rb: 1.0 };
        assert!((cap.sdf(&V3::new(5.0, 0.0, 0.0)) - 3.0).abs() < 1e-9);
        assert!((cap.sdf(&V3::new(0.0, 0.0, 5.0)) + 1.5).abs() < 1e-9);
        assert!((cap.sdf(&V3::new(0.0, 0.0, 13.0)) - 2.0).abs() < 1e-9);
        let b = Piece::RoundBox { c: V3::zeros(), rot: Matrix3::identity(), half: V3::new(4.0, 3.0, 2.0), round: 0.5 };
        assert!((b.sdf(&V3::new(6.0, 0.0, 0.0)) - 2.0).abs() < 1e-9);
        assert!((b.sdf(&V3::zeros()) + 2.0).abs() < 1e-9);
        // A lesion of V ml holds about V ml (before its lobes, spicules and the grid).
        let mut rng = Rng::new(1);
        let p = lesion_piece(&mut rng, V3::zeros(), 20.0, 0.0);
        let (lo, hi) = p.bounds();
        let step = 0.5;
        let mut inside = 0usize;
        let mut z = lo.z;
        while z < hi.z {
            let mut y = lo.y;
            while y < hi.y {
                let mut x = lo.x;
                while x < hi.x {
                    inside += (p.sdf(&V3::new(x, y, z)) <= 0.0) as usize;
                    x += step;
                }
                y += step;
            }
            z += step;
        }
        let ml = inside as f64 * step.powi(3) / 1000.0;
        assert!((ml - 20.0).abs() < 20.0 * 0.35, "{ml} ml");
    }
}
