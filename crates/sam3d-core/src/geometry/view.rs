//! The three anatomical view planes of a volume, voxel-aligned (as ITK-SNAP and Slicer's
//! "rotate to volume plane" show them): each view shows one voxel plane, with the in-plane voxel
//! axes closest to the view's screen directions, in physical proportions.

use super::{
    Affine3, GridShape, RasFromSlice, RasFromVoxel, Screen, ScreenFromSlice, Slice, Voxel,
    VoxelIjk, io_orientation,
};
use nalgebra::{Matrix4, Vector3};

/// An anatomical view plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ViewPlane {
    Axial,
    Coronal,
    Sagittal,
}

impl ViewPlane {
    pub const ALL: [ViewPlane; 3] = [ViewPlane::Axial, ViewPlane::Coronal, ViewPlane::Sagittal];

    pub fn name(&self) -> &'static str {
        match self {
            ViewPlane::Axial => "axial",
            ViewPlane::Coronal => "coronal",
            ViewPlane::Sagittal => "sagittal",
        }
    }
    /// World axis (0 = R/L, 1 = A/P, 2 = S/I) normal to the plane.
    pub fn normal_world_axis(&self) -> usize {
        match self {
            ViewPlane::Axial => 2,
            ViewPlane::Coronal => 1,
            ViewPlane::Sagittal => 0,
        }
    }
    /// (world axis, sign) that screen-right points along, and (world axis, sign) for screen-up.
    /// Radiological: patient left on screen right for axial and coronal. Sagittal shows anterior
    /// on the left whatever the convention (as Slicer does).
    fn screen_axes(&self, conv: DisplayConvention) -> ((usize, f64), (usize, f64)) {
        let lr = match conv {
            DisplayConvention::Radiological => -1.0,
            DisplayConvention::Neurological => 1.0,
        };
        match self {
            ViewPlane::Axial => ((0, lr), (1, 1.0)),
            ViewPlane::Coronal => ((0, lr), (2, 1.0)),
            ViewPlane::Sagittal => ((1, -1.0), (2, 1.0)),
        }
    }
}

impl std::str::FromStr for ViewPlane {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "axial" | "ax" | "transverse" => Ok(ViewPlane::Axial),
            "coronal" | "cor" => Ok(ViewPlane::Coronal),
            "sagittal" | "sag" => Ok(ViewPlane::Sagittal),
            _ => Err(format!("unknown plane '{s}' (expected axial, coronal or sagittal)")),
        }
    }
}

/// Which side of the screen the patient's left is on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DisplayConvention {
    /// Patient left on screen right (radiology default).
    #[default]
    Radiological,
    /// Patient left on screen left.
    Neurological,
}

/// Where a slice's pixels are in the voxel grid: see [`SliceGeometry::pixel_walk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelWalk {
    /// Voxel (i, j, k) of the top-left pixel.
    pub start: [usize; 3],
    /// Voxel-index step (i, j, k) for one pixel to the right.
    pub per_col: [isize; 3],
    /// Voxel-index step (i, j, k) for one pixel down.
    pub per_row: [isize; 3],
}

/// How one view plane sits in a volume's voxel grid.
///
/// The slice frame: `u` (screen right) and `v` (screen up) in millimetres, measured from the
/// first displayed voxel centre; `w` in millimetres along the normal voxel axis from voxel 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SliceGeometry {
    pub plane: ViewPlane,
    /// Voxel axes (0 = i, 1 = j, 2 = k) shown horizontally, vertically, and through the plane.
    pub u_axis: usize,
    pub v_axis: usize,
    pub n_axis: usize,
    /// Whether u (v) runs against the voxel index.
    pub u_flip: bool,
    pub v_flip: bool,
    /// Voxel spacing along u, v, n (mm).
    pub spacing_mm: [f64; 3],
    /// Voxel counts along u, v, n.
    pub extent: [usize; 3],
    ras_from_voxel: RasFromVoxel,
}

impl SliceGeometry {
    pub fn new(
        plane: ViewPlane,
        ras_from_voxel: &RasFromVoxel,
        shape: GridShape,
        conv: DisplayConvention,
    ) -> Self {
        let o = io_orientation(ras_from_voxel);
        let ((wu, su), (wv, sv)) = plane.screen_axes(conv);
        let u_axis = o.voxel_axis_for_world(wu);
        let v_axis = o.voxel_axis_for_world(wv);
        let n_axis = o.voxel_axis_for_world(plane.normal_world_axis());
        let sign = |ax: usize| if o.positive[ax] { 1.0 } else { -1.0 };
        let sp = ras_from_voxel.column_norms();
        let n = shape.ijk();
        Self {
            plane,
            u_axis,
            v_axis,
            n_axis,
            u_flip: sign(u_axis) != su,
            v_flip: sign(v_axis) != sv,
            spacing_mm: [sp[u_axis], sp[v_axis], sp[n_axis]],
            extent: [n[u_axis], n[v_axis], n[n_axis]],
            ras_from_voxel: *ras_from_voxel,
        }
    }

    /// How far this voxel-aligned view is from the true anatomical plane its letters name, in
    /// degrees: the largest angle between a shown voxel axis (across, up, and the normal of the
    /// two) and the world axis it stands for. 0 for a scan acquired straight; a tilted gantry or
    /// an oblique MR gives more, and the view's letters are then only the nearest directions.
    pub fn obliquity_deg(&self) -> f64 {
        let m = self.ras_from_voxel.linear();
        let col = |a: usize| m.column(a).into_owned();
        let (u, v) = (col(self.u_axis), col(self.v_axis));
        let n = u.cross(&v);
        let ((wu, _), (wv, _)) = self.plane.screen_axes(DisplayConvention::Radiological);
        let angle = |d: nalgebra::Vector3<f64>, world: usize| {
            let len = d.norm();
            if len > 0.0 && len.is_finite() { (d[world].abs() / len).clamp(0.0, 1.0).acos().to_degrees() } else { 0.0 }
        };
        angle(u, wu).max(angle(v, wv)).max(angle(n, self.plane.normal_world_axis()))
    }

    /// Continuous voxel position of a slice-frame point.
    pub fn voxel_from_slice(&self) -> Affine3<Voxel, Slice> {
        let mut m = Matrix4::zeros();
        m[(3, 3)] = 1.0;
        let [su, sv, sn] = self.spacing_mm;
        let [nu, nv, _] = self.extent;
        let mut put = |axis: usize, col: usize, sp: f64, flip: bool, n: usize| {
            if flip {
                m[(axis, col)] = -1.0 / sp;
                m[(axis, 3)] = n as f64 - 1.0;
            } else {
                m[(axis, col)] = 1.0 / sp;
            }
        };
        put(self.u_axis, 0, su, self.u_flip, nu);
        put(self.v_axis, 1, sv, self.v_flip, nv);
        put(self.n_axis, 2, sn, false, 0);
        Affine3::from_matrix(m).unwrap_or_else(|_| Affine3::identity())
    }

    pub fn ras_from_slice(&self) -> RasFromSlice {
        self.ras_from_voxel * self.voxel_from_slice()
    }

    /// Slice-frame w (mm) of slice index `n` along the normal axis.
    pub fn w_of_index(&self, n: usize) -> f64 {
        n as f64 * self.spacing_mm[2]
    }

    /// The slice (index along the normal voxel axis) through a voxel position, clamped.
    pub fn slice_index_of(&self, p: VoxelIjk) -> usize {
        let x = p.v[self.n_axis].round();
        x.clamp(0.0, self.extent[2].saturating_sub(1) as f64) as usize
    }

    /// Displayed size in mm (voxel edges to voxel edges): (width, height).
    pub fn size_mm(&self) -> (f64, f64) {
        (self.extent[0] as f64 * self.spacing_mm[0], self.extent[1] as f64 * self.spacing_mm[1])
    }

    /// For a displayed pixel (column from the left, row from the top) of slice `n`: the voxel
    /// index (i, j, k). Columns/rows are in voxel units (the texture is `extent[0]×extent[1]`).
    pub fn voxel_of_pixel(&self, col: usize, row: usize, n: usize) -> [usize; 3] {
        let [nu, nv, _] = self.extent;
        let mut ijk = [0usize; 3];
        ijk[self.u_axis] = if self.u_flip { nu - 1 - col } else { col };
        // Row 0 is the top of the screen, i.e. the largest v.
        let vi = nv - 1 - row;
        ijk[self.v_axis] = if self.v_flip { nv - 1 - vi } else { vi };
        ijk[self.n_axis] = n;
        ijk
    }

    /// The voxel index of pixel (0, 0) of slice `n` and the signed voxel-index steps for one
    /// column to the right and one row down: pixel (c, r) is `start + c·per_col + r·per_row`.
    /// The same mapping as [`Self::voxel_of_pixel`], in the form a texture-filling loop wants.
    pub fn pixel_walk(&self, n: usize) -> PixelWalk {
        let start = self.voxel_of_pixel(0, 0, n);
        let mut per_col = [0isize; 3];
        let mut per_row = [0isize; 3];
        per_col[self.u_axis] = if self.u_flip { -1 } else { 1 };
        // Rows run downwards, i.e. towards smaller v.
        per_row[self.v_axis] = if self.v_flip { 1 } else { -1 };
        PixelWalk { start, per_col, per_row }
    }

    /// +1 when increasing the slice index moves towards the plane's positive world direction
    /// (S for axial, A for coronal, R for sagittal), else −1.
    pub fn index_step_sign(&self) -> i32 {
        let n = self.ras_from_slice().linear().column(2).into_owned();
        if n[self.plane.normal_world_axis()] >= 0.0 { 1 } else { -1 }
    }

    /// Orientation letters on the (left, right, top, bottom) edges, from where +u and +v really
    /// point in RAS (nearest world axis).
    pub fn edge_letters(&self) -> [char; 4] {
        let l = self.ras_from_slice().linear();
        let letter = |d: Vector3<f64>| -> (char, char) {
            let (mut best, mut a) = (0, -1.0);
            for w in 0..3 {
                if d[w].abs() > a {
                    a = d[w].abs();
                    best = w;
                }
            }
            const POS: [char; 3] = ['R', 'A', 'S'];
            const NEG: [char; 3] = ['L', 'P', 'I'];
            if d[best] >= 0.0 { (POS[best], NEG[best]) } else { (NEG[best], POS[best]) }
        };
        let (right, left) = letter(l.column(0).into_owned());
        let (top, bottom) = letter(l.column(1).into_owned());
        [left, right, top, bottom]
    }

    /// Screen pixels from the slice frame for a view occupying `rect_min`..`rect_min+rect_size`
    /// (pixels), fitted to show the whole slice at `zoom = 1`, with a pan offset in pixels.
    /// Physical proportions are kept: one mm is the same number of pixels along u and v.
    pub fn screen_from_slice(
        &self,
        rect_min: [f64; 2],
        rect_size: [f64; 2],
        zoom: f64,
        pan_px: [f64; 2],
    ) -> ScreenFromSlice {
        let (w_mm, h_mm) = self.size_mm();
        let fit = (rect_size[0] / w_mm).min(rect_size[1] / h_mm).max(1e-9);
        let px_per_mm = fit * zoom;
        // Centre of the slice extent in the slice frame (voxel edges at -half a voxel).
        let cu = (self.extent[0] as f64 - 1.0) * 0.5 * self.spacing_mm[0];
        let cv = (self.extent[1] as f64 - 1.0) * 0.5 * self.spacing_mm[1];
        let cx = rect_min[0] + rect_size[0] * 0.5 + pan_px[0];
        let cy = rect_min[1] + rect_size[1] * 0.5 + pan_px[1];
        let mut m = Matrix4::zeros();
        m[(0, 0)] = px_per_mm;
        m[(0, 3)] = cx - px_per_mm * cu;
        m[(1, 1)] = -px_per_mm; // screen y grows downwards, v upwards
        m[(1, 3)] = cy + px_per_mm * cv;
        m[(2, 2)] = 1.0;
        m[(3, 3)] = 1.0;
        Affine3::<Screen, Slice>::from_matrix(m).unwrap_or_else(|_| Affine3::identity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{RasMm, ScreenPx};
    use nalgebra::Matrix3;

    fn geom(lin: Matrix3<f64>, plane: ViewPlane) -> SliceGeometry {
        let a = RasFromVoxel::from_parts(lin, Vector3::new(-50.0, 30.0, 10.0));
        SliceGeometry::new(plane, &a, GridShape::new(10, 20, 30), DisplayConvention::Radiological)
    }

    #[test]
    fn letters_ras_and_lps() {
        let ras = Matrix3::identity();
        assert_eq!(geom(ras, ViewPlane::Axial).edge_letters(), ['R', 'L', 'A', 'P']);
        assert_eq!(geom(ras, ViewPlane::Coronal).edge_letters(), ['R', 'L', 'S', 'I']);
        assert_eq!(geom(ras, ViewPlane::Sagittal).edge_letters(), ['A', 'P', 'S', 'I']);
        let lps = Matrix3::from_diagonal(&Vector3::new(-1.0, -1.0, 1.0));
        // The same anatomy on screen, whatever the storage order.
        assert_eq!(geom(lps, ViewPlane::Axial).edge_letters(), ['R', 'L', 'A', 'P']);
        let g = geom(lps, ViewPlane::Axial);
        assert!(!g.u_flip && g.v_flip, "LPS i already runs towards L; j runs towards P");
    }

    #[test]
    fn obliquity_is_the_tilt_of_the_scan_and_zero_when_straight() {
        let straight = Matrix3::from_diagonal(&Vector3::new(0.7, 0.7, 2.5));
        for p in ViewPlane::ALL {
            assert!(geom(straight, p).obliquity_deg() < 1e-9);
            let lps = Matrix3::from_diagonal(&Vector3::new(-1.0, -1.0, 3.0));
            assert!(geom(lps, p).obliquity_deg() < 1e-9, "flips are not obliquity");
        }
        // A gantry tilted 15 degrees about the R axis: axial and sagittal views are 15 degrees off;
        // so is the coronal view (its up axis leans), by the same angle.
        let t = 15f64.to_radians();
        let tilt = Matrix3::new(1.0, 0.0, 0.0, 0.0, t.cos(), -t.sin(), 0.0, t.sin(), t.cos()) * Matrix3::from_diagonal(&Vector3::new(0.8, 0.8, 3.0));
        for p in ViewPlane::ALL {
            assert!((geom(tilt, p).obliquity_deg() - 15.0).abs() < 1e-6, "{p:?}: {}", geom(tilt, p).obliquity_deg());
        }
    }

    #[test]
    fn pixel_and_slice_frame_agree() {
        let lin = Matrix3::new(0.0, 0.0, -2.0, 0.9, 0.0, 0.0, 0.0, 1.5, 0.0); // permuted + flipped
        for plane in ViewPlane::ALL {
            let g = geom(lin, plane);
            let vfs = g.voxel_from_slice();
            for (c, r, n) in [(0, 0, 0), (3, 5, 2), (g.extent[0] - 1, g.extent[1] - 1, 1)] {
                let ijk = g.voxel_of_pixel(c, r, n);
                let u = c as f64 * g.spacing_mm[0];
                let v = (g.extent[1] - 1 - r) as f64 * g.spacing_mm[1];
                let p = vfs.apply(crate::geometry::SliceMm::new(u, v, g.w_of_index(n)));
                let want = VoxelIjk::new(ijk[0] as f64, ijk[1] as f64, ijk[2] as f64);
                assert!(p.distance(&want) < 1e-9, "{plane:?} {p:?} {want:?}");
            }
        }
    }

    #[test]
    fn pixel_walk_matches_voxel_of_pixel() {
        let lin = Matrix3::new(0.0, 0.0, -2.0, 0.9, 0.0, 0.0, 0.0, 1.5, 0.0); // permuted + flipped
        for m in [lin, Matrix3::identity(), Matrix3::from_diagonal(&Vector3::new(-1.0, -1.0, 1.0))] {
            for conv in [DisplayConvention::Radiological, DisplayConvention::Neurological] {
                for plane in ViewPlane::ALL {
                    let a = RasFromVoxel::from_parts(m, Vector3::zeros());
                    let g = SliceGeometry::new(plane, &a, GridShape::new(10, 20, 30), conv);
                    let w = g.pixel_walk(3);
                    for (c, r) in [(0, 0), (1, 0), (0, 1), (4, 7), (g.extent[0] - 1, g.extent[1] - 1)] {
                        let want = g.voxel_of_pixel(c, r, 3);
                        let got: Vec<isize> = (0..3)
                            .map(|x| w.start[x] as isize + c as isize * w.per_col[x] + r as isize * w.per_row[x])
                            .collect();
                        assert_eq!(got, want.iter().map(|&x| x as isize).collect::<Vec<_>>(), "{plane:?} {conv:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn index_step_sign_follows_the_world() {
        let ras = geom(Matrix3::identity(), ViewPlane::Axial);
        assert_eq!(ras.index_step_sign(), 1);
        let lps = Matrix3::from_diagonal(&Vector3::new(-1.0, -1.0, 1.0));
        assert_eq!(geom(lps, ViewPlane::Sagittal).index_step_sign(), -1, "i runs towards L");
        assert_eq!(geom(lps, ViewPlane::Coronal).index_step_sign(), -1, "j runs towards P");
        assert_eq!(geom(lps, ViewPlane::Axial).index_step_sign(), 1);
    }

    #[test]
    fn screen_round_trip_and_proportions() {
        let g = geom(Matrix3::from_diagonal(&Vector3::new(0.5, 2.0, 3.0)), ViewPlane::Axial);
        let sfs = g.screen_from_slice([10.0, 20.0], [400.0, 300.0], 1.0, [0.0, 0.0]);
        let inv = sfs.try_inverse().expect("invertible");
        let s = ScreenPx::new(123.0, 77.0, 0.0);
        let back = sfs.apply(inv.apply(s));
        assert!(back.distance(&s) < 1e-9);
        // 1 mm along u and along v are the same number of pixels.
        let l = sfs.linear();
        assert!((l[(0, 0)] + l[(1, 1)]).abs() < 1e-12);
        // Screen-right is patient left in radiological convention.
        let rfs = g.ras_from_slice();
        let a: RasMm = rfs.apply(inv.apply(ScreenPx::new(100.0, 100.0, 0.0)));
        let b: RasMm = rfs.apply(inv.apply(ScreenPx::new(200.0, 100.0, 0.0)));
        assert!(b.x() < a.x());
    }
}
