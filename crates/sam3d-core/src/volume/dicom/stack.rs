//! A series' geometry: the frames sorted along the slice normal and the `RasFromVoxel` they
//! define, or the reason there is no honest one.
//!
//! Rules (decided here, tested in this file and against SimpleITK in `tests/dicom_oracle.rs`):
//! - Slices are sorted by the projection of ImagePositionPatient on the normal
//!   `row_dir × col_dir`, ascending (as ITK/GDCM): never by InstanceNumber or file name.
//! - Two slices at the same position (within [`SAME_POSITION_MM`]) refuse: several echoes,
//!   phases or acquisitions share the series and no single volume is right.
//! - A gap longer than [`MISSING_GAP_RATIO`] × the median gap refuses as a missing slice,
//!   naming the two positions around it.
//! - The slice step is the mean step vector `(last − first) / (n − 1)`. A slice further than
//!   [`UNEVEN_WARN`] × |step| from where that step puts it is warned about (naming it and its
//!   neighbours); further than [`UNEVEN_REFUSE`] × |step| refuses: past that, the one affine
//!   would misplace voxels by more than a tenth of a slice.
//! - When the step is not along the normal (gantry tilt), the affine keeps it: a sheared affine
//!   that puts each voxel centre at its file's ImagePositionPatient (ITK would use the normal
//!   and misplace every slice but the first). A warning names the angle.
//! - A single slice gets the normal times SpacingBetweenSlices, else 1 mm (as ITK/GDCM).

use super::header::Frame;
use crate::geometry::{DicomPlane, LpsMm, RasFromVoxel};
use nalgebra::Vector3;
use std::path::Path;

/// Positions closer than this along the normal are "the same slice".
pub const SAME_POSITION_MM: f64 = 1e-3;
/// A gap this many times the median gap means slices are missing.
pub const MISSING_GAP_RATIO: f64 = 1.5;
/// Deviation from the mean-step line, as a fraction of the step, that is warned about.
pub const UNEVEN_WARN: f64 = 1e-3;
/// Deviation, as a fraction of the step, past which the series is refused.
pub const UNEVEN_REFUSE: f64 = 0.1;
/// Angle between the step and the normal above which a gantry tilt is reported (degrees).
pub const TILT_WARN_DEG: f64 = 0.01;
/// Angle past which the "stack" is not a stack (degrees).
pub const TILT_REFUSE_DEG: f64 = 60.0;

/// The geometry of a stack of frames.
#[derive(Clone, Debug)]
pub(crate) struct StackGeometry {
    /// Indices into the frames given, in slice order (k = 0, 1, …).
    pub order: Vec<usize>,
    pub ras_from_voxel: RasFromVoxel,
    /// Voxel spacing (i, j, k) in mm: column spacing, row spacing, |slice step|.
    pub spacing: [f64; 3],
    /// Things the user should know (tilt, uneven spacing, a guessed step).
    pub warnings: Vec<String>,
}

/// Sorts `frames` (all in one plane, see `series`) and builds their affine. `file_of` names a
/// frame's file for messages; `single_step` is the step of a lone slice.
pub(crate) fn stack_geometry(frames: &[&Frame], file_of: &dyn Fn(&Frame) -> String, single_step: Option<f64>) -> Result<StackGeometry, String> {
    let first = frames.first().ok_or("no frames")?;
    let mut warnings = Vec::new();
    let plane = match first.plane {
        Some(p) => p,
        None if frames.len() == 1 => {
            warnings.push("no ImageOrientationPatient: identity orientation assumed".to_string());
            DicomPlane::new([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], first.pixel_spacing)
        }
        None => return Err(format!("{} frames but no ImageOrientationPatient: their order and place are unknown", frames.len())),
    };
    let err = plane.orthonormality_error();
    if err > 1e-3 {
        return Err(format!("ImageOrientationPatient {:?} {:?} is not two perpendicular unit vectors (error {err:.2e})", plane.row_dir.as_slice(), plane.col_dir.as_slice()));
    }
    let n = plane.normal().normalize();
    if frames.len() == 1 {
        let position = first.position.unwrap_or_else(|| {
            warnings.push("no ImagePositionPatient: origin 0 assumed".to_string());
            LpsMm::new(0.0, 0.0, 0.0)
        });
        let step = single_step.unwrap_or(1.0);
        let ras_from_voxel = plane.ras_from_voxel(position, n * step);
        return Ok(StackGeometry { order: vec![0], ras_from_voxel, spacing: [plane.pixel_spacing[1], plane.pixel_spacing[0], step], warnings });
    }
    let mut keyed = Vec::with_capacity(frames.len());
    for (idx, f) in frames.iter().enumerate() {
        let p = f.position.ok_or_else(|| format!("{} has no ImagePositionPatient: the slice order is unknown", file_of(f)))?;
        keyed.push((n.dot(&p.v), idx, p));
    }
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let at = |s: usize| format!("{} ({})", fmt_lps(keyed[s].2), file_of(frames[keyed[s].1]));

    let gaps: Vec<f64> = keyed.windows(2).map(|w| w[1].0 - w[0].0).collect();
    if let Some(s) = gaps.iter().position(|g| *g < SAME_POSITION_MM) {
        let same = keyed.iter().filter(|k| (k.0 - keyed[s].0).abs() < SAME_POSITION_MM).count();
        return Err(format!(
            "{same} slices at the same position {} (several echoes, phases or acquisitions in one series?)",
            at(s)
        ));
    }
    let mut sorted_gaps = gaps.clone();
    sorted_gaps.sort_by(f64::total_cmp);
    let median = sorted_gaps[sorted_gaps.len() / 2];
    if let Some((s, g)) = gaps.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))
        && *g > MISSING_GAP_RATIO * median
    {
        return Err(format!(
            "missing slice(s) between {} and {}: a gap of {g:.3} mm where the others are {median:.3} mm",
            at(s),
            at(s + 1)
        ));
    }

    let count = keyed.len();
    let p0 = keyed[0].2.v;
    let step: Vector3<f64> = (keyed[count - 1].2.v - p0) / (count - 1) as f64;
    let len = step.norm();
    let (worst, dev) = (0..count)
        .map(|s| (s, (keyed[s].2.v - (p0 + step * s as f64)).norm()))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0));
    let around = |s: usize| {
        let lo = s.saturating_sub(1);
        let hi = (s + 1).min(count - 1);
        format!("between {} and {} (slice {s} is {dev:.3} mm off an even step of {len:.3} mm)", at(lo), at(hi))
    };
    if dev > UNEVEN_REFUSE * len {
        return Err(format!("uneven slice spacing {}", around(worst)));
    }
    if dev > UNEVEN_WARN * len + 1e-4 {
        warnings.push(format!("uneven slice spacing {}; the mean step is used", around(worst)));
    }
    let angle = (n.dot(&step) / len).clamp(-1.0, 1.0).abs().acos().to_degrees();
    if angle > TILT_REFUSE_DEG {
        return Err(format!("the slices step {angle:.1}° away from their normal: not a stack of slices"));
    }
    if angle > TILT_WARN_DEG {
        warnings.push(format!(
            "gantry tilt of {angle:.2}°: the affine is sheared so each voxel centre stays at its slice's ImagePositionPatient"
        ));
    }
    let ras_from_voxel = plane.ras_from_voxel(LpsMm::from_vec(p0), step);
    let order = keyed.iter().map(|k| k.1).collect();
    Ok(StackGeometry { order, ras_from_voxel, spacing: [plane.pixel_spacing[1], plane.pixel_spacing[0], len], warnings })
}

fn fmt_lps(p: LpsMm) -> String {
    format!("({:.3}, {:.3}, {:.3}) LPS", p.x(), p.y(), p.z())
}

/// The file name of a path, for messages.
pub(crate) fn short(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::VoxelIjk;

    fn frames_at(zs: &[f64], iop: [f64; 6]) -> Vec<Frame> {
        zs.iter()
            .enumerate()
            .map(|(n, z)| Frame {
                file: n,
                number: 0,
                plane: Some(DicomPlane::new(iop, [0.5, 0.5])),
                pixel_spacing: [0.5, 0.5],
                position: Some(LpsMm::new(1.0, 2.0, *z)),
                slope: 1.0,
                intercept: 0.0,
            })
            .collect()
    }
    const AXIAL: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];

    fn geom(zs: &[f64]) -> Result<StackGeometry, String> {
        let f = frames_at(zs, AXIAL);
        let refs: Vec<&Frame> = f.iter().collect();
        stack_geometry(&refs, &|f: &Frame| format!("f{}", f.file), None)
    }

    #[test]
    fn sorts_by_position_not_by_given_order() {
        let g = geom(&[4.0, 0.0, 6.0, 2.0, 8.0]).expect("even");
        assert_eq!(g.order, vec![1, 3, 0, 2, 4]);
        assert!(g.warnings.is_empty(), "{:?}", g.warnings);
        let p = g.ras_from_voxel.apply(VoxelIjk::new(0.0, 0.0, 4.0));
        assert!((p.z() - 8.0).abs() < 1e-12 && (p.x() + 1.0).abs() < 1e-12, "{p:?}");
    }

    #[test]
    fn refuses_missing_duplicate_and_badly_uneven_slices_and_names_positions() {
        let e = geom(&[0.0, 2.0, 6.0, 8.0]).expect_err("missing");
        assert!(e.contains("missing slice") && e.contains("(1.000, 2.000, 2.000) LPS (f1)") && e.contains("6.000) LPS (f2)"), "{e}");
        let e = geom(&[0.0, 2.0, 2.0, 4.0]).expect_err("duplicate");
        assert!(e.contains("2 slices at the same position"), "{e}");
        let e = geom(&[0.0, 2.0, 4.0, 6.8, 8.0]).expect_err("uneven");
        assert!(e.contains("uneven slice spacing"), "{e}");
    }

    #[test]
    fn warns_on_slightly_uneven_spacing_and_uses_the_mean_step() {
        let g = geom(&[0.0, 2.5, 5.0, 7.6, 10.1]).expect("within tolerance");
        assert!(g.warnings.iter().any(|w| w.contains("uneven")), "{:?}", g.warnings);
        assert!((g.spacing[2] - 2.525).abs() < 1e-12);
    }

    #[test]
    fn a_single_slice_steps_along_the_normal() {
        let f = frames_at(&[3.0], [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]);
        let g = stack_geometry(&[&f[0]], &|_: &Frame| String::new(), Some(4.0)).expect("one");
        // normal = (0,1,0) × (0,0,-1) = (-1, 0, 0) LPS = +x RAS.
        assert!((g.ras_from_voxel.linear().column(2) - Vector3::new(4.0, 0.0, 0.0)).norm() < 1e-12);
    }
}
