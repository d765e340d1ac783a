//! DICOM's patient geometry (LPS) as a `RasFromVoxel`: the one place where a series'
//! ImageOrientationPatient, PixelSpacing and ImagePositionPatient become an affine, and where
//! LPS turns into RAS (once, at the end).
//!
//! DICOM's convention (PS3.3 C.7.6.2.1.1), which ITK/SimpleITK and nibabel follow:
//! - the first three values of ImageOrientationPatient are the **row direction**: the direction
//!   in which the column index i grows along a row; the step between columns is
//!   `PixelSpacing[1]`;
//! - the next three are the **column direction**: where the row index j grows down a column;
//!   the step between rows is `PixelSpacing[0]`;
//! - ImagePositionPatient is the centre of the first transmitted pixel (i = j = 0) of a slice.
//!
//! The voxel (i, j, k) is (column, row, slice). The slice axis is the step between consecutive
//! slice positions, not the normal: with a gantry tilt the two differ, and only the step puts
//! every voxel centre at its file's ImagePositionPatient (a sheared affine, as nibabel and
//! dcm2niix without resampling give; ITK uses the normal instead).

use super::{Affine3, Lps, LpsMm, RasFromVoxel, Voxel, lps_from_ras};
use nalgebra::{Matrix3, Vector3};

/// LPS millimetres from a continuous voxel index: DICOM's own affine, before the flip.
pub type LpsFromVoxel = Affine3<Lps, Voxel>;

/// The in-plane frame of one DICOM image: ImageOrientationPatient and PixelSpacing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DicomPlane {
    /// IOP[0..3]: LPS direction of increasing column index i.
    pub row_dir: Vector3<f64>,
    /// IOP[3..6]: LPS direction of increasing row index j.
    pub col_dir: Vector3<f64>,
    /// PixelSpacing as stored: `[between rows (along col_dir), between columns (along row_dir)]`.
    pub pixel_spacing: [f64; 2],
}

impl DicomPlane {
    /// From ImageOrientationPatient (6 values) and PixelSpacing (2 values) as stored.
    pub fn new(iop: [f64; 6], pixel_spacing: [f64; 2]) -> Self {
        DicomPlane {
            row_dir: Vector3::new(iop[0], iop[1], iop[2]),
            col_dir: Vector3::new(iop[3], iop[4], iop[5]),
            pixel_spacing,
        }
    }

    /// The slice normal `row_dir × col_dir` (LPS), along which slices are sorted.
    pub fn normal(&self) -> Vector3<f64> {
        self.row_dir.cross(&self.col_dir)
    }

    /// How far the two directions are from unit length and from perpendicular (max abs error of
    /// |r|−1, |c|−1, r·c). Scanners write 6–8 digits; anything above ~1e-3 is a broken header.
    pub fn orthonormality_error(&self) -> f64 {
        let r = self.row_dir;
        let c = self.col_dir;
        (r.norm() - 1.0).abs().max((c.norm() - 1.0).abs()).max(r.dot(&c).abs())
    }

    /// Position of slice `p` along the normal: the sort key of a series' slices.
    pub fn offset_along_normal(&self, p: LpsMm) -> f64 {
        self.normal().normalize().dot(&p.v)
    }

    /// LPS-from-voxel for a stack of slices whose first slice is at `first` and whose
    /// consecutive slices step by `slice_step` (LPS mm; for a single slice pass the normal
    /// times the slice thickness). The directions are normalised (headers round them).
    pub fn lps_from_voxel(&self, first: LpsMm, slice_step: Vector3<f64>) -> LpsFromVoxel {
        let r = self.row_dir.normalize() * self.pixel_spacing[1];
        let c = self.col_dir.normalize() * self.pixel_spacing[0];
        LpsFromVoxel::from_parts(Matrix3::from_columns(&[r, c, slice_step]), first.v)
    }

    /// The same, in RAS: x and y negated once, here.
    pub fn ras_from_voxel(&self, first: LpsMm, slice_step: Vector3<f64>) -> RasFromVoxel {
        ras_from_lps_affine(&self.lps_from_voxel(first, slice_step))
    }
}

/// RAS-from-voxel from an LPS-from-voxel affine (negate the first two rows).
pub fn ras_from_lps_affine(lps: &LpsFromVoxel) -> RasFromVoxel {
    // lps_from_ras is its own inverse: as a transform it is also ras_from_lps.
    let ras_from_lps: Affine3<super::Ras, Lps> = lps_from_ras().relabel();
    ras_from_lps * *lps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::VoxelIjk;

    #[test]
    fn columns_follow_the_dicom_iop_convention_and_flip_to_ras() {
        // Rows along +x (LPS), columns along +y; 0.7 mm between rows, 0.8 between columns.
        let plane = DicomPlane::new([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], [0.7, 0.8]);
        let a = plane.ras_from_voxel(LpsMm::new(10.0, 20.0, 30.0), Vector3::new(0.0, 0.0, 2.5));
        // Voxel (i=1, j=0): one column along the row direction, 0.8 mm, LPS +x = RAS -x.
        let p = a.apply(VoxelIjk::new(1.0, 0.0, 0.0));
        assert!((p.to_array()[0] - (-10.0 - 0.8)).abs() < 1e-12, "{p:?}");
        // Voxel (i=0, j=1): one row along the column direction, 0.7 mm, LPS +y = RAS -y.
        let q = a.apply(VoxelIjk::new(0.0, 1.0, 0.0));
        assert!((q.to_array()[1] - (-20.0 - 0.7)).abs() < 1e-12, "{q:?}");
        assert_eq!(a.apply(VoxelIjk::new(0.0, 0.0, 2.0)).to_array(), [-10.0, -20.0, 35.0]);
    }

    #[test]
    fn a_tilted_stack_puts_each_voxel_centre_at_its_position() {
        let t = 15f64.to_radians();
        let plane = DicomPlane::new([1.0, 0.0, 0.0, 0.0, t.cos(), t.sin()], [1.0, 1.0]);
        let step = Vector3::new(0.0, 0.0, 3.0);
        let first = LpsMm::new(-5.0, -5.0, 10.0);
        let a = plane.lps_from_voxel(first, step);
        for k in 0..5 {
            let want = first.v + step * k as f64;
            assert!((a.apply(VoxelIjk::new(0.0, 0.0, k as f64)).v - want).norm() < 1e-12);
        }
        assert!(plane.orthonormality_error() < 1e-12);
    }
}
