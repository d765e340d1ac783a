//! The non-learned side of refinement prompts ([`crate::prompts`]): where the prompts forbid
//! the object ([`blocked_mask`]), the candidate cut to fit them ([`constrain`]), and the steps
//! of an object ([`ObjectState::apply`]) that the engine's session runs with the model and
//! [`PromptedGrowing`] with region growing alone.
//!
//! A step: a positive point segments the structure under it (the model's pipeline, or region
//! growing; either never grows into a negative point's neighbourhood or out of the box) and
//! joins it to what the object's earlier positive points found (union). The first positive
//! point joins its whole pass; a later one (a correction) only the part of its pass around it
//! ([`local_part`]: what the pass adds to the candidate, connected to the point, within
//! [`LOCAL_REACH`] times the point's depth in it), since a whole pass from a point near the
//! object's border often runs on into a neighbour. A negative point on an object segments the
//! structure under it too (the model's one pass there, or region growing, kept off the object's
//! positive points): when that is another structure ([`wrong_structure`]), its part on the
//! object around the point, where nearer the negative point than every positive one, is
//! excluded from the object (also from later passes). Then the union less the excluded parts is
//! cut to the prompts:
//!
//! 1. **the box** clips it (voxel centres outside go);
//! 2. **negative points** split it where it narrows: a marker-controlled watershed on the
//!    depth of the union (each voxel's distance to its border, exact EDT), flooded deepest first
//!    from the positive points' neighbourhoods ([`POSITIVE_KEEP_RADIUS_MM`]) and the negative
//!    points' ([`NEGATIVE_RADIUS_MM`]). Two fronts meet on the ridge of least depth between
//!    them: the neck through which region growing or the model leaked into a neighbour, or the
//!    plane where two touching organs meet. What the negative fronts take goes — but never a
//!    voxel nearer a positive point than every negative one (a positive point shallower than the
//!    way to a deep negative one would otherwise lose its own core) — so a neighbour is removed
//!    whole when it lies behind a neck (a broad contact is what the excluded structure above
//!    handles), and no voxel near a positive point is ever removed;
//! 3. only the **6-connected parts holding a positive point** are kept.
//!
//! A negative point is kept in the object's prompts, so later positive points never grow into
//! its neighbourhood either.

use super::{GrowError, GrowParams, grow_within};
use crate::geometry::{RasMm, VoxelIjk};
use crate::prompts::{NEGATIVE_RADIUS_MM, POSITIVE_KEEP_RADIUS_MM, Polarity, Prompt, PromptSet};
use crate::shape::GridComponent;
use crate::shape::flood::{flood, largest_component};
use crate::volume::{OnGrid, Volume};
use ndarray::{Array3, Zip, s};
use std::collections::BinaryHeap;

/// The voxels of the box `lo .. lo + n` (`[k, j, i]`) of `grid` that `prompts` blocks
/// ([`PromptSet::blocks`]); `None` when nothing is blocked (no negative point, no box).
pub fn blocked_mask(grid: &impl OnGrid, lo: [usize; 3], n: [usize; 3], prompts: &PromptSet) -> Option<Array3<bool>> {
    if !prompts.restricts() {
        return None;
    }
    let rfv = *grid.ras_from_voxel();
    let mut out = Array3::from_elem((n[0], n[1], n[2]), false);
    Zip::indexed(&mut out).par_for_each(|(k, j, i), b| *b = prompts.blocks(rfv.apply(VoxelIjk::new((lo[2] + i) as f64, (lo[1] + j) as f64, (lo[0] + k) as f64))));
    Some(out)
}

/// `mask` (`[k, j, i]`) as a component of a grid whose array index of `mask[[0, 0, 0]]` is
/// `origin`, cropped to its bounding box; `None` when empty.
pub fn crop_component(mask: &Array3<bool>, origin: [usize; 3]) -> Option<GridComponent> {
    let (lo, hi) = crate::shape::sdf::bounding_box(mask.view())?;
    let m = mask.slice(s![lo[0]..=hi[0], lo[1]..=hi[1], lo[2]..=hi[2]]).to_owned();
    let voxel_count = m.iter().filter(|x| **x).count();
    Some(GridComponent { origin_kji: std::array::from_fn(|a| origin[a] + lo[a]), mask: m, voxel_count })
}

/// `comp` (a crop of `grid`) cut to `prompts` (module doc: clipped to the box, split from the
/// negative points, the parts holding a positive point kept; the largest part when none holds
/// one). `None` when nothing is left.
pub fn constrain(comp: &GridComponent, prompts: &PromptSet, grid: &impl OnGrid) -> Option<GridComponent> {
    if comp.voxel_count == 0 {
        return None;
    }
    let o = comp.origin_kji;
    let rfv = *grid.ras_from_voxel();
    let ras = |(k, j, i): (usize, usize, usize)| rfv.apply(VoxelIjk::new((o[2] + i) as f64, (o[1] + j) as f64, (o[0] + k) as f64));
    let mut m = comp.mask.clone();
    if let Some(b) = &prompts.bbox {
        Zip::indexed(&mut m).par_for_each(|idx, v| *v = *v && b.contains(ras(idx)));
    }
    // Markers: near a positive point (and its own voxel), found around each point; near a
    // negative one.
    let markers = positive_markers(&m, o, &prompts.positive, grid);
    if !prompts.negative.is_empty() {
        let near = |p: RasMm, q: &[RasMm], r: f64| q.iter().any(|q| q.distance(&p) <= r);
        let mut keep = Array3::from_elem(m.raw_dim(), false);
        for a in &markers {
            keep[*a] = true;
        }
        let cut = Zip::indexed(&m).and(&keep).par_map_collect(|idx, &v, &kp| v && !kp && near(ras(idx), &prompts.negative, NEGATIVE_RADIUS_MM));
        if cut.iter().any(|x| *x) {
            m = if !markers.is_empty() {
                // What the negative fronts won goes, except voxels nearer a positive point than
                // every negative one: a positive point shallower than the way between them must
                // not lose the core around it.
                let won = split_by_depth(&m, &keep, &cut, grid);
                let nearest = |p: RasMm, q: &[RasMm]| q.iter().map(|q| q.distance(&p)).fold(f64::INFINITY, f64::min);
                Zip::indexed(&m).and(&won).par_map_collect(|idx, &v, &w| {
                    let p = ras(idx);
                    v && (w || nearest(p, &prompts.positive) < nearest(p, &prompts.negative))
                })
            } else {
                // Nothing to keep a front from: the parts the negative points touch go.
                let mut g = m.mapv(u8::from);
                flood(&mut g, cut.indexed_iter().filter(|(_, c)| **c).map(|((k, j, i), _)| [k, j, i]), 1, 2);
                g.mapv(|v| v == 1)
            };
        }
    }
    if markers.is_empty() {
        return crop_component(&largest_component(m.view()), o);
    }
    let mut g = Zip::from(&m).par_map_collect(|&v| u8::from(v));
    let reached = flood(&mut g, markers.into_iter().filter(|a| m[*a]), 1, 2);
    // Nothing clipped, cut or dropped, and the box already tight (what the caller's component
    // mostly is): the component as it is.
    let d = m.dim();
    if reached.is_some_and(|r| r.count == comp.voxel_count && r.lo == [0, 0, 0] && r.hi == [d.0 - 1, d.1 - 1, d.2 - 1]) {
        return Some(comp.clone());
    }
    crop_component(&Zip::from(&g).par_map_collect(|&v| v == 2), o)
}

/// The positive markers of [`constrain`] in `m` (a crop at `origin` of `grid`): its voxels
/// within [`POSITIVE_KEEP_RADIUS_MM`] of a point of `positive`, and each point's own voxel when
/// in `m` (a voxel may come twice). Only each point's ball's box on the grid is visited (the ball maps to an ellipsoid of
/// half-width `r·‖row a of the inverse‖` along array axis `a`).
fn positive_markers(m: &Array3<bool>, origin: [usize; 3], positive: &[RasMm], grid: &impl OnGrid) -> Vec<[usize; 3]> {
    let rfv = *grid.ras_from_voxel();
    let vfr = grid.voxel_from_ras();
    let inv = vfr.matrix();
    let d = [m.dim().0, m.dim().1, m.dim().2];
    let r = POSITIVE_KEEP_RADIUS_MM;
    let mut out = Vec::new();
    for p in positive {
        if let Some(a) = local_index(grid, origin, m.dim(), *p)
            && m[a]
        {
            out.push(a);
        }
        let v = vfr.apply(*p).v;
        // [k, j, i] ← voxel (i, j, k) rows 2, 1, 0 of the inverse.
        let range = |a: usize, row: usize, at: f64| {
            let h = r * (inv[(row, 0)].powi(2) + inv[(row, 1)].powi(2) + inv[(row, 2)].powi(2)).sqrt();
            let lo = ((at - h).floor() - 1.0 - origin[a] as f64).max(0.0);
            let hi = ((at + h).ceil() + 1.0 - origin[a] as f64).min(d[a] as f64 - 1.0);
            (lo as usize, hi as isize)
        };
        let (kr, jr, ir) = (range(0, 2, v.z), range(1, 1, v.y), range(2, 0, v.x));
        if kr.1 < 0 || jr.1 < 0 || ir.1 < 0 {
            continue;
        }
        for k in kr.0..=kr.1 as usize {
            for j in jr.0..=jr.1 as usize {
                for i in ir.0..=ir.1 as usize {
                    if m[[k, j, i]] {
                        let q = rfv.apply(VoxelIjk::new((origin[2] + i) as f64, (origin[1] + j) as f64, (origin[0] + k) as f64));
                        if positive.iter().any(|x| x.distance(&q) <= r) {
                            out.push([k, j, i]);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The array index, in a crop at `origin` of shape `dim`, of the voxel holding `p`.
fn local_index(grid: &impl OnGrid, origin: [usize; 3], dim: (usize, usize, usize), p: RasMm) -> Option<[usize; 3]> {
    let a = grid.index_of_ras(p)?;
    let l = [a.k.checked_sub(origin[0])?, a.j.checked_sub(origin[1])?, a.i.checked_sub(origin[2])?];
    (l[0] < dim.0 && l[1] < dim.1 && l[2] < dim.2).then_some(l)
}

/// The part of `mask` the positive markers `keep` win in a marker-controlled watershed against
/// the negative markers `cut` (module doc, step 2): both flood `mask` in order of decreasing
/// level, each voxel taken by the front that reaches it first. A front's level is the least
/// depth on its way from its marker (the markers themselves are at +∞), so it never rises
/// again once the front has passed a shallower voxel: each voxel goes to the marker with the
/// widest way to it. A neighbour behind a neck goes to a negative marker in it that lies deeper
/// than the neck; one nearer the neighbour's border than the neck is wide loses it (a user
/// clicks in the middle of what should go, as the simulated user does).
pub fn split_by_depth(mask: &Array3<bool>, keep: &Array3<bool>, cut: &Array3<bool>, grid: &impl OnGrid) -> Array3<bool> {
    let d = mask.dim();
    let mut outside = Array3::from_elem((d.0 + 2, d.1 + 2, d.2 + 2), true);
    outside.slice_mut(s![1..d.0 + 1, 1..d.1 + 1, 1..d.2 + 1]).assign(&mask.mapv(|m| !m));
    let depth = crate::shape::sdf::edt(outside.view(), grid.spacing());
    let depth_at = |(k, j, i): (usize, usize, usize)| depth[[k + 1, j + 1, i + 1]];
    // 0: not reached, 1: kept, 2: cut.
    let mut owner = Array3::<u8>::zeros(d);
    // (level as ordered bits, −arrival order, voxel): the deepest level first, then first come.
    let mut heap: BinaryHeap<(u32, std::cmp::Reverse<u64>, (usize, usize, usize))> = BinaryHeap::new();
    let mut order = 0u64;
    for (idx, _) in mask.indexed_iter().filter(|(idx, m)| **m && (keep[*idx] || cut[*idx])) {
        owner[idx] = if keep[idx] { 1 } else { 2 };
        heap.push((f32::INFINITY.to_bits(), std::cmp::Reverse(order), idx));
        order += 1;
    }
    while let Some((level, _, (k, j, i))) = heap.pop() {
        let who = owner[[k, j, i]];
        let level = f32::from_bits(level);
        let steps = [(-1isize, 0isize, 0isize), (1, 0, 0), (0, -1, 0), (0, 1, 0), (0, 0, -1), (0, 0, 1)];
        for (dk, dj, di) in steps {
            let (nk, nj, ni) = (k as isize + dk, j as isize + dj, i as isize + di);
            if nk < 0 || nj < 0 || ni < 0 || nk as usize >= d.0 || nj as usize >= d.1 || ni as usize >= d.2 {
                continue;
            }
            let nb = (nk as usize, nj as usize, ni as usize);
            if mask[nb] && owner[nb] == 0 {
                owner[nb] = who;
                heap.push((depth_at(nb).min(level).max(0.0).to_bits(), std::cmp::Reverse(order), nb));
                order += 1;
            }
        }
    }
    owner.mapv(|w| w == 1)
}

/// An object after some prompts: the prompts, what its positive points found (the union of
/// their passes, before the cut), the wrong structures its negative points named (see
/// [`wrong_structure`]) and the candidate (the union less those, cut to the prompts).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectState {
    pub prompts: PromptSet,
    pub found: Option<GridComponent>,
    /// The shapes segmented at negative points that were taken as other structures: never
    /// part of the candidate (but near a positive point, [`PromptSet::keeps`]) until a
    /// positive point lands in one, which drops it.
    pub excluded: Vec<GridComponent>,
    pub candidate: Option<GridComponent>,
}

/// The most of the object a wrong structure (the shape segmented at a negative point) may
/// cover and still be removed: more, and the pass at the negative point more likely ran into
/// the object itself than found a neighbour, so only the depth split acts.
pub const WRONG_MAX_SHARE: f64 = 0.5;

/// Whether `wrong`, the shape segmented at a negative point, is another structure than the
/// object `found` (module doc): it must take a voxel of `found`, none within
/// [`POSITIVE_KEEP_RADIUS_MM`] of a positive point (nor a positive point's own voxel), and at
/// most [`WRONG_MAX_SHARE`] of `found`.
pub fn wrong_structure(found: &GridComponent, wrong: &GridComponent, prompts: &PromptSet, grid: &impl OnGrid) -> bool {
    let shared = wrong.voxels().filter(|v| found.contains(*v)).count();
    let on_positive = prompts.positive.iter().any(|p| grid.index_of_ras(*p).is_some_and(|a| wrong.contains(a)));
    shared > 0
        && !on_positive
        && (shared as f64) <= WRONG_MAX_SHARE * found.voxel_count as f64
        && !wrong.voxels().any(|v| prompts.keeps(grid.ras_of(v)))
}

/// `comp` without the voxels of `others` (but those `prompts` keeps near a positive point);
/// `None` when nothing is left.
pub fn without(comp: &GridComponent, others: &[GridComponent], prompts: &PromptSet, grid: &impl OnGrid) -> Option<GridComponent> {
    if others.is_empty() {
        return Some(comp.clone());
    }
    let o = comp.origin_kji;
    let rfv = *grid.ras_from_voxel();
    let mut m = comp.mask.clone();
    Zip::indexed(&mut m).par_for_each(|(k, j, i), v| {
        let a = crate::geometry::ArrayIdx { k: o[0] + k, j: o[1] + j, i: o[2] + i };
        if *v && others.iter().any(|w| w.contains(a)) && !prompts.keeps(rfv.apply(VoxelIjk::new(a.i as f64, a.j as f64, a.k as f64))) {
            *v = false;
        }
    });
    crop_component(&m, o)
}

/// How far from a correcting point its change may reach: this many times the point's depth in
/// the region it changes (a user clicks in the middle of what is missing or wrong, as the
/// simulated user does, so a region of that depth reaches about that far; farther, a pass has
/// more likely run into a neighbour).
pub const LOCAL_REACH: f64 = 3.0;
/// The least reach of a correction (mm): a shallow region still changes around its point.
pub const LOCAL_MIN_REACH_MM: f64 = 10.0;

/// The part of `region` (a crop of `grid` at `origin`) a correction at `at` changes: its
/// 6-connected part holding `at`'s voxel, within [`LOCAL_REACH`] × `at`'s depth in it (mm to
/// the nearest voxel outside, exact EDT), at least [`LOCAL_MIN_REACH_MM`], of `at`. `None`
/// when `at` is not in `region`.
pub fn local_part(region: &Array3<bool>, origin: [usize; 3], at: RasMm, grid: &impl OnGrid) -> Option<GridComponent> {
    let a = local_index(grid, origin, region.dim(), at).filter(|a| region[*a])?;
    let part = crate::shape::flood::component_containing(region.view(), crate::geometry::ArrayIdx { k: a[0], j: a[1], i: a[2] });
    let d = part.dim();
    let mut outside = Array3::from_elem((d.0 + 2, d.1 + 2, d.2 + 2), true);
    outside.slice_mut(s![1..d.0 + 1, 1..d.1 + 1, 1..d.2 + 1]).assign(&part.mapv(|m| !m));
    let depth = crate::shape::sdf::edt(outside.view(), grid.spacing())[[a[0] + 1, a[1] + 1, a[2] + 1]] as f64;
    let reach = (LOCAL_REACH * depth).max(LOCAL_MIN_REACH_MM);
    let rfv = *grid.ras_from_voxel();
    let near = Zip::indexed(&part).par_map_collect(|(k, j, i), &m| {
        m && rfv.apply(VoxelIjk::new((origin[2] + i) as f64, (origin[1] + j) as f64, (origin[0] + k) as f64)).distance(&at) <= reach
    });
    // What the reach cut off from the point stays off.
    let local = crate::shape::flood::component_containing(near.view(), crate::geometry::ArrayIdx { k: a[0], j: a[1], i: a[2] });
    crop_component(&local, origin)
}

/// `comp`'s voxels that `other` lacks (`other` `None`: all), as a mask over `comp`'s crop.
fn minus(comp: &GridComponent, other: Option<&GridComponent>) -> Array3<bool> {
    let o = comp.origin_kji;
    Zip::indexed(&comp.mask).par_map_collect(|(k, j, i), &m| m && !other.is_some_and(|c| c.contains(crate::geometry::ArrayIdx { k: o[0] + k, j: o[1] + j, i: o[2] + i })))
}

/// Which kind of shape an [`ObjectState::apply`] step asks its segmenter for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// The object's, at a positive point (or a box's centre).
    Object,
    /// The structure under a negative point, to remove it ([`wrong_structure`]); its prompts
    /// hold the object's positive points as negative ones, so it never grows onto them.
    Wrong,
}

impl ObjectState {
    /// The object after one more prompt (module doc). Its box comes first; then a positive
    /// point — or, when there is no point and nothing was found yet, the box's centre — is
    /// segmented by `segment(point, prompts, Pass::Object)` (the prompts as they are with it)
    /// and joined. A negative point on an object found so far segments the structure under it
    /// (`segment(point, prompts, Pass::Wrong)`) and, when that is another structure
    /// ([`wrong_structure`]), excludes it; then it cuts. Then the candidate is cut from the
    /// union less the excluded structures.
    pub fn apply<E>(
        &self,
        prompt: &Prompt,
        grid: &impl OnGrid,
        mut segment: impl FnMut(RasMm, &PromptSet, Pass) -> Result<Option<GridComponent>, E>,
    ) -> Result<ObjectState, E> {
        let mut prompts = self.prompts.clone();
        let mut excluded = self.excluded.clone();
        if let Some(b) = prompt.bbox {
            prompts.add_box(b);
        }
        let mut negative = None;
        let seed = match (prompt.point, prompt.bbox) {
            (Some(p), _) if p.polarity == Polarity::Positive => Some(p.at),
            (Some(p), _) => {
                prompts.negative.push(p.at);
                negative = Some(p.at);
                None
            }
            (None, Some(b)) if self.found.is_none() => Some(b.centre()),
            (None, _) => None,
        };
        let mut found = self.found.clone();
        if let Some(at) = seed {
            prompts.positive.push(at);
            // A positive point on an excluded structure says it was not another one after all.
            if let Some(a) = grid.index_of_ras(at) {
                excluded.retain(|w| !w.contains(a));
            }
            if let Some(c) = segment(at, &prompts, Pass::Object)? {
                found = Some(match (found, &self.candidate) {
                    // A correction: only what the pass adds around the point, not the whole
                    // pass (which may have run into a neighbour far from it).
                    (Some(f), Some(cur)) => match local_part(&minus(&c, Some(cur)), c.origin_kji, at, grid) {
                        Some(add) => f.union(&add),
                        None => f,
                    },
                    (Some(f), None) => f.union(&c),
                    (None, _) => c,
                });
            }
        }
        if let (Some(at), Some(f)) = (negative, &found) {
            let against = PromptSet { positive: Vec::new(), negative: prompts.positive.clone(), bbox: None };
            if let Some(w) = segment(at, &against, Pass::Wrong)?
                && let Some(cur) = without(f, &excluded, &prompts, grid)
                && wrong_structure(&cur, &w, &prompts, grid)
            {
                // Only its part on the object around the point, and never nearer a positive
                // point than the negative one.
                let on_object = Zip::from(&minus(&w, None)).and(&minus(&w, Some(&cur))).map_collect(|&a, &b| a && !b);
                if let Some(part) = local_part(&on_object, w.origin_kji, at, grid) {
                    let rfv = *grid.ras_from_voxel();
                    let o = part.origin_kji;
                    let nearest = |p: RasMm, q: &[RasMm]| q.iter().map(|q| q.distance(&p)).fold(f64::INFINITY, f64::min);
                    let m = Zip::indexed(&part.mask).par_map_collect(|(k, j, i), &v| {
                        let p = rfv.apply(VoxelIjk::new((o[2] + i) as f64, (o[1] + j) as f64, (o[0] + k) as f64));
                        v && p.distance(&at) < nearest(p, &prompts.positive)
                    });
                    excluded.extend(crop_component(&m, o));
                }
            }
        }
        let candidate = found.as_ref().and_then(|f| without(f, &excluded, &prompts, grid)).and_then(|f| constrain(&f, &prompts, grid));
        Ok(ObjectState { prompts, found, excluded, candidate })
    }
}

/// Region growing driven by prompts (the method that needs no weights): each positive point
/// grows with [`grow_within`] (never into a negative point's neighbourhood or out of the box),
/// and the object follows [`ObjectState::apply`]. `floor`: [`super::refine::intensity_floor`].
#[derive(Clone, Debug, Default)]
pub struct PromptedGrowing {
    pub state: ObjectState,
}

impl PromptedGrowing {
    /// Applies one prompt; returns the candidate.
    pub fn add<T: crate::volume::Voxel>(&mut self, vol: &Volume<T>, prompt: &Prompt, p: &GrowParams, floor: f64, cancelled: &dyn Fn() -> bool) -> Result<Option<&GridComponent>, GrowError> {
        self.state = self.state.apply(prompt, vol, |at, prompts, _| {
            let grown = grow_within(vol, at, p, floor, prompts, cancelled)?;
            Ok::<_, GrowError>(crop_component(&grown, [0, 0, 0]))
        })?;
        Ok(self.state.candidate.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{ArrayIdx, RasFromVoxel};
    use crate::prompts::BoxPrompt;

    /// A 2 mm grid of `n`³ voxels: `inside` at 100, the background textured around 0.
    fn scan(inside: impl Fn(f64, f64, f64) -> bool, n: usize) -> Volume {
        let data = Array3::from_shape_fn((n, n, n), |(k, j, i)| {
            let (x, y, z) = (i as f64 * 2.0, j as f64 * 2.0, k as f64 * 2.0);
            if inside(x, y, z) { 100.0 } else { ((i * 7 + j * 13 + k * 29) % 11) as f32 - 5.0 }
        });
        Volume::new(data, RasFromVoxel::scale_translate([2.0; 3], [0.0; 3])).expect("volume")
    }

    fn ball(c: [f64; 3], r: f64) -> impl Fn(f64, f64, f64) -> bool + Copy {
        move |x, y, z| (x - c[0]).powi(2) + (y - c[1]).powi(2) + (z - c[2]).powi(2) <= r * r
    }

    fn truth(vol: &Volume, f: impl Fn(f64, f64, f64) -> bool) -> Array3<bool> {
        Array3::from_shape_fn(vol.data.raw_dim(), |(k, j, i)| f(i as f64 * 2.0, j as f64 * 2.0, k as f64 * 2.0))
    }

    fn dice(c: Option<&GridComponent>, t: &Array3<bool>) -> f64 {
        let d = t.dim();
        let m = c.map(|c| c.to_mask([d.0, d.1, d.2])).unwrap_or_else(|| Array3::from_elem(d, false));
        let both = m.iter().zip(t.iter()).filter(|(a, b)| **a && **b).count();
        2.0 * both as f64 / (m.iter().filter(|x| **x).count() + t.iter().filter(|x| **x).count()).max(1) as f64
    }

    fn pt(p: [f64; 3]) -> RasMm {
        RasMm::new(p[0], p[1], p[2])
    }

    /// Without a negative point, `constrain` keeps what a pass over the whole crop keeps: the
    /// 6-connected parts holding a voxel within 2 mm of a positive point (or its own voxel),
    /// the largest part when none does; on an oblique, anisotropic grid, with the crop away from
    /// the grid's origin, points inside and outside the crop, and with a box.
    #[test]
    fn without_negative_points_the_parts_holding_a_positive_point_are_kept() {
        use crate::shape::flood::component_containing;
        let rot = nalgebra::Rotation3::from_euler_angles(0.3, -0.2, 0.5).into_inner();
        let lin = rot * nalgebra::Matrix3::from_diagonal(&nalgebra::Vector3::new(0.7, 0.55, 1.6));
        let rfv = RasFromVoxel::from_parts(lin, nalgebra::Vector3::new(-30.0, 12.0, 5.0));
        let vol = Volume::new(Array3::<f32>::zeros((30, 40, 50)), rfv).expect("volume");
        let origin = [4usize, 6, 9];
        let mut rng = crate::data::phantom::Rng::new(4);
        let ras = |a: [usize; 3]| rfv.apply(VoxelIjk::new((origin[2] + a[2]) as f64, (origin[1] + a[1]) as f64, (origin[0] + a[0]) as f64));
        let mut kept_some = 0;
        for trial in 0..12 {
            // Blobs: a few boxes, so there are several parts.
            let mut m = Array3::from_elem((20, 25, 30), false);
            for _ in 0..4 {
                let c = [rng.uniform() * 20.0, rng.uniform() * 25.0, rng.uniform() * 30.0];
                let h = [2.0 + rng.uniform() * 4.0, 2.0 + rng.uniform() * 5.0, 2.0 + rng.uniform() * 6.0];
                m.indexed_iter_mut().for_each(|((k, j, i), v)| *v |= (k as f64 - c[0]).abs() <= h[0] && (j as f64 - c[1]).abs() <= h[1] && (i as f64 - c[2]).abs() <= h[2]);
            }
            let Some(comp) = crop_component(&m, origin) else { continue };
            // Points: in the mask, near its border (voxel centres a little off), or off the crop.
            let on: Vec<[usize; 3]> = comp.mask.indexed_iter().filter(|(_, v)| **v).map(|((k, j, i), _)| [k, j, i]).collect();
            let mut positive = Vec::new();
            for _ in 0..(1 + trial % 3) {
                let a = on[(rng.uniform() * on.len() as f64) as usize % on.len()];
                let c = rfv.apply(VoxelIjk::new((comp.origin_kji[2] + a[2]) as f64, (comp.origin_kji[1] + a[1]) as f64, (comp.origin_kji[0] + a[0]) as f64));
                let off = 1.9 * (trial % 2) as f64;
                positive.push(RasMm::new(c.x() + off, c.y() - off * 0.5, c.z() + 0.3));
            }
            if trial == 5 {
                positive = vec![RasMm::new(500.0, 0.0, 0.0)];
            }
            let mut prompts = PromptSet { positive: positive.clone(), negative: Vec::new(), bbox: None };
            if trial == 7 {
                let (a, b) = (ras([0, 0, 0]), ras([12, 14, 16]));
                prompts.bbox = Some(BoxPrompt::from_corners([a.x(), a.y(), a.z(), b.x(), b.y(), b.z()]).expect("box"));
            }
            // The reference: the whole crop of `comp` visited.
            let o = comp.origin_kji;
            let rel = |a: [usize; 3]| rfv.apply(VoxelIjk::new((o[2] + a[2]) as f64, (o[1] + a[1]) as f64, (o[0] + a[0]) as f64));
            let mut cm = comp.mask.clone();
            if let Some(b) = &prompts.bbox {
                cm.indexed_iter_mut().for_each(|((k, j, i), v)| *v = *v && b.contains(rel([k, j, i])));
            }
            let mut seeds: Vec<[usize; 3]> = cm.indexed_iter().filter(|((k, j, i), v)| **v && positive.iter().any(|p| p.distance(&rel([*k, *j, *i])) <= POSITIVE_KEEP_RADIUS_MM)).map(|((k, j, i), _)| [k, j, i]).collect();
            seeds.extend(positive.iter().filter_map(|p| local_index(&vol, o, cm.dim(), *p)).filter(|a| cm[*a]));
            let want = if seeds.is_empty() {
                largest_component(cm.view())
            } else {
                seeds.iter().fold(Array3::from_elem(cm.raw_dim(), false), |acc, a| &acc | &component_containing(cm.view(), ArrayIdx { k: a[0], j: a[1], i: a[2] }))
            };
            let want = crop_component(&want, o);
            let got = constrain(&comp, &prompts, &vol);
            assert_eq!(got, want, "trial {trial}");
            kept_some += usize::from(got.as_ref().is_some_and(|g| g.voxel_count < comp.voxel_count));
        }
        assert!(kept_some >= 3, "only {kept_some} trials dropped a part: the test needs several");

        // A point off the mask whose only markers lie 1.2–2 mm from it, in the smaller of two
        // parts: that part alone is kept (a nearer radius, or a box on the grid too tight for
        // the oblique ball, would keep the larger part instead).
        let mut m = Array3::from_elem((20, 25, 30), false);
        m.slice_mut(s![2..8, 3..9, 4..10]).fill(true);
        m.slice_mut(s![10..19, 12..24, 14..29]).fill(true);
        let comp = crop_component(&m, origin).expect("two boxes");
        let o = comp.origin_kji;
        let rel = |a: [usize; 3]| rfv.apply(VoxelIjk::new((o[2] + a[2]) as f64, (o[1] + a[1]) as f64, (o[0] + a[0]) as f64));
        let small: Vec<[usize; 3]> = comp.mask.indexed_iter().filter(|((k, _, _), v)| **v && *k < 9).map(|((k, j, i), _)| [k, j, i]).collect();
        let dirs: Vec<nalgebra::Vector3<f64>> = (0..27).filter(|&n| n != 13).map(|n| nalgebra::Vector3::new((n % 3) as f64 - 1.0, (n / 3 % 3) as f64 - 1.0, (n / 9) as f64 - 1.0).normalize()).collect();
        let found = small.iter().flat_map(|a| dirs.iter().map(move |u| (*a, *u))).find_map(|(a, u)| {
            let c = rel(a);
            let p = RasMm::new(c.x() + 1.8 * u.x, c.y() + 1.8 * u.y, c.z() + 1.8 * u.z);
            let d: Vec<f64> = comp.mask.indexed_iter().filter(|(_, v)| **v).map(|((k, j, i), _)| p.distance(&rel([k, j, i]))).collect();
            let near = d.iter().filter(|x| **x <= POSITIVE_KEEP_RADIUS_MM).count();
            let own = local_index(&vol, o, comp.mask.dim(), p).is_some_and(|x| comp.mask[x]);
            (near > 0 && !own && d.iter().all(|x| *x > 1.2)).then_some(p)
        });
        let p = found.expect("a point 1.2–2 mm off the small part");
        let got = constrain(&comp, &PromptSet { positive: vec![p], negative: Vec::new(), bbox: None }, &vol).expect("kept");
        assert_eq!(got.voxel_count, 6 * 6 * 6, "the small part alone");
    }

    /// Two overlapping balls of one intensity (they meet on a disc of radius 10 mm at x = 52.6):
    /// growing from the first leaks into the second; a negative click in the second cuts it back
    /// where they meet.
    #[test]
    fn a_negative_click_cuts_a_leak_into_a_touching_neighbour_at_the_neck() {
        let (a, b) = (ball([40.0, 64.0, 64.0], 16.0), ball([70.0, 64.0, 64.0], 20.0));
        let vol = scan(move |x, y, z| a(x, y, z) || b(x, y, z), 64);
        let first = truth(&vol, a);
        let floor = super::super::refine::intensity_floor(&vol);
        let mut g = PromptedGrowing::default();
        let p = GrowParams::default();
        let one = g.add(&vol, &Prompt::positive(pt([40.0, 64.0, 64.0])), &p, floor, &|| false).expect("grows").cloned();
        let d1 = dice(one.as_ref(), &first);
        assert!(d1 < 0.6, "growing was expected to leak: Dice {d1:.3}");
        let two = g.add(&vol, &Prompt::negative(pt([72.0, 64.0, 64.0])), &p, floor, &|| false).expect("cuts").cloned();
        let d2 = dice(two.as_ref(), &first);
        assert!(d2 > 0.9 && d2 > d1 + 0.3, "Dice {d1:.3} → {d2:.3}");
        // Nothing of the second ball beyond the neck stays, and the first click's voxel does.
        let two = two.expect("kept");
        let past = two.voxels().filter(|v| (v.i as f64) * 2.0 > 56.0).count();
        assert_eq!(past, 0, "voxels of the second ball 4 mm past the disc where they meet were kept");
        assert!(two.contains(ArrayIdx { k: 32, j: 32, i: 20 }));
        // A further positive click on the second ball brings it back, but never the negative
        // point's neighbourhood.
        let three = g.add(&vol, &Prompt::positive(pt([84.0, 64.0, 64.0])), &p, floor, &|| false).expect("adds").cloned().expect("kept");
        let near_negative = three.voxels().filter(|v| vol.ras_of(*v).distance(&pt([72.0, 64.0, 64.0])) <= NEGATIVE_RADIUS_MM).count();
        assert_eq!(near_negative, 0, "voxels near the negative point");
    }

    /// A positive click on a missed, separate blob adds it; a box then clips the candidate.
    #[test]
    fn a_positive_click_adds_a_missed_blob_and_a_box_clips() {
        let (a, b) = (ball([30.0, 40.0, 64.0], 12.0), ball([90.0, 80.0, 64.0], 12.0));
        let vol = scan(move |x, y, z| a(x, y, z) || b(x, y, z), 64);
        let both = truth(&vol, move |x, y, z| a(x, y, z) || b(x, y, z));
        let floor = super::super::refine::intensity_floor(&vol);
        let p = GrowParams::default();
        let mut g = PromptedGrowing::default();
        let one = g.add(&vol, &Prompt::positive(pt([30.0, 40.0, 64.0])), &p, floor, &|| false).expect("grows").cloned();
        let two = g.add(&vol, &Prompt::positive(pt([90.0, 80.0, 64.0])), &p, floor, &|| false).expect("grows").cloned();
        let (d1, d2) = (dice(one.as_ref(), &both), dice(two.as_ref(), &both));
        assert!(d2 > 0.8 && d2 > d1 + 0.25, "Dice {d1:.3} → {d2:.3}");
        let two = two.expect("found");
        assert!(one.expect("found").voxels().all(|v| two.contains(v)), "the first blob stays");
        // A box over both blobs' lower halves (z ≤ 64): the upper halves go, the rest stays.
        let bx = BoxPrompt::from_corners([10.0, 20.0, 40.0, 110.0, 100.0, 64.0]).expect("box");
        let three = g.add(&vol, &Prompt::boxed(bx), &p, floor, &|| false).expect("clips").cloned().expect("kept");
        assert!(three.voxels().all(|v| bx.contains(vol.ras_of(v))));
        assert_eq!(three.voxel_count, two.voxels().filter(|v| bx.contains(vol.ras_of(*v))).count());
        assert!(three.voxel_count < two.voxel_count * 2 / 3);
    }

    /// A box alone starts an object at its centre and bounds it: growing in a slab that fills
    /// the scan stops at the box.
    #[test]
    fn a_box_alone_segments_from_its_centre_within_it() {
        let vol = scan(|_, _, z| (40.0..90.0).contains(&z), 48);
        let floor = super::super::refine::intensity_floor(&vol);
        let bx = BoxPrompt::from_corners([20.0, 20.0, 50.0, 60.0, 50.0, 80.0]).expect("box");
        let mut g = PromptedGrowing::default();
        let c = g.add(&vol, &Prompt::boxed(bx), &GrowParams::default(), floor, &|| false).expect("grows").cloned().expect("found");
        assert_eq!(g.state.prompts.positive, vec![bx.centre()]);
        assert!(c.voxels().all(|v| bx.contains(vol.ras_of(v))));
        // The box's voxels in the slab: x 20..60 (21 voxels), y 20..50 (16), z 50..80 (16).
        assert!(c.voxel_count as f64 > 0.9 * (21 * 16 * 16) as f64, "{}", c.voxel_count);
    }

    /// The watershed gives the neck to neither side's deep basin: on a dumbbell (two 6-voxel
    /// balls joined by a 1-voxel bar) each marker takes its own ball.
    #[test]
    fn split_by_depth_meets_at_the_neck() {
        let vol = Volume::new(Array3::zeros((16, 16, 40)), RasFromVoxel::identity()).expect("grid");
        let f = |k: usize, j: usize, i: usize, c: f64| ((k as f64 - 8.0).powi(2) + (j as f64 - 8.0).powi(2) + (i as f64 - c).powi(2)).sqrt() <= 6.0;
        let mask = Array3::from_shape_fn((16, 16, 40), |(k, j, i)| f(k, j, i, 8.0) || f(k, j, i, 31.0) || (k == 8 && j == 8 && (8..=31).contains(&i)));
        let mut keep = Array3::from_elem(mask.dim(), false);
        let mut cut = keep.clone();
        // The positive marker off-centre, near the bar; the negative one at the far ball's edge.
        keep[[8, 8, 12]] = true;
        cut[[8, 8, 36]] = true;
        let kept = split_by_depth(&mask, &keep, &cut, &vol);
        for ((k, j, i), m) in mask.indexed_iter() {
            if *m && f(k, j, i, 8.0) {
                assert!(kept[[k, j, i]], "first ball voxel {k},{j},{i} lost");
            }
            if *m && f(k, j, i, 31.0) {
                assert!(!kept[[k, j, i]], "second ball voxel {k},{j},{i} kept");
            }
        }
    }

    /// A component of the `n`³ 2 mm grid of `vol` from a predicate on RAS mm.
    fn comp(vol: &Volume, f: impl Fn(f64, f64, f64) -> bool) -> GridComponent {
        crop_component(&truth(vol, f), [0, 0, 0]).expect("not empty")
    }

    /// A ball (radius 8 mm) with a bar (2 mm thick) running 60 mm from it: from the ball's
    /// centre (10 mm deep) a correction reaches 3 × 10 = 30 mm, so the ball and the bar's near
    /// part stay and its far part goes; a point off the region changes nothing.
    #[test]
    fn local_part_keeps_what_lies_within_three_depths_of_the_point() {
        let vol = scan(|_, _, _| false, 48);
        let b = ball([30.0, 30.0, 30.0], 8.0);
        let region = truth(&vol, move |x, y, z| b(x, y, z) || ((30.0..=90.0).contains(&x) && (y - 30.0).abs() <= 2.0 && (z - 30.0).abs() <= 2.0));
        let part = local_part(&region, [0, 0, 0], pt([30.0, 30.0, 30.0]), &vol).expect("the point is in the region");
        let xs: Vec<f64> = part.voxels().map(|v| vol.ras_of(v).x()).collect();
        assert!(truth(&vol, b).indexed_iter().filter(|(_, m)| **m).all(|((k, j, i), _)| part.contains(ArrayIdx { k, j, i })), "the ball is kept");
        assert!(xs.iter().any(|x| (54.0..=60.0).contains(x)), "the bar's near part is kept");
        assert!(xs.iter().all(|x| *x <= 60.0), "the bar is kept beyond the reach: {:?}", xs.iter().cloned().fold(0.0, f64::max));
        assert!(local_part(&region, [0, 0, 0], pt([60.0, 60.0, 60.0]), &vol).is_none());
    }

    /// A later positive point whose pass found the missed ball and ran on along a sheet into
    /// a neighbour: the object takes the ball, not the sheet's far part (the whole pass was
    /// joined before).
    #[test]
    fn a_positive_correction_adds_only_around_its_point() {
        let vol = scan(|_, _, _| false, 48);
        let (a, b) = (ball([30.0, 48.0, 48.0], 10.0), ball([60.0, 48.0, 48.0], 8.0));
        let sheet = |x: f64, y: f64, z: f64| (56.0..=64.0).contains(&x) && (48.0..=94.0).contains(&y) && (46.0..=50.0).contains(&z);
        let one = ObjectState::default().apply(&Prompt::positive(pt([30.0, 48.0, 48.0])), &vol, |_, _, _| Ok::<_, ()>(Some(comp(&vol, a)))).expect("first");
        let two = one
            .apply(&Prompt::positive(pt([60.0, 48.0, 48.0])), &vol, |_, _, pass| {
                assert_eq!(pass, Pass::Object);
                Ok::<_, ()>(Some(comp(&vol, move |x, y, z| b(x, y, z) || sheet(x, y, z))))
            })
            .expect("second");
        let c = two.candidate.expect("candidate");
        for f in [a, b] {
            let want = truth(&vol, f);
            assert!(want.indexed_iter().filter(|(_, m)| **m).all(|((k, j, i), _)| c.contains(ArrayIdx { k, j, i })), "a ball was lost");
        }
        let far = c.voxels().filter(|v| vol.ras_of(*v).y() > 80.0).count();
        assert_eq!(far, 0, "the sheet 32 mm or more from the point was joined");
    }

    /// Two boxes touching along a whole face (no neck for the depth split): a negative point in
    /// the second, whose own pass finds that box, removes all of it; the first stays. Without
    /// that pass the split alone leaves some of it.
    #[test]
    fn a_negative_point_removes_the_structure_under_it_across_a_broad_contact() {
        let vol = scan(|_, _, _| false, 48);
        let first = |x: f64, y: f64, z: f64| (20.0..=60.0).contains(&x) && (30.0..=66.0).contains(&y) && (30.0..=66.0).contains(&z);
        let second = |x: f64, y: f64, z: f64| x > 60.0 && x <= 80.0 && (30.0..=66.0).contains(&y) && (30.0..=66.0).contains(&z);
        let start = ObjectState::default()
            .apply(&Prompt::positive(pt([40.0, 48.0, 48.0])), &vol, |_, _, _| Ok::<_, ()>(Some(comp(&vol, move |x, y, z| first(x, y, z) || second(x, y, z)))))
            .expect("first");
        let negative = Prompt::negative(pt([70.0, 48.0, 48.0]));
        let cut = start
            .apply(&negative, &vol, |at, prompts, pass| {
                assert_eq!((pass, at), (Pass::Wrong, pt([70.0, 48.0, 48.0])));
                // Its pass is told to keep off the object's positive point.
                assert_eq!((prompts.negative.clone(), prompts.positive.len()), (vec![pt([40.0, 48.0, 48.0])], 0));
                Ok::<_, ()>(Some(comp(&vol, second)))
            })
            .expect("cut");
        let c = cut.candidate.as_ref().expect("candidate");
        let second_n = truth(&vol, second).iter().filter(|m| **m).count();
        let left = c.voxels().filter(|v| second(vol.ras_of(*v).x(), vol.ras_of(*v).y(), vol.ras_of(*v).z())).count();
        assert_eq!(left, 0, "{left} of the second box's {second_n} voxels stay");
        assert!(truth(&vol, first).indexed_iter().filter(|(_, m)| **m).all(|((k, j, i), _)| c.contains(ArrayIdx { k, j, i })), "the first box lost voxels");
        let split_only = start.apply(&negative, &vol, |_, _, _| Ok::<_, ()>(None)).expect("split");
        let kept = split_only.candidate.expect("candidate").voxels().filter(|v| vol.ras_of(*v).x() > 61.0).count();
        assert!(kept > 0, "the depth split alone was expected to keep part of the broadly touching box");
        // A pass at the negative point that takes the positive point (it ran into the object)
        // removes nothing: only the split acts.
        let into = start.apply(&negative, &vol, |_, _, _| Ok::<_, ()>(Some(comp(&vol, move |x, y, z| first(x, y, z) || second(x, y, z))))).expect("into");
        assert!(into.excluded.is_empty());
        assert_eq!(into.candidate, split_only_candidate(&start, &negative, &vol));
    }

    fn split_only_candidate(start: &ObjectState, p: &Prompt, vol: &Volume) -> Option<GridComponent> {
        start.apply(p, vol, |_, _, _| Ok::<_, ()>(None)).expect("split").candidate
    }
}
