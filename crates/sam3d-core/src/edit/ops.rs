//! The vocabulary of the edit tools: what a brush is, what a stroke paints, and one
//! [`EditRequest`] per operation, all plain data (`Clone + Send`, no borrow), so the viewer
//! can build a request on the UI thread and run it on the thread that owns the label map.
//!
//! Sizes are in millimetres and distances are physical (through the grid's affine), so a
//! 5 mm brush is 5 mm on an anisotropic CT as on an isotropic MR.

use super::{Edit, EditError, Overwrite, brush, fill, islands};
use crate::geometry::{ArrayIdx, DisplayConvention, GridShape, RasFromVoxel, RasMm, SliceGeometry, ViewPlane};
use crate::volume::LabelMap;

/// The shape of a brush stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BrushShape {
    /// A disc in one slice of a view: only voxels of the slice (along the voxel axis that is
    /// the view's normal, [`normal_voxel_axis`]) through the brush centre are painted.
    Disc(ViewPlane),
    /// A ball in 3D.
    Sphere,
}

/// A brush: its shape and its radius in millimetres.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Brush {
    pub shape: BrushShape,
    pub radius_mm: f64,
}

impl Brush {
    /// A disc in the slices of `plane`'s view.
    pub fn disc(plane: ViewPlane, radius_mm: f64) -> Self {
        Brush { shape: BrushShape::Disc(plane), radius_mm }
    }

    /// A ball.
    pub fn sphere(radius_mm: f64) -> Self {
        Brush { shape: BrushShape::Sphere, radius_mm }
    }

    /// The radius must be a number ≥ 0 (0 paints just the voxel under the brush).
    pub fn check(&self) -> Result<(), EditError> {
        if self.radius_mm.is_finite() && self.radius_mm >= 0.0 {
            Ok(())
        } else {
            Err(EditError::Invalid { what: "brush radius", problem: format!("{} mm (expected a number ≥ 0)", self.radius_mm) })
        }
    }

    /// About how many voxels one stamp covers on a grid with this affine, for the cursor ring
    /// and the status line: the brush's area (disc) or volume (sphere) over a voxel's face
    /// (parallelogram of the two in-slice voxel steps) or volume (`|det|`), at least 1. Exact
    /// up to the voxelisation of the rim; costs a few multiplications.
    pub fn estimated_voxels(&self, ras_from_voxel: &RasFromVoxel) -> usize {
        let r = if self.radius_mm.is_finite() { self.radius_mm.max(0.0) } else { 0.0 };
        let a = ras_from_voxel.linear();
        let (size, cell) = match self.shape {
            BrushShape::Sphere => (4.0 / 3.0 * std::f64::consts::PI * r.powi(3), a.determinant().abs()),
            BrushShape::Disc(plane) => {
                let n = normal_voxel_axis(plane, ras_from_voxel);
                let [u, v] = in_plane_axes(n);
                (std::f64::consts::PI * r * r, a.column(u).cross(&a.column(v)).norm())
            }
        };
        if cell > 0.0 && (size / cell).is_finite() { (size / cell).round().max(1.0) as usize } else { 1 }
    }

    pub fn describe(&self) -> String {
        match self.shape {
            BrushShape::Disc(p) => format!("{} mm disc ({})", fmt_mm(self.radius_mm), p.name()),
            BrushShape::Sphere => format!("{} mm sphere", fmt_mm(self.radius_mm)),
        }
    }
}

fn fmt_mm(r: f64) -> String {
    format!("{:.1}", r).trim_end_matches(".0").to_string()
}

/// The two voxel axes of a slice whose normal is voxel axis `n` (0 = i, 1 = j, 2 = k).
pub(crate) fn in_plane_axes(n: usize) -> [usize; 2] {
    match n {
        0 => [1, 2],
        1 => [0, 2],
        _ => [0, 1],
    }
}

/// The voxel axis (0 = i, 1 = j, 2 = k) normal to `plane`'s slices on a grid with this
/// affine: the one the slice views use ([`SliceGeometry::n_axis`], the voxel axis closest to the
/// plane's world normal), so an edit on "this axial slice" touches the slice the view shows.
pub fn normal_voxel_axis(plane: ViewPlane, ras_from_voxel: &RasFromVoxel) -> usize {
    // The shape and the display convention do not change which axis is the normal.
    SliceGeometry::new(plane, ras_from_voxel, GridShape::new(1, 1, 1), DisplayConvention::default()).n_axis
}

/// An intensity window for threshold paint: only voxels whose intensity is in `[lo, hi]` are
/// painted (NaN never is).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IntensityRange {
    pub lo: f32,
    pub hi: f32,
}

impl IntensityRange {
    pub fn new(lo: f32, hi: f32) -> Self {
        IntensityRange { lo, hi }
    }

    #[inline]
    pub fn contains(&self, x: f32) -> bool {
        self.lo <= x && x <= self.hi
    }

    /// Both bounds must be numbers (±∞ allowed) with `lo ≤ hi`.
    pub fn check(&self) -> Result<(), EditError> {
        if self.lo.is_nan() || self.hi.is_nan() || self.lo > self.hi {
            return Err(EditError::Invalid { what: "intensity range", problem: format!("[{}, {}] (expected lo ≤ hi)", self.lo, self.hi) });
        }
        Ok(())
    }
}

/// What a brush writes: a label (0 erases), under an overwrite rule, optionally only within an
/// intensity range.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Paint {
    pub label: u16,
    pub rule: Overwrite,
    pub range: Option<IntensityRange>,
}

impl Paint {
    pub fn new(label: u16, rule: Overwrite) -> Self {
        Paint { label, rule, range: None }
    }

    /// Erase (write 0) under `rule`. Under [`Overwrite::Background`] an erase changes nothing
    /// (background is the only thing it may replace); the eraser uses `All` or `Label(l)`.
    pub fn erase(rule: Overwrite) -> Self {
        Paint { label: 0, rule, range: None }
    }

    pub fn within(self, range: IntensityRange) -> Self {
        Paint { range: Some(range), ..self }
    }
}

/// One segment of a brush drag, from the previous pointer position to this one (a click is a
/// segment of length 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stroke {
    pub from: RasMm,
    pub to: RasMm,
    pub brush: Brush,
    pub paint: Paint,
}

/// One edit operation, as data: built on the UI thread, run with [`EditRequest::apply`] where
/// the label map is owned.
#[derive(Clone, Debug, PartialEq)]
pub enum EditRequest {
    /// A brush stroke ([`brush::stroke`]).
    Stroke(Stroke),
    /// Fill the closed region of one slice around a voxel ([`fill::fill_region_in_slice`]).
    FillRegion { at: ArrayIdx, plane: ViewPlane, label: u16, rule: Overwrite },
    /// Fill the cavities enclosed by a label ([`fill::fill_holes_of_label`]).
    FillHoles { label: u16, rule: Overwrite },
    /// Erase islands smaller than `min` ([`islands::remove_small_islands`]).
    RemoveSmallIslands { label: Option<u16>, min: islands::IslandSize, rule: Overwrite },
    /// Keep only the island under a voxel ([`islands::keep_component_at`]).
    KeepComponentAt { at: ArrayIdx, rule: Overwrite },
    /// Keep only the largest island of a label ([`islands::keep_largest_component`]).
    KeepLargest { label: u16, rule: Overwrite },
}

impl EditRequest {
    /// Runs the operation on `map`. `intensities` (the volume's data, on the map's grid) is
    /// needed only by a stroke with an intensity range.
    pub fn apply(&self, map: &mut LabelMap, intensities: Option<&crate::volume::StoredVolume>) -> Result<Edit, EditError> {
        match self {
            EditRequest::Stroke(s) => brush::stroke(map, s.from, s.to, &s.brush, &s.paint, intensities),
            EditRequest::FillRegion { at, plane, label, rule } => fill::fill_region_in_slice(map, *at, *plane, *label, *rule),
            EditRequest::FillHoles { label, rule } => fill::fill_holes_of_label(map, *label, *rule),
            EditRequest::RemoveSmallIslands { label, min, rule } => islands::remove_small_islands(map, *label, *min, *rule),
            EditRequest::KeepComponentAt { at, rule } => islands::keep_component_at(map, *at, *rule),
            EditRequest::KeepLargest { label, rule } => islands::keep_largest_component(map, *label, *rule),
        }
    }

    /// Words for the undo menu and the status line.
    pub fn describe(&self) -> String {
        match self {
            EditRequest::Stroke(s) if s.paint.label == 0 => format!("erase ({})", s.brush.describe()),
            EditRequest::Stroke(s) => {
                let range = s.paint.range.map(|r| format!(" within [{}, {}]", r.lo, r.hi)).unwrap_or_default();
                format!("paint label {} ({}){range}", s.paint.label, s.brush.describe())
            }
            EditRequest::FillRegion { label, plane, .. } => format!("fill a region of the {} slice with label {label}", plane.name()),
            EditRequest::FillHoles { label, .. } => format!("fill the holes of label {label}"),
            EditRequest::RemoveSmallIslands { label: Some(l), min, .. } => format!("remove islands of label {l} below {}", min.describe()),
            EditRequest::RemoveSmallIslands { label: None, min, .. } => format!("remove islands below {}", min.describe()),
            EditRequest::KeepComponentAt { .. } => "keep the island under the click".into(),
            EditRequest::KeepLargest { label, .. } => format!("keep the largest island of label {label}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::undo_edit;
    use crate::volume::OnGrid;
    use nalgebra::{Matrix3, Vector3};
    use ndarray::Array3;

    /// A request crosses threads: it must be `Send + 'static` (no borrow of the map).
    #[test]
    fn requests_are_plain_data_that_crosses_threads() {
        fn send<T: Send + Sync + 'static>(_: &T) {}
        let r = EditRequest::Stroke(Stroke {
            from: RasMm::new(0.0, 0.0, 0.0),
            to: RasMm::new(1.0, 0.0, 0.0),
            brush: Brush::sphere(2.0),
            paint: Paint::new(3, Overwrite::All).within(IntensityRange::new(-100.0, 200.0)),
        });
        send(&r);
        let worker = std::thread::spawn(move || {
            let mut map = LabelMap::new(Array3::zeros((5, 5, 5)), RasFromVoxel::identity()).expect("grid");
            r.apply(&mut map, None).map(|e| e.indices.len())
        });
        let got = worker.join().expect("worker");
        assert_eq!(got, Err(EditError::NoIntensities), "a range without intensities is refused on the worker too");
    }

    #[test]
    fn apply_dispatches_and_undo_restores() {
        let mut data = Array3::<u16>::zeros((6, 6, 6));
        data[[3, 3, 3]] = 2;
        let mut map = LabelMap::new(data.clone(), RasFromVoxel::identity()).expect("grid");
        let r = EditRequest::Stroke(Stroke {
            from: RasMm::new(1.0, 1.0, 1.0),
            to: RasMm::new(4.0, 4.0, 4.0),
            brush: Brush::sphere(1.0),
            paint: Paint::new(1, Overwrite::Background),
        });
        let e = r.apply(&mut map, None).expect("stroke");
        assert!(e.indices.len() > 10 && map.data[[3, 3, 3]] == 2 && map.data[[1, 1, 1]] == 1);
        assert!(r.describe().contains("label 1") && r.describe().contains("1 mm sphere"), "{}", r.describe());
        undo_edit(&mut map, &e);
        assert_eq!(map.data, data);
        let f = EditRequest::FillRegion { at: ArrayIdx { k: 0, j: 0, i: 0 }, plane: ViewPlane::Axial, label: 1, rule: Overwrite::All };
        assert!(matches!(f.apply(&mut map, None), Err(EditError::NotClosed { .. })));
        let k = EditRequest::KeepComponentAt { at: ArrayIdx { k: 0, j: 0, i: 0 }, rule: Overwrite::All };
        assert!(matches!(k.apply(&mut map, None), Err(EditError::Background { .. })));
    }

    /// Appending the next segment of a drag makes one undo step of the whole drag.
    #[test]
    fn a_drag_is_one_undo_step() {
        let data = Array3::from_shape_fn((4, 8, 8), |(_, _, i)| u16::from(i == 7) * 2);
        let mut map = LabelMap::new(data.clone(), RasFromVoxel::identity()).expect("grid");
        let brush = Brush::disc(ViewPlane::Axial, 1.2);
        let paint = Paint::new(1, Overwrite::All);
        let points = [RasMm::new(1.0, 1.0, 2.0), RasMm::new(4.0, 2.0, 2.0), RasMm::new(7.0, 5.0, 2.0), RasMm::new(6.0, 6.0, 2.0)];
        let mut drag = Edit::empty(1);
        for w in points.windows(2) {
            let e = brush::stroke(&mut map, w[0], w[1], &brush, &paint, None).expect("segment");
            drag.append(e).expect("same label");
        }
        let mut seen = drag.indices.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), drag.indices.len(), "no voxel recorded twice");
        assert!(drag.previous.contains(&2));
        undo_edit(&mut map, &drag);
        assert_eq!(map.data, data);
        assert!(drag.append(Edit::empty(4)).is_err(), "another label is another step");
    }

    /// The normal of each plane is the slice views' own, on a permuted and flipped affine.
    #[test]
    fn the_normal_axis_is_the_views() {
        let lin = Matrix3::new(0.0, 0.0, -2.0, 0.9, 0.0, 0.0, 0.0, 1.5, 0.0);
        let a = RasFromVoxel::from_parts(lin, Vector3::zeros());
        // Voxel i runs along A, j along S, k along L.
        assert_eq!(normal_voxel_axis(ViewPlane::Axial, &a), 1);
        assert_eq!(normal_voxel_axis(ViewPlane::Coronal, &a), 0);
        assert_eq!(normal_voxel_axis(ViewPlane::Sagittal, &a), 2);
        for plane in ViewPlane::ALL {
            let g = SliceGeometry::new(plane, &a, GridShape::new(7, 8, 9), DisplayConvention::Neurological);
            assert_eq!(normal_voxel_axis(plane, &a), g.n_axis);
        }
    }

    #[test]
    fn the_cursor_estimate_is_the_brush_over_a_voxel() {
        let a = RasFromVoxel::scale_translate([0.7, 0.7, 2.5], [0.0; 3]);
        // 4/3·π·125 / 1.225 = 427.4; π·25 / 0.49 = 160.3 (axial: the i-j face); a 0 mm brush: 1.
        assert_eq!(Brush::sphere(5.0).estimated_voxels(&a), 427);
        assert_eq!(Brush::disc(ViewPlane::Axial, 5.0).estimated_voxels(&a), 160);
        assert_eq!(Brush::disc(ViewPlane::Coronal, 5.0).estimated_voxels(&a), 45);
        assert_eq!(Brush::sphere(0.0).estimated_voxels(&a), 1);
        assert_eq!(Brush::sphere(f64::NAN).estimated_voxels(&a), 1);
        // Against a real stamp: within 10 %.
        let map = LabelMap::new(Array3::zeros((12, 30, 30)), a).expect("grid");
        let centre = map.ras_of(ArrayIdx { k: 6, j: 15, i: 15 });
        let n = brush::footprint(&map, centre, centre, &Brush::sphere(5.0)).expect("stamp").len() as f64;
        assert!((n / 427.0 - 1.0).abs() < 0.1, "{n}");
    }

    /// Each operation on a 512 × 512 × 224 CT-sized map (0.7 × 0.7 × 2.5 mm) with a liver-sized
    /// label, a cavity in it and speckle: prints the time of each. Run with
    /// `cargo test --release -p sam3d-core --lib edit_ops_bench -- --ignored --nocapture`.
    #[test]
    #[ignore = "benchmark"]
    fn edit_ops_bench() {
        use std::time::Instant;
        let a = RasFromVoxel::scale_translate([0.7, 0.7, 2.5], [-180.0, -180.0, -280.0]);
        let mut data = Array3::<u16>::zeros((224, 512, 512));
        data.slice_mut(ndarray::s![60..140, 150..350, 100..300]).fill(1);
        data.slice_mut(ndarray::s![90..100, 230..260, 180..220]).fill(0);
        let mut r = crate::data::phantom::Rng::new(3);
        for _ in 0..2000 {
            let idx = [(r.uniform() * 224.0) as usize % 224, (r.uniform() * 512.0) as usize % 512, (r.uniform() * 512.0) as usize % 512];
            data[idx] = 1 + u16::from(r.uniform() < 0.5);
        }
        let vol = crate::volume::StoredVolume::from_volume(crate::volume::Volume::new(Array3::from_shape_fn((224, 512, 512), |(k, j, i)| ((k + j + i) % 400) as f32 - 200.0), a).expect("volume"));
        let mut map = LabelMap::new(data, a).expect("grid");
        let c = map.ras_of(ArrayIdx { k: 100, j: 200, i: 200 });
        let far = map.ras_of(ArrayIdx { k: 180, j: 480, i: 480 });
        let time = |what: &str, req: EditRequest, map: &mut LabelMap| {
            let t = Instant::now();
            let e = req.apply(map, Some(&vol));
            let ms = t.elapsed().as_secs_f64() * 1e3;
            match e {
                Ok(e) => eprintln!("{what:<44} {ms:8.2} ms  {:>9} voxels", e.indices.len()),
                Err(e) => eprintln!("{what:<44} {ms:8.2} ms  {e}"),
            }
        };
        let paint = Paint::new(3, Overwrite::All);
        let st = |from, to, brush| EditRequest::Stroke(Stroke { from, to, brush, paint });
        time("sphere 10 mm stamp", st(c, c, Brush::sphere(10.0)), &mut map);
        time("sphere 10 mm stroke across the volume", st(c, far, Brush::sphere(10.0)), &mut map);
        time("disc 20 mm stroke across the axial slice", st(c, far, Brush::disc(ViewPlane::Axial, 20.0)), &mut map);
        let thr = EditRequest::Stroke(Stroke { from: c, to: c, brush: Brush::sphere(30.0), paint: paint.within(IntensityRange::new(-50.0, 80.0)) });
        time("sphere 30 mm threshold stamp", thr, &mut map);
        let at = ArrayIdx { k: 95, j: 245, i: 200 };
        time("fill the cavity's axial slice", EditRequest::FillRegion { at, plane: ViewPlane::Axial, label: 1, rule: Overwrite::All }, &mut map);
        time("fill holes of label 1 (specks: box = grid)", EditRequest::FillHoles { label: 1, rule: Overwrite::Background }, &mut map);
        time("keep the island at a voxel of label 1", EditRequest::KeepComponentAt { at: ArrayIdx { k: 70, j: 160, i: 110 }, rule: Overwrite::Label(1) }, &mut map);
        let min = islands::IslandSize::Mm3(100.0);
        time("remove islands < 100 mm³, label 2", EditRequest::RemoveSmallIslands { label: Some(2), min, rule: Overwrite::All }, &mut map);
        time("remove islands < 100 mm³, every label", EditRequest::RemoveSmallIslands { label: None, min, rule: Overwrite::All }, &mut map);
        map.data.slice_mut(ndarray::s![90..100, 230..260, 180..220]).fill(0);
        time("fill holes of label 1 (clean: the liver's box)", EditRequest::FillHoles { label: 1, rule: Overwrite::Background }, &mut map);
    }
}
