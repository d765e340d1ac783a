//! Refinement prompts: what a user adds to an object after its first click, and the simulated
//! user that evaluates them.
//!
//! An *object* is one candidate being built (issue 21): its first positive click runs the
//! pipeline; further prompts correct it. A [`Prompt`] is one gesture: a point, positive (add
//! what is under it) or negative (remove it), and/or a [`BoxPrompt`] that bounds the object.
//! The prompts given so far add up to a [`PromptSet`]. Everything is in RAS mm.
//!
//! The engine keeps the object's candidate between requests ([`ObjectRef`]: the object's id
//! and how many of its prompts the client has seen), so a client sends only the new prompt; a
//! client that undid prompts says so by a smaller count, and the engine goes back to that step.
//!
//! [`next_correction`] is the simulated-correction protocol of SAM-Med3D and nnInteractive: the
//! next click at the point of the largest error region deepest inside it, positive in a missed
//! region and negative in a false one. `eval --clicks N` runs it.

use crate::geometry::{ArrayIdx, RasMm, SpacingIjk, ViewPlane};
use crate::shape::flood::label_components;
use ndarray::{Array3, ArrayView3, s};
use serde::{Deserialize, Serialize};

/// How near a negative point (mm) the non-learned steps never grow, and from where the
/// candidate is always cut: the point's neighbourhood.
pub const NEGATIVE_RADIUS_MM: f64 = 5.0;
/// How near a positive point (mm) no correction ever removes a voxel.
pub const POSITIVE_KEEP_RADIUS_MM: f64 = 2.0;

/// Whether a point adds (positive) or removes (negative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Polarity {
    #[default]
    Positive,
    Negative,
}

impl Polarity {
    pub fn name(self) -> &'static str {
        match self {
            Polarity::Positive => "positive",
            Polarity::Negative => "negative",
        }
    }
}

/// A point prompt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PointPrompt {
    pub at: RasMm,
    pub polarity: Polarity,
}

/// A box bounding the object, axis-aligned in RAS: two opposite corners. A box drawn on one
/// slice (a 2D box) leaves the extent along its plane's normal open (`open`: the plane it was
/// drawn on); a box from two slices (a 3D box) is closed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoxPrompt {
    /// One corner, RAS mm.
    pub a: [f64; 3],
    /// The opposite corner, RAS mm.
    pub b: [f64; 3],
    /// The plane a 2D box was drawn on: its normal's world axis is not bounded. `None`: a 3D box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<ViewPlane>,
}

impl BoxPrompt {
    /// A box from `X0,Y0,Z0,X1,Y1,Z1` (the command line's `--box-ras`): a box with no extent
    /// along one world axis was drawn on one slice, and is open along it.
    pub fn from_corners(c: [f64; 6]) -> Result<Self, String> {
        let (a, b) = ([c[0], c[1], c[2]], [c[3], c[4], c[5]]);
        let flat: Vec<usize> = (0..3).filter(|&ax| a[ax] == b[ax]).collect();
        let open = match flat.as_slice() {
            [] => None,
            [ax] => ViewPlane::ALL.into_iter().find(|p| p.normal_world_axis() == *ax),
            _ => return Err(format!("the box {c:?} is flat along {} axes: give two opposite corners", flat.len())),
        };
        let bx = BoxPrompt { a, b, open };
        bx.check()?;
        Ok(bx)
    }

    /// An error when a corner is not finite or the box has no extent along a bounded axis.
    pub fn check(&self) -> Result<(), String> {
        if !self.a.iter().chain(&self.b).all(|v| v.is_finite()) {
            return Err(format!("a box corner is not finite: {:?} {:?}", self.a, self.b));
        }
        for ax in (0..3).filter(|&ax| Some(ax) != self.open_axis()) {
            if self.a[ax] == self.b[ax] {
                return Err(format!("the box {:?}–{:?} has no extent along world axis {}", self.a, self.b, ["R", "A", "S"][ax]));
            }
        }
        Ok(())
    }

    /// The world axis (0 = R, 1 = A, 2 = S) the box leaves open.
    pub fn open_axis(&self) -> Option<usize> {
        self.open.map(|p| p.normal_world_axis())
    }

    /// Is `p` inside (its open axis unbounded; faces included)?
    pub fn contains(&self, p: RasMm) -> bool {
        let p = p.to_array();
        (0..3).all(|ax| Some(ax) == self.open_axis() || (self.a[ax].min(self.b[ax])..=self.a[ax].max(self.b[ax])).contains(&p[ax]))
    }

    /// The box's centre: where it acts as the first positive click (a 2D box's corners lie on
    /// its slice, so this lies on the slice too).
    pub fn centre(&self) -> RasMm {
        RasMm::new((self.a[0] + self.b[0]) / 2.0, (self.a[1] + self.b[1]) / 2.0, (self.a[2] + self.b[2]) / 2.0)
    }

    /// This box redrawn by `later`: the axes `later` bounds take its extent, the axis it leaves
    /// open keeps this box's (a 2D box drawn on a second view closes a 2D box drawn on the first:
    /// a 3D box from two slices). A box redrawn on the same view, or a closed one, replaces it.
    pub fn redrawn_by(&self, later: &BoxPrompt) -> BoxPrompt {
        let Some(ax) = later.open_axis() else { return *later };
        if Some(ax) == self.open_axis() {
            return *later;
        }
        let (mut a, mut b) = (later.a, later.b);
        a[ax] = self.a[ax];
        b[ax] = self.b[ax];
        BoxPrompt { a, b, open: None }
    }

    /// The corners as `[X0, Y0, Z0, X1, Y1, Z1]`.
    pub fn corners(&self) -> [f64; 6] {
        [self.a[0], self.a[1], self.a[2], self.b[0], self.b[1], self.b[2]]
    }
}

/// One gesture: a point and/or a box (both: the box bounds the object from this prompt on,
/// then the point is applied).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prompt {
    pub point: Option<PointPrompt>,
    pub bbox: Option<BoxPrompt>,
}

impl Prompt {
    pub fn positive(at: RasMm) -> Self {
        Prompt { point: Some(PointPrompt { at, polarity: Polarity::Positive }), bbox: None }
    }
    pub fn negative(at: RasMm) -> Self {
        Prompt { point: Some(PointPrompt { at, polarity: Polarity::Negative }), bbox: None }
    }
    pub fn boxed(bbox: BoxPrompt) -> Self {
        Prompt { point: None, bbox: Some(bbox) }
    }
    /// An error when the prompt holds nothing or a bad box.
    pub fn check(&self) -> Result<(), String> {
        if self.point.is_none() && self.bbox.is_none() {
            return Err("a prompt needs a point or a box".into());
        }
        if let Some(p) = &self.point
            && !p.at.to_array().iter().all(|v| v.is_finite())
        {
            return Err(format!("the {} point {:?} is not finite", p.polarity.name(), p.at.to_array()));
        }
        self.bbox.as_ref().map_or(Ok(()), BoxPrompt::check)
    }
    /// `positive (1.0, 2.0, 3.0)`, `box …`: for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = &self.bbox {
            parts.push(format!("box {:?}–{:?}{}", b.a, b.b, b.open.map(|p| format!(" (open across the {} plane)", p.name())).unwrap_or_default()));
        }
        if let Some(p) = &self.point {
            let [x, y, z] = p.at.to_array();
            parts.push(format!("{} ({x:.1}, {y:.1}, {z:.1})", p.polarity.name()));
        }
        parts.join(" + ")
    }
}

/// The prompts of an object so far. A later box redraws an earlier one
/// ([`BoxPrompt::redrawn_by`]: two 2D boxes on different views make a 3D box).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PromptSet {
    pub positive: Vec<RasMm>,
    pub negative: Vec<RasMm>,
    pub bbox: Option<BoxPrompt>,
}

impl PromptSet {
    /// Adds one prompt (its box first, then its point).
    pub fn add(&mut self, p: &Prompt) {
        if let Some(b) = p.bbox {
            self.add_box(b);
        }
        if let Some(pt) = p.point {
            match pt.polarity {
                Polarity::Positive => self.positive.push(pt.at),
                Polarity::Negative => self.negative.push(pt.at),
            }
        }
    }

    /// Adds a box: it redraws the one held ([`BoxPrompt::redrawn_by`]).
    pub fn add_box(&mut self, b: BoxPrompt) {
        self.bbox = Some(self.bbox.map_or(b, |held| held.redrawn_by(&b)));
    }

    /// Whether anything restricts where the object may lie (a negative point or a box).
    pub fn restricts(&self) -> bool {
        !self.negative.is_empty() || self.bbox.is_some()
    }

    /// Whether the non-learned steps must not take the voxel at `p`: within
    /// [`NEGATIVE_RADIUS_MM`] of a negative point, or outside the box.
    pub fn blocks(&self, p: RasMm) -> bool {
        self.bbox.as_ref().is_some_and(|b| !b.contains(p)) || self.negative.iter().any(|n| n.distance(&p) <= NEGATIVE_RADIUS_MM)
    }

    /// Whether `p` lies within [`POSITIVE_KEEP_RADIUS_MM`] of a positive point.
    pub fn keeps(&self, p: RasMm) -> bool {
        self.positive.iter().any(|q| q.distance(&p) <= POSITIVE_KEEP_RADIUS_MM)
    }
}

/// Which object a prompt refines: its id (the client's; the engine keeps one object per
/// session) and how many of its prompts came before this one as the client has them (fewer than
/// the engine holds: the client undid the rest, and the engine goes back to that step).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRef {
    pub id: u64,
    pub after: usize,
}

/// The next simulated correction: a click at `at` (array index on the grid of the masks).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Correction {
    pub at: ArrayIdx,
    /// Positive in a missed region (false negative), negative in a false one.
    pub polarity: Polarity,
    /// Voxels of the error region the click lies in (the largest).
    pub region_voxels: usize,
    /// How far the click lies from the region's border (mm).
    pub depth_mm: f32,
}

/// The simulated user's next click (module doc): of the 6-connected regions of `pred` that are
/// not in `truth` (false) and of `truth` that are not in `pred` (missed), the largest (a missed
/// one among equals), and in it the voxel farthest from the region's border (exact Euclidean
/// distance with `spacing`; the grid's edge counts as border). `None` when the two agree.
pub fn next_correction(pred: ArrayView3<bool>, truth: ArrayView3<bool>, spacing: SpacingIjk) -> Option<Correction> {
    assert_eq!(pred.shape(), truth.shape(), "prediction and truth on one grid");
    let either = ndarray::Zip::from(&pred).and(&truth).map_collect(|&p, &t| p != t);
    let (lo, hi) = crate::shape::sdf::bounding_box(either.view())?;
    let window = s![lo[0]..=hi[0], lo[1]..=hi[1], lo[2]..=hi[2]];
    let (p, t) = (pred.slice(window), truth.slice(window));
    let missed = ndarray::Zip::from(&p).and(&t).map_collect(|&p, &t| t && !p);
    let false_ = ndarray::Zip::from(&p).and(&t).map_collect(|&p, &t| p && !t);
    let mut best: Option<(usize, Polarity, Array3<u32>, u32)> = None;
    for (mask, polarity) in [(missed, Polarity::Positive), (false_, Polarity::Negative)] {
        let (labels, parts) = label_components(mask.view());
        if let Some((n, part)) = parts.iter().enumerate().max_by_key(|(n, p)| (p.count, std::cmp::Reverse(*n)))
            && best.as_ref().is_none_or(|b| part.count > b.0)
        {
            best = Some((part.count, polarity, labels, n as u32 + 1));
        }
    }
    let (count, polarity, labels, label) = best?;
    // Depth of each region voxel: distance to the nearest voxel outside it, on the crop padded
    // by one (so the crop's and the grid's edges count as border).
    let d = labels.dim();
    let mut outside = Array3::from_elem((d.0 + 2, d.1 + 2, d.2 + 2), true);
    outside.slice_mut(s![1..d.0 + 1, 1..d.1 + 1, 1..d.2 + 1]).assign(&labels.mapv(|l| l != label));
    let depth = crate::shape::sdf::edt(outside.view(), spacing);
    let ((k, j, i), dep) = labels
        .indexed_iter()
        .filter(|(_, l)| **l == label)
        .map(|(idx, _)| (idx, depth[[idx.0 + 1, idx.1 + 1, idx.2 + 1]]))
        .fold(None::<((usize, usize, usize), f32)>, |b, (idx, dep)| match b {
            Some((_, bd)) if bd >= dep => b,
            _ => Some((idx, dep)),
        })?;
    Some(Correction { at: ArrayIdx { k: lo[0] + k, j: lo[1] + j, i: lo[2] + i }, polarity, region_voxels: count, depth_mm: dep })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_from_corners_is_closed_or_open_across_its_flat_axis() {
        let b = BoxPrompt::from_corners([10.0, -5.0, 3.0, -10.0, 5.0, 9.0]).expect("closed");
        assert_eq!(b.open, None);
        assert!(b.contains(RasMm::new(0.0, 0.0, 6.0)) && b.contains(RasMm::new(-10.0, 5.0, 9.0)));
        assert!(!b.contains(RasMm::new(0.0, 0.0, 9.5)));
        assert_eq!(b.centre().to_array(), [0.0, 0.0, 6.0]);
        // Drawn on an axial slice (z flat): open along S.
        let flat = BoxPrompt::from_corners([10.0, -5.0, 3.0, -10.0, 5.0, 3.0]).expect("2D");
        assert_eq!(flat.open, Some(ViewPlane::Axial));
        assert!(flat.contains(RasMm::new(0.0, 0.0, 300.0)) && !flat.contains(RasMm::new(11.0, 0.0, 3.0)));
        assert!(BoxPrompt::from_corners([1.0, 1.0, 3.0, 1.0, 5.0, 3.0]).expect_err("a line").contains("flat along 2"));
        assert!(BoxPrompt::from_corners([f64::NAN, 1.0, 3.0, 2.0, 5.0, 4.0]).is_err());
        // A 3D box read from a client must have extent along every axis.
        assert!(BoxPrompt { a: [0.0; 3], b: [1.0, 1.0, 0.0], open: None }.check().is_err());
    }

    #[test]
    fn a_second_2d_box_on_another_view_closes_the_first_into_a_3d_box() {
        // Axial: R −10..10, A −5..5, drawn at S = 3 (open along S).
        let axial = BoxPrompt::from_corners([-10.0, -5.0, 3.0, 10.0, 5.0, 3.0]).unwrap();
        // Coronal: R −20..0, S 0..40, drawn at A = 7 (open along A).
        let coronal = BoxPrompt::from_corners([-20.0, 7.0, 0.0, 0.0, 7.0, 40.0]).unwrap();
        let mut set = PromptSet::default();
        set.add(&Prompt::boxed(axial));
        set.add(&Prompt::boxed(coronal));
        let b = set.bbox.expect("a box");
        assert_eq!(b.open, None, "closed");
        // R from the later box, A from the axial one, S from the coronal one.
        assert_eq!(b.corners(), [-20.0, -5.0, 0.0, 0.0, 5.0, 40.0]);
        assert!(b.check().is_ok());
        assert!(b.contains(RasMm::new(-5.0, 0.0, 20.0)));
        assert!(!b.contains(RasMm::new(-5.0, 0.0, 41.0)), "S is bounded now");
        assert!(!b.contains(RasMm::new(-5.0, 6.0, 20.0)), "A keeps the axial box's extent");
        assert!(!b.contains(RasMm::new(5.0, 0.0, 20.0)), "R is the coronal box's");
        // A new axial box redraws R and A and keeps the 3D box's S.
        set.add(&Prompt::boxed(BoxPrompt::from_corners([-4.0, -2.0, 9.0, 4.0, 2.0, 9.0]).unwrap()));
        assert_eq!(set.bbox.unwrap().corners(), [-4.0, -2.0, 0.0, 4.0, 2.0, 40.0]);
        assert_eq!(set.bbox.unwrap().open, None);
        // Redrawn on the same view, a 2D box replaces the 2D box.
        let mut same = PromptSet::default();
        same.add(&Prompt::boxed(axial));
        let again = BoxPrompt::from_corners([0.0, 0.0, 8.0, 6.0, 6.0, 8.0]).unwrap();
        same.add(&Prompt::boxed(again));
        assert_eq!(same.bbox, Some(again));
        // A closed box replaces whatever was held.
        let closed = BoxPrompt::from_corners([1.0, 1.0, 1.0, 2.0, 2.0, 2.0]).unwrap();
        set.add(&Prompt::boxed(closed));
        assert_eq!(set.bbox, Some(closed));
    }

    #[test]
    fn a_prompt_set_blocks_near_negatives_and_outside_the_box() {
        let mut set = PromptSet::default();
        set.add(&Prompt::positive(RasMm::new(0.0, 0.0, 0.0)));
        assert!(!set.restricts() && !set.blocks(RasMm::new(100.0, 0.0, 0.0)));
        set.add(&Prompt::negative(RasMm::new(20.0, 0.0, 0.0)));
        assert!(set.blocks(RasMm::new(20.0, 4.9, 0.0)) && !set.blocks(RasMm::new(20.0, 5.1, 0.0)));
        set.add(&Prompt { point: Some(PointPrompt { at: RasMm::new(1.0, 0.0, 0.0), polarity: Polarity::Positive }), bbox: BoxPrompt::from_corners([-30.0, -30.0, -30.0, 30.0, 30.0, 30.0]).ok() });
        assert_eq!((set.positive.len(), set.negative.len()), (2, 1));
        assert!(set.blocks(RasMm::new(0.0, 0.0, 31.0)) && set.keeps(RasMm::new(1.0, 1.5, 0.0)));
        assert!(Prompt::default().check().is_err());
    }

    /// A prediction that misses a ball (radius 4) and takes a smaller false block (3×3×3): the
    /// click is positive, at the missed ball's centre, the deepest point; once the ball is found,
    /// the next click is negative, in the block's centre.
    #[test]
    fn the_next_correction_is_deepest_in_the_largest_error_region_with_its_sign() {
        let n = 30;
        let ball = |c: [f64; 3], r: f64| Array3::from_shape_fn((n, n, n), |(k, j, i)| (k as f64 - c[0]).powi(2) + (j as f64 - c[1]).powi(2) + (i as f64 - c[2]).powi(2) <= r * r);
        let truth = &ball([8.0, 8.0, 8.0], 5.0) | &ball([20.0, 20.0, 12.0], 4.0);
        let mut pred = ball([8.0, 8.0, 8.0], 5.0);
        pred.slice_mut(s![20..23, 3..6, 22..25]).fill(true);
        let sp = SpacingIjk([1.0, 1.0, 1.0]);
        let c = next_correction(pred.view(), truth.view(), sp).expect("errors");
        assert_eq!(c.polarity, Polarity::Positive);
        assert_eq!(c.at, ArrayIdx { k: 20, j: 20, i: 12 });
        assert_eq!(c.region_voxels, ball([20.0, 20.0, 12.0], 4.0).iter().filter(|x| **x).count());
        assert!((c.depth_mm - 4.0).abs() < 0.6, "{}", c.depth_mm);
        // The ball added: the false block is what is left.
        let pred2 = &pred | &truth;
        let c2 = next_correction(pred2.view(), truth.view(), sp).expect("errors");
        assert_eq!((c2.polarity, c2.at, c2.region_voxels), (Polarity::Negative, ArrayIdx { k: 21, j: 4, i: 23 }, 27));
        assert!(next_correction(truth.view(), truth.view(), sp).is_none());
        // Anisotropic spacing: depth in mm (the block is 3 voxels of 4 mm along k, so each of
        // its three slices' centres is 2 mm deep; the first is taken).
        let c3 = next_correction(pred2.view(), truth.view(), SpacingIjk([1.0, 1.0, 4.0])).expect("errors");
        assert_eq!(c3.at, ArrayIdx { k: 20, j: 4, i: 23 });
        assert!((c3.depth_mm - 2.0).abs() < 1e-3, "{}", c3.depth_mm);
    }
}
