//! Flood fills and connected components on voxel grids: the project's one implementation,
//! used by the region growing and refinement of [`crate::baseline`], the click's component in
//! [`crate::data::click`] and the model's component on a source grid ([`super::component`]).
//!
//! Connectivity is 6 (voxels sharing a face) everywhere; no caller uses another. The fill is a
//! scanline fill: it extends each seed to its whole run along `i` (the contiguous axis) and
//! pushes one seed per run of the four neighbouring rows, so its stack holds runs, not voxels,
//! and its inner loops read memory in order.
//!
//! Arrays are `[k, j, i]`; seeds and boxes are `[k, j, i]` array indices.

use crate::geometry::ArrayIdx;
use ndarray::{Array3, ArrayView3, Zip};

/// What a fill reached: its voxel count and inclusive bounding box (`[k, j, i]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filled {
    pub count: usize,
    pub lo: [usize; 3],
    pub hi: [usize; 3],
}

impl Filled {
    fn merge(self, o: Filled) -> Filled {
        Filled { count: self.count + o.count, lo: std::array::from_fn(|a| self.lo[a].min(o.lo[a])), hi: std::array::from_fn(|a| self.hi[a].max(o.hi[a])) }
    }
}

/// Sets to `mark` every voxel of `grid` equal to `open` that is 6-connected, through voxels
/// equal to `open`, to one of `seeds` (`[k, j, i]`). Seeds outside the grid or not `open` (a
/// wall, or already reached from an earlier seed) start nothing. Returns what was reached,
/// `None` when nothing was (or when `open == mark`, which would never end).
///
/// A grid not in standard layout is first copied into it (the fill walks rows as slices).
pub fn flood<T: Copy + PartialEq>(grid: &mut Array3<T>, seeds: impl IntoIterator<Item = [usize; 3]>, open: T, mark: T) -> Option<Filled> {
    if open == mark {
        return None;
    }
    if !grid.is_standard_layout() {
        *grid = grid.as_standard_layout().into_owned();
    }
    let (nk, nj, ni) = grid.dim();
    let Some(flat) = grid.as_slice_mut() else { unreachable!("standard layout") };
    let mut stack = Vec::new();
    let mut reached: Option<Filled> = None;
    for seed in seeds {
        let [k, j, i] = seed;
        if k >= nk || j >= nj || i >= ni || flat[(k * nj + j) * ni + i] != open {
            continue;
        }
        stack.push(seed);
        let part = fill_runs(flat, [nk, nj, ni], &mut stack, open, mark);
        reached = Some(reached.map_or(part, |r| r.merge(part)));
    }
    reached
}

/// The scanline fill of [`flood`] from the seeds on `stack` (at least one, `open`), on a
/// C-order `[nk, nj, ni]` slice.
fn fill_runs<T: Copy + PartialEq>(flat: &mut [T], [nk, nj, ni]: [usize; 3], stack: &mut Vec<[usize; 3]>, open: T, mark: T) -> Filled {
    let at = |k: usize, j: usize| (k * nj + j) * ni;
    let mut reached = Filled { count: 0, lo: [usize::MAX; 3], hi: [0; 3] };
    while let Some([k, j, i]) = stack.pop() {
        let row = at(k, j);
        if flat[row + i] != open {
            continue;
        }
        let (mut l, mut r) = (i, i);
        while l > 0 && flat[row + l - 1] == open {
            l -= 1;
        }
        while r + 1 < ni && flat[row + r + 1] == open {
            r += 1;
        }
        flat[row + l..=row + r].fill(mark);
        reached.count += r - l + 1;
        reached.lo = [reached.lo[0].min(k), reached.lo[1].min(j), reached.lo[2].min(l)];
        reached.hi = [reached.hi[0].max(k), reached.hi[1].max(j), reached.hi[2].max(r)];
        let neighbours = [(k, j.wrapping_sub(1)), (k, j + 1), (k.wrapping_sub(1), j), (k + 1, j)];
        for (kk, jj) in neighbours {
            if kk >= nk || jj >= nj {
                continue;
            }
            let nrow = at(kk, jj);
            let mut prev = false;
            for x in l..=r {
                let here = flat[nrow + x] == open;
                if here && !prev {
                    stack.push([kk, jj, x]);
                }
                prev = here;
            }
        }
    }
    reached
}

/// `1` where `mask` is true, `0` elsewhere: the grid [`flood`] fills from `1` to `2`.
fn marks(mask: ArrayView3<bool>) -> Array3<u8> {
    let mut g = Array3::<u8>::zeros(mask.raw_dim());
    Zip::from(&mut g).and(mask).par_for_each(|g, &m| *g = u8::from(m));
    g
}

/// The 6-connected component of `mask` containing `seed` (all false when the seed is not in
/// the mask).
pub fn component_containing(mask: ArrayView3<bool>, seed: ArrayIdx) -> Array3<bool> {
    let mut g = marks(mask);
    flood(&mut g, [seed.as_kji()], 1, 2);
    Zip::from(&g).par_map_collect(|&v| v == 2)
}

/// `mask` with its cavities filled: every false voxel not 6-connected through false voxels to
/// the array's border becomes true.
pub fn fill_holes(mask: ArrayView3<bool>) -> Array3<bool> {
    let mut g = Array3::<u8>::zeros(mask.raw_dim());
    Zip::from(&mut g).and(mask).par_for_each(|g, &m| *g = u8::from(!m));
    let (nk, nj, ni) = g.dim();
    if nk * nj * ni == 0 {
        return mask.to_owned();
    }
    // Seeds on the six faces; the fill skips those that are walls or already reached.
    let faces_k = [0, nk - 1].into_iter().flat_map(|k| (0..nj).flat_map(move |j| (0..ni).map(move |i| [k, j, i])));
    let faces_j = [0, nj - 1].into_iter().flat_map(|j| (0..nk).flat_map(move |k| (0..ni).map(move |i| [k, j, i])));
    let faces_i = [0, ni - 1].into_iter().flat_map(|i| (0..nk).flat_map(move |k| (0..nj).map(move |j| [k, j, i])));
    flood(&mut g, faces_k.chain(faces_j).chain(faces_i), 1, 2);
    Zip::from(&g).par_map_collect(|&v| v != 2)
}

/// The 6-connected components of `mask`, labelled `1, 2, …` in the order their first voxel
/// comes in `[k, j, i]` order (0 off the mask), with what each one covers (`parts[l − 1]`).
pub fn label_components(mask: ArrayView3<bool>) -> (Array3<u32>, Vec<Filled>) {
    const OPEN: u32 = u32::MAX;
    let mut labels = mask.mapv(|m| if m { OPEN } else { 0 });
    let (nk, nj, ni) = labels.dim();
    let mut parts = Vec::new();
    for k in 0..nk {
        for j in 0..nj {
            for i in 0..ni {
                if labels[[k, j, i]] != OPEN {
                    continue;
                }
                let label = u32::try_from(parts.len() + 1).unwrap_or(OPEN - 1);
                if let Some(part) = flood(&mut labels, [[k, j, i]], OPEN, label) {
                    parts.push(part);
                }
            }
        }
    }
    (labels, parts)
}

/// The largest 6-connected component of `mask` (the first in `[k, j, i]` order among equals;
/// all false when `mask` is).
pub fn largest_component(mask: ArrayView3<bool>) -> Array3<bool> {
    let (labels, parts) = label_components(mask);
    let best = parts.iter().enumerate().fold(None::<(usize, usize)>, |b, (n, p)| match b {
        Some((_, size)) if size >= p.count => b,
        _ => Some((n, p.count)),
    });
    match best {
        Some((n, _)) => labels.mapv(|l| l as usize == n + 1),
        None => Array3::from_elem(mask.raw_dim(), false),
    }
}

/// `mask` plus the voxels of `added` 6-connected to it through `added`: the part of
/// `mask ∪ added` connected to some voxel of `mask`.
pub fn grow_through(mask: ArrayView3<bool>, added: ArrayView3<bool>) -> Array3<bool> {
    let mut g = Array3::<u8>::zeros(mask.raw_dim());
    Zip::from(&mut g).and(mask).and(added).par_for_each(|g, &m, &a| *g = u8::from(m || a));
    // One seed per run of `mask` along `i`: the fill takes a seed's whole run at once.
    let mut seeds = Vec::new();
    for (k, plane) in mask.outer_iter().enumerate() {
        for (j, row) in plane.outer_iter().enumerate() {
            let mut prev = false;
            for (i, &m) in row.iter().enumerate() {
                if m && !prev {
                    seeds.push([k, j, i]);
                }
                prev = m;
            }
        }
    }
    flood(&mut g, seeds, 1, 2);
    Zip::from(&g).par_map_collect(|&v| v == 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 6-connected component through `seed` by breadth-first search over voxels: the
    /// plain definition the scanline fill must agree with.
    fn bfs(mask: &Array3<bool>, seed: [usize; 3]) -> Array3<bool> {
        let (nk, nj, ni) = mask.dim();
        let mut out = Array3::from_elem(mask.raw_dim(), false);
        if !mask[seed] {
            return out;
        }
        out[seed] = true;
        let mut q = std::collections::VecDeque::from([seed]);
        while let Some([k, j, i]) = q.pop_front() {
            let steps = [(k.wrapping_sub(1), j, i), (k + 1, j, i), (k, j.wrapping_sub(1), i), (k, j + 1, i), (k, j, i.wrapping_sub(1)), (k, j, i + 1)];
            for (a, b, c) in steps {
                if a < nk && b < nj && c < ni && mask[[a, b, c]] && !out[[a, b, c]] {
                    out[[a, b, c]] = true;
                    q.push_back([a, b, c]);
                }
            }
        }
        out
    }

    fn noise(seed: u64, shape: [usize; 3], p: f64) -> Array3<bool> {
        let mut r = crate::data::phantom::Rng::new(seed);
        Array3::from_shape_fn(shape, |_| r.uniform() < p)
    }

    #[test]
    fn scanline_fill_is_6_connected() {
        let mut d = Array3::<u8>::zeros((3, 4, 6));
        // An L in one slice, a diagonal-only neighbour, and a blob one slice up.
        for i in 0..4 {
            d[[1, 1, i]] = 1;
        }
        d[[1, 2, 3]] = 1;
        d[[1, 3, 4]] = 1; // touches (1, 2, 3) only diagonally
        d[[2, 2, 3]] = 1;
        d[[2, 2, 4]] = 1;
        d[[0, 0, 5]] = 1;
        let f = flood(&mut d, [[1, 1, 0]], 1, 2).expect("seed set");
        assert_eq!(f, Filled { count: 7, lo: [1, 1, 0], hi: [2, 2, 4] });
        assert_eq!(d[[1, 3, 4]], 1);
        assert_eq!(d[[0, 0, 5]], 1);
        assert!(flood(&mut d, [[0, 0, 0]], 1, 2).is_none(), "a wall seed");
        assert!(flood(&mut d, [[9, 0, 0]], 1, 2).is_none(), "a seed off the grid");
        assert!(flood(&mut d, [[0, 0, 5]], 1, 1).is_none(), "open == mark");
    }

    /// On random masks near the percolation threshold (long winding components), the scanline
    /// fill reaches exactly the voxels breadth-first search does, from every kind of seed.
    #[test]
    fn component_equals_breadth_first_search() {
        for (n, p) in [(1u64, 0.3), (2, 0.45), (3, 0.6)] {
            let m = noise(n, [7, 9, 11], p);
            for seed in [[0, 0, 0], [3, 4, 5], [6, 8, 10], [2, 7, 1]] {
                let got = component_containing(m.view(), ArrayIdx { k: seed[0], j: seed[1], i: seed[2] });
                assert_eq!(got, bfs(&m, seed), "p {p}, seed {seed:?}");
            }
        }
    }

    /// Several seeds: one fill reaches the union of their components, counted once.
    #[test]
    fn seeds_in_one_component_count_it_once() {
        let m = noise(5, [6, 6, 6], 0.55);
        let seeds: Vec<[usize; 3]> = m.indexed_iter().filter(|(_, x)| **x).map(|((k, j, i), _)| [k, j, i]).take(5).collect();
        let mut g = marks(m.view());
        let f = flood(&mut g, seeds.iter().copied(), 1, 2).expect("seeds are set");
        let union = seeds.iter().fold(Array3::from_elem(m.raw_dim(), false), |u, &s| &u | &bfs(&m, s));
        assert_eq!(Zip::from(&g).par_map_collect(|&v| v == 2), union);
        assert_eq!(f.count, union.iter().filter(|x| **x).count());
    }

    /// A transposed (non-standard layout) grid is filled in its own index order.
    #[test]
    fn fills_a_transposed_grid() {
        let m = noise(8, [5, 6, 7], 0.5);
        let seed = m.indexed_iter().find(|(_, x)| **x).map(|((k, j, i), _)| [k, j, i]).expect("some voxel");
        let mut t = marks(m.view()).reversed_axes();
        assert!(!t.is_standard_layout());
        flood(&mut t, [[seed[2], seed[1], seed[0]]], 1, 2);
        assert_eq!(t.reversed_axes().mapv(|v| v == 2), bfs(&m, seed));
    }

    #[test]
    fn holes_are_filled_and_the_outside_kept() {
        let mut m = Array3::from_elem([7, 7, 7], false);
        m.slice_mut(ndarray::s![1..6, 1..6, 1..6]).fill(true);
        m[[3, 3, 3]] = false;
        m[[2, 2, 2]] = false;
        m[[1, 3, 3]] = false; // a dent open to the outside through the face k = 0
        let f = fill_holes(m.view());
        assert!(f[[3, 3, 3]] && f[[2, 2, 2]], "cavities are filled");
        assert!(!f[[1, 3, 3]] && !f[[0, 0, 0]], "the dent and the outside stay");
        assert_eq!(f.iter().filter(|x| **x).count(), 125 - 1);
        // A hollow box touching the border on every face: its inside is a cavity.
        let mut shell = Array3::from_elem([4, 5, 6], true);
        shell.slice_mut(ndarray::s![1..3, 1..4, 1..5]).fill(false);
        assert!(fill_holes(shell.view()).iter().all(|x| *x));
    }

    #[test]
    fn labelling_and_the_largest_component() {
        let mut m = Array3::from_elem([3, 3, 9], false);
        m[[0, 0, 0]] = true; // label 1, size 1
        for i in 3..6 {
            m[[1, 1, i]] = true; // label 2, size 3
        }
        m[[2, 2, 7]] = true;
        m[[2, 2, 8]] = true; // label 3, size 2
        let (labels, parts) = label_components(m.view());
        assert_eq!(parts.iter().map(|p| p.count).collect::<Vec<_>>(), [1, 3, 2]);
        assert_eq!((labels[[0, 0, 0]], labels[[1, 1, 4]], labels[[2, 2, 8]], labels[[2, 2, 0]]), (1, 2, 3, 0));
        assert_eq!(parts[1], Filled { count: 3, lo: [1, 1, 3], hi: [1, 1, 5] });
        let big = largest_component(m.view());
        assert_eq!(big, bfs(&m, [1, 1, 3]));
        assert!(!largest_component(Array3::from_elem([2, 2, 2], false).view()).iter().any(|x| *x));
        // Equal sizes: the first in [k, j, i] order.
        let mut two = Array3::from_elem([1, 1, 5], false);
        two[[0, 0, 3]] = true;
        two[[0, 0, 1]] = true;
        assert!(largest_component(two.view())[[0, 0, 1]]);
    }

    /// The mask plus what of `added` touches it: the component of the union through the mask.
    #[test]
    fn growing_through_added_voxels() {
        for n in 0..4 {
            let mask = component_containing(noise(20 + n, [8, 8, 8], 0.5).view(), ArrayIdx { k: 4, j: 4, i: 4 });
            let mut mask = mask;
            mask[[4, 4, 4]] = true;
            let added = &noise(40 + n, [8, 8, 8], 0.4) & &mask.mapv(|m| !m);
            let union = &mask | &added;
            assert_eq!(grow_through(mask.view(), added.view()), bfs(&union, [4, 4, 4]));
        }
        // A mask of many parts (and runs that start at a row's first voxel): every part of the
        // union that holds one of its voxels, on a non-cubic grid.
        for n in 0..4 {
            let mask = noise(60 + n, [7, 9, 11], 0.08);
            let added = &noise(80 + n, [7, 9, 11], 0.2) & &mask.mapv(|m| !m);
            let union = &mask | &added;
            let (labels, _) = label_components(union.view());
            let held: std::collections::HashSet<u32> = labels.iter().zip(mask.iter()).filter(|(_, m)| **m).map(|(l, _)| *l).collect();
            let want = labels.mapv(|l| held.contains(&l) && l != 0);
            assert!(held.len() > 5, "{} parts", held.len());
            assert_eq!(grow_through(mask.view(), added.view()), want);
        }
    }
}
