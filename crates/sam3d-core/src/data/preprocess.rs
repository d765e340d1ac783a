//! Dataset preprocessing (no tch; the cases are found by [`super::cases`]): resamples to
//! isotropic spacing, computes per-class SDFs and writes a cache: one `.safetensors` per case
//! (`image` f32 `[D,H,W]`, `labels` u16 `[D,H,W]`, `sdf` f32 `[C,D,H,W]`, the affine and the
//! classes in its metadata) and `index.json` listing the samples (`case`, `class`, `axis`,
//! `slice_idx`) chosen by the slice-sampling method.

use crate::data::phantom::Rng;
use crate::geometry::SpacingIjk;
use crate::volume::{Interp, LabelMap, OnGrid, ResampleError, Volume, VolumeError, resample_to_spacing};
use ndarray::{Array3, Array4, Axis};
use safetensors::{Dtype, tensor::TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    #[error("{0}")]
    Volume(#[from] VolumeError),
    #[error("{}: {source}", path.display())]
    Resample { path: PathBuf, source: ResampleError },
    /// Reading a case's scan or labels failed (`error` says where; not a `source`, so that a
    /// chain of causes does not print it twice).
    #[error("case {case}: {error}")]
    Case { case: String, error: VolumeError },
}

fn ferr(path: &Path, problem: impl Into<String>) -> DataError {
    DataError::File { path: path.to_path_buf(), problem: problem.into() }
}

pub use super::cases::{CasePair, LoadedCase, find_pairs};

/// How slices become samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SliceSampling {
    /// Every slice through the class along one axis drawn per (case, class).
    RandomAxis,
    /// [`UNIFORM_PER_AXIS`] evenly spaced slices through the class on each axis.
    Uniform,
    /// The class's central slice on each axis.
    Central,
    /// Every slice through the class on each axis.
    All,
}

/// Slices per axis and class for [`SliceSampling::Uniform`] (fewer when the class is thinner).
pub const UNIFORM_PER_AXIS: usize = 5;

/// One cached sample: the click is the deepest point of `class` on slice `slice_idx` of array
/// axis `axis` (0 = k, 1 = j, 2 = i) of the isotropic grid.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SampleRef {
    pub case: String,
    pub class: u16,
    pub axis: usize,
    pub slice_idx: usize,
}

/// `index.json`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CacheIndex {
    pub spacing_mm: f64,
    pub sampling: SliceSampling,
    /// Case name → its file (relative to the cache directory).
    pub cases: Vec<(String, String)>,
    pub samples: Vec<SampleRef>,
}

/// The slices (along array axis `axis`) that contain `label`.
pub fn slices_with(labels: &Array3<u16>, label: u16, axis: usize) -> Vec<usize> {
    labels.axis_iter(Axis(axis)).enumerate().filter(|(_, s)| s.iter().any(|&v| v == label)).map(|(i, _)| i).collect()
}

/// Samples of one class by the sampling method.
pub fn choose_slices(labels: &Array3<u16>, label: u16, sampling: SliceSampling, rng: &mut Rng) -> Vec<(usize, usize)> {
    let axes: Vec<usize> = match sampling {
        SliceSampling::RandomAxis => vec![rng.below(3)],
        _ => vec![0, 1, 2],
    };
    let mut out = Vec::new();
    for ax in axes {
        let s = slices_with(labels, label, ax);
        if s.is_empty() {
            continue;
        }
        let chosen: Vec<usize> = match sampling {
            SliceSampling::All | SliceSampling::RandomAxis => s,
            SliceSampling::Central => vec![s[s.len() / 2]],
            SliceSampling::Uniform => {
                let n = UNIFORM_PER_AXIS.min(s.len());
                (0..n).map(|q| s[((2 * q + 1) * s.len()) / (2 * n)]).collect()
            }
        };
        out.extend(chosen.into_iter().map(|i| (ax, i)));
    }
    out
}

/// A preprocessed case (isotropic).
#[derive(Clone, Debug)]
pub struct CachedCase {
    pub volume: Volume,
    pub labels: LabelMap,
    pub classes: Vec<u16>,
    /// `[C, D, H, W]` mm.
    pub sdf: Array4<f32>,
}

/// Resamples one pair isotropically and computes its per-class SDF. `max_classes`: keep the
/// first N labels (ascending ids).
pub fn preprocess_case(pair: &CasePair, spacing_mm: f64, max_classes: Option<usize>) -> Result<CachedCase, DataError> {
    let super::cases::LoadedCase { volume: vol, labels: lab, .. } = pair.load()?;
    let volume = resample_to_spacing(&vol, SpacingIjk::isotropic(spacing_mm), Interp::Linear)
        .map_err(|source| DataError::Resample { path: pair.image.clone(), source })?;
    let labels = crate::volume::resample::resample_labels_to_grid(&lab, volume.shape(), &volume.ras_from_voxel);
    let mut classes: Vec<u16> = labels.counts().into_iter().map(|(l, _)| l).filter(|&l| l != 0).collect();
    if let Some(n) = max_classes {
        classes.truncate(n);
    }
    let sdf = crate::shape::sdf::sdf_classes(labels.data.view(), &classes, labels.spacing());
    Ok(CachedCase { volume, labels, classes, sdf })
}

/// Writes a cached case (atomically).
pub fn write_case(path: &Path, c: &CachedCase) -> Result<(), DataError> {
    let f32s = |a: &[f32]| bytemuck::cast_slice::<f32, u8>(a).to_vec();
    let img = c.volume.data.as_standard_layout().iter().copied().collect::<Vec<f32>>();
    let lab: Vec<u16> = c.labels.data.as_standard_layout().iter().copied().collect();
    let sdf = c.sdf.as_standard_layout().iter().copied().collect::<Vec<f32>>();
    let (b_img, b_lab, b_sdf) = (f32s(&img), bytemuck::cast_slice::<u16, u8>(&lab).to_vec(), f32s(&sdf));
    let sh3 = c.volume.data.shape().to_vec();
    let views = vec![
        ("image".to_string(), TensorView::new(Dtype::F32, sh3.clone(), &b_img).map_err(|e| ferr(path, e.to_string()))?),
        ("labels".to_string(), TensorView::new(Dtype::U16, sh3, &b_lab).map_err(|e| ferr(path, e.to_string()))?),
        ("sdf".to_string(), TensorView::new(Dtype::F32, c.sdf.shape().to_vec(), &b_sdf).map_err(|e| ferr(path, e.to_string()))?),
    ];
    let meta = HashMap::from([
        ("ras_from_voxel".to_string(), serde_json::to_string(&c.volume.ras_from_voxel.rows()).unwrap_or_default()),
        ("classes".to_string(), serde_json::to_string(&c.classes).unwrap_or_default()),
    ]);
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| ferr(path, e.to_string()))?;
    crate::volume::atomic_write(path, |w| std::io::Write::write_all(w, &bytes))?;
    Ok(())
}

/// Reads a cached case.
pub fn read_case(path: &Path) -> Result<CachedCase, DataError> {
    let bytes = std::fs::read(path).map_err(|e| ferr(path, format!("cannot read: {e}")))?;
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| ferr(path, e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ferr(path, e.to_string()))?;
    let meta = md.metadata().clone().unwrap_or_default();
    let rows: [[f64; 4]; 4] = meta
        .get("ras_from_voxel")
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| ferr(path, "no affine in the metadata: not a preprocessed case"))?;
    let classes: Vec<u16> = meta.get("classes").and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
    let aff = crate::geometry::RasFromVoxel::from_rows(rows).map_err(|e| ferr(path, e.to_string()))?;
    let get = |n: &str| st.tensor(n).map_err(|e| ferr(path, format!("{n}: {e}")));
    let img = get("image")?;
    let sh: Vec<usize> = img.shape().to_vec();
    let f: Vec<f32> = img.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let data = Array3::from_shape_vec((sh[0], sh[1], sh[2]), f).map_err(|e| ferr(path, e.to_string()))?;
    let l = get("labels")?;
    let lv: Vec<u16> = l.data().chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
    let ldata = Array3::from_shape_vec((sh[0], sh[1], sh[2]), lv).map_err(|e| ferr(path, e.to_string()))?;
    let s = get("sdf")?;
    let ss = s.shape().to_vec();
    let sv: Vec<f32> = s.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let sdf = Array4::from_shape_vec((ss[0], ss[1], ss[2], ss[3]), sv).map_err(|e| ferr(path, e.to_string()))?;
    Ok(CachedCase {
        volume: Volume::new(data, aff)?,
        labels: LabelMap::new(ldata, aff)?,
        classes,
        sdf,
    })
}

/// `--shard I/N`: keeps pairs `I, I+N, I+2N, …` (0-based `I`).
pub fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s.split_once('/').ok_or_else(|| format!("--shard '{s}': expected I/N"))?;
    let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| format!("--shard '{s}': I is not a number"))?, n.trim().parse().map_err(|_| format!("--shard '{s}': N is not a number"))?);
    if n == 0 || i >= n {
        return Err(format!("--shard '{s}': need 0 ≤ I < N"));
    }
    Ok((i, n))
}

/// Preprocesses every pair of `input` (this shard's share) into `out`; `on_case` is called after
/// each case (progress). Returns the index written (`index.json`, or `index-I-of-N.json` for a shard).
pub fn preprocess_dir(
    input: &Path,
    out: &Path,
    spacing_mm: f64,
    sampling: SliceSampling,
    max_classes: Option<usize>,
    shard: Option<(usize, usize)>,
    on_case: &(dyn Fn() + Sync),
) -> Result<CacheIndex, DataError> {
    if !(spacing_mm.is_finite() && spacing_mm > 0.0) {
        return Err(ferr(input, format!("--spacing must be a positive number of mm, got {spacing_mm}")));
    }
    let mut pairs = find_pairs(input)?;
    if let Some((i, n)) = shard {
        pairs = pairs.into_iter().enumerate().filter(|(k, _)| k % n == i).map(|(_, p)| p).collect();
    }
    std::fs::create_dir_all(out).map_err(|e| ferr(out, format!("cannot create directory: {e}")))?;
    let mut index = CacheIndex { spacing_mm, sampling, cases: Vec::new(), samples: Vec::new() };
    for (ci, pair) in pairs.iter().enumerate() {
        let c = preprocess_case(pair, spacing_mm, max_classes)?;
        let file = format!("{}.safetensors", pair.name);
        write_case(&out.join(&file), &c)?;
        let mut rng = Rng::new(0x5eed ^ ci as u64);
        for &label in &c.classes {
            for (axis, slice_idx) in choose_slices(&c.labels.data, label, sampling, &mut rng) {
                index.samples.push(SampleRef { case: pair.name.clone(), class: label, axis, slice_idx });
            }
        }
        index.cases.push((pair.name.clone(), file));
        on_case();
    }
    let name = match shard {
        Some((i, n)) => format!("index-{i}-of-{n}.json"),
        None => "index.json".into(),
    };
    let text = serde_json::to_string_pretty(&index).map_err(|e| ferr(out, e.to_string()))?;
    crate::volume::atomic_write(&out.join(name), |w| std::io::Write::write_all(w, text.as_bytes()))?;
    Ok(index)
}

/// The deepest point (largest in-plane distance to the outside, exact EDT in mm) of `mask` on
/// slice `idx` of array axis `axis` (0 = k, 1 = j, 2 = i), in RAS. `None` when the slice misses it.
pub fn deepest_on_slice(mask: &Array3<bool>, axis: usize, idx: usize, grid: &impl OnGrid) -> Option<crate::geometry::RasMm> {
    point_at_depth_on_slice(mask, axis, idx, grid, 1.0)
}

/// The point of `mask` on slice `idx` of array axis `axis` whose in-plane depth (distance to the
/// outside, mm) is closest to `fraction` of the slice's greatest depth: 1 is the deepest point
/// ([`deepest_on_slice`]), 0.5 a point halfway from the border to it, a smaller fraction one
/// nearer the border (an off-centre click). Ties go to the last in array order. In RAS; `None`
/// when the slice misses the mask.
pub fn point_at_depth_on_slice(mask: &Array3<bool>, axis: usize, idx: usize, grid: &impl OnGrid, fraction: f64) -> Option<crate::geometry::RasMm> {
    if idx >= mask.shape()[axis] {
        return None;
    }
    // The slice with a ring of outside pixels around it: the scan's edge bounds what a user sees
    // of an organ it cuts, so the deepest point is measured from that edge too (and never sits
    // on it).
    let sl = mask.index_axis(Axis(axis), idx);
    let (h, w) = sl.dim();
    let mut outside = Array3::from_elem((1, h + 2, w + 2), true);
    outside.slice_mut(ndarray::s![0, 1..=h, 1..=w]).zip_mut_with(&sl, |o, &m| *o = !m);
    // The slice's in-plane axes in array order: the padded `[1, h, w]` array's axes 1 and 2.
    let sp_kji = grid.spacing().kji();
    let in_plane: Vec<usize> = (0..3).filter(|&a| a != axis).collect();
    let slice_spacing = SpacingIjk([sp_kji[in_plane[1]], sp_kji[in_plane[0]], sp_kji[axis]]);
    let d = crate::shape::sdf::edt(outside.view(), slice_spacing);
    let inner = d.slice(ndarray::s![0, 1..=h, 1..=w]);
    let inside = || inner.indexed_iter().filter(|(p, v): &((usize, usize), &f32)| sl[*p] && v.is_finite());
    let deepest = inside().map(|(_, v)| *v).fold(f32::NEG_INFINITY, f32::max);
    let target = deepest * fraction.clamp(0.0, 1.0) as f32;
    // The last point in array order among the closest to the target depth (as `max_by` picks
    // the deepest).
    let best: (usize, usize) = inside().fold(None, |acc: Option<((usize, usize), f32)>, (p, v)| {
        let e = (v - target).abs();
        match acc {
            Some((_, b)) if b < e => acc,
            _ => Some((p, e)),
        }
    })?.0;
    let mut kji = [0usize; 3];
    kji[axis] = idx;
    kji[in_plane[0]] = best.0;
    kji[in_plane[1]] = best.1;
    Some(grid.ras_of(crate::geometry::ArrayIdx { k: kji[0], j: kji[1], i: kji[2] }))
}

/// The view plane whose normal is closest to array axis `axis`'s direction on this grid.
pub fn plane_of_axis(grid: &impl OnGrid, axis: usize) -> crate::geometry::ViewPlane {
    let col = grid.ras_from_voxel().linear().column(2 - axis).into_owned();
    let dom = (0..3).max_by(|&a, &b| col[a].abs().total_cmp(&col[b].abs())).unwrap_or(2);
    match dom {
        0 => crate::geometry::ViewPlane::Sagittal,
        1 => crate::geometry::ViewPlane::Coronal,
        _ => crate::geometry::ViewPlane::Axial,
    }
}

/// The array axis whose direction is closest to `plane`'s normal.
pub fn axis_of_plane(grid: &impl OnGrid, plane: crate::geometry::ViewPlane) -> usize {
    (0..3).find(|&a| plane_of_axis(grid, a) == plane).unwrap_or(match plane {
        crate::geometry::ViewPlane::Axial => 0,
        crate::geometry::ViewPlane::Coronal => 1,
        crate::geometry::ViewPlane::Sagittal => 2,
    })
}

/// The click of a cached sample: the deepest point of its class on its slice (RAS), and the view
/// plane closest to the slice's normal.
pub fn sample_click(c: &CachedCase, s: &SampleRef) -> Option<(crate::geometry::RasMm, crate::geometry::ViewPlane)> {
    let mask = c.labels.data.mapv(|v| v == s.class);
    let click = deepest_on_slice(&mask, s.axis, s.slice_idx, &c.labels)?;
    Some((click, plane_of_axis(&c.labels, s.axis)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::RasFromVoxel;
    use nalgebra::{Matrix3, Vector3};

    /// An organ cut by the scan's edge: the click is the deepest point of what the scan shows,
    /// measured from the edge too, not a point on the edge.
    #[test]
    fn deepest_point_on_a_slice_keeps_off_the_scan_edge() {
        let a = RasFromVoxel::from_parts(Matrix3::from_diagonal(&Vector3::new(1.0, 2.0, 3.0)), Vector3::zeros());
        let grid = LabelMap { data: Array3::zeros((5, 40, 30)), ras_from_voxel: a, meta: Default::default() };
        // A box j in 0..8 (touching j = 0; 2 mm cells), i in 2..28 (1 mm cells), on every k.
        let mask = Array3::from_shape_fn((5, 40, 30), |(_, j, i)| j < 8 && (2..28).contains(&i));
        let p = deepest_on_slice(&mask, 0, 2, &grid).expect("inside");
        let v = grid.voxel_from_ras().apply(p);
        // Midway between the edge (j = −1) and j = 8; without the edge it would be j = 0.
        assert!((v.z() - 2.0).abs() < 1e-9);
        assert!((3.0..=4.0).contains(&v.y()), "j = {} (0 is on the scan's edge)", v.y());
        assert!((9.0..=20.0).contains(&v.x()), "i = {}", v.x());
        // Along another axis (a sagittal-like slice i = 10): j still keeps off the edge.
        let p = deepest_on_slice(&mask, 2, 10, &grid).expect("inside");
        let v = grid.voxel_from_ras().apply(p);
        assert!((v.x() - 10.0).abs() < 1e-9);
        assert!((3.0..=4.0).contains(&v.y()), "j = {}", v.y());
    }

    /// Off-centre clicks: a fraction of the deepest point's depth, inside the mask.
    #[test]
    fn points_at_a_fraction_of_the_depth() {
        let grid = LabelMap { data: Array3::zeros((3, 41, 41)), ras_from_voxel: RasFromVoxel::identity(), meta: Default::default() };
        // A disc of radius 15 about (20, 20) on each slice: deepest point 16 px from the
        // outside (the EDT counts to the first outside pixel).
        let mask = Array3::from_shape_fn((3, 41, 41), |(_, j, i)| (j as f64 - 20.0).powi(2) + (i as f64 - 20.0).powi(2) <= 225.0);
        let r = |p: crate::geometry::RasMm| ((p.x() - 20.0).powi(2) + (p.y() - 20.0).powi(2)).sqrt();
        let deep = deepest_on_slice(&mask, 0, 1, &grid).expect("inside");
        assert!(r(deep) < 1.0, "deepest at radius {}", r(deep));
        assert_eq!(point_at_depth_on_slice(&mask, 0, 1, &grid, 1.0), Some(deep));
        for (fraction, radius) in [(0.5, 8.0), (0.25, 12.0)] {
            let p = point_at_depth_on_slice(&mask, 0, 1, &grid, fraction).expect("inside");
            assert!((r(p) - radius).abs() <= 1.0, "fraction {fraction}: radius {} (want about {radius})", r(p));
            let v = grid.voxel_from_ras().apply(p);
            assert!(mask[[1, v.y().round() as usize, v.x().round() as usize]], "fraction {fraction}: outside the disc");
            assert!((v.z() - 1.0).abs() < 1e-9);
        }
    }

    /// A spacing that would make a grid past the limit is an error naming the image, not an
    /// allocation that aborts.
    #[test]
    fn a_spacing_too_fine_for_memory_is_an_error_naming_the_image() {
        let dir = tempfile::tempdir().expect("temp dir");
        let aff = crate::geometry::RasFromVoxel::scale_translate([1.0, 1.0, 2.0], [0.0; 3]);
        let pair = CasePair { name: "tiny".into(), image: dir.path().join("tiny.nii.gz"), labels: dir.path().join("tiny_labels.nii.gz") };
        Volume::new(Array3::zeros((4, 5, 6)), aff).expect("valid").save(&pair.image, None).expect("written");
        LabelMap::new(Array3::ones((4, 5, 6)), aff).expect("valid").save(&pair.labels).expect("written");
        let e = preprocess_case(&pair, 1e-4, None).expect_err("too fine");
        let msg = e.to_string();
        assert!(msg.contains("tiny.nii.gz") && msg.contains("0.0001") && msg.contains("voxels"), "{msg}");
        assert!(preprocess_case(&pair, 1.0, None).is_ok_and(|c| c.volume.shape() == crate::geometry::GridShape::new(6, 5, 8)));
    }
}
