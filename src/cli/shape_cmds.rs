//! `sdf`, `mesh` and `metrics` subcommands (README, "Command line").

use crate::shape::{self, MeshSpace};
use crate::volume::{OnGrid, Volume};
use anyhow::{Result, bail};
use std::path::Path;

/// `sdf LABELS OUT [--label N]`: signed distance in mm (negative inside) as float NIfTI on the
/// label map's grid; without `--label`, of the union of every non-zero label.
pub fn sdf(labels_path: &Path, out: &Path, label: Option<u16>) -> Result<()> {
    let labels = crate::volume::open_labels(labels_path)?;
    let what = label.map_or("any non-zero label".to_string(), |l| format!("label {l}"));
    let inside = {
        use rayon::prelude::*;
        let flat = labels.data.as_slice_memory_order().unwrap_or(&[]);
        flat.par_iter().filter(|&&v| if let Some(l) = label { v == l } else { v != 0 }).count()
    };
    if inside == 0 {
        bail!("{}: {what} is absent (no voxel to measure distances to)", labels_path.display());
    }
    if inside == labels.shape().len() {
        bail!("{}: {what} fills every voxel (no outside to measure distances to)", labels_path.display());
    }
    let Volume { data, ras_from_voxel, .. } = shape::sdf_of_labels(&labels, label);
    let vol = Volume { data, ras_from_voxel, meta: Default::default() };
    vol.save(out, Some(crate::volume::DataType::Float32))?;
    log::info!("signed distance of {what} ({} voxels inside) → {}", inside, out.display());
    Ok(())
}

/// `mesh LABELS OUT.(stl|obj|ply) [--label N] [--lps] [--smooth ITER] [--decimate RATIO]`.
pub fn mesh(
    labels_path: &Path,
    out: &Path,
    label: Option<u16>,
    lps: bool,
    smooth: usize,
    decimate: Option<f64>,
) -> Result<()> {
    let labels = crate::volume::open_labels(labels_path)?;
    let ids: Vec<u16> = match label {
        Some(l) => vec![l],
        None => labels.counts().into_iter().map(|(l, _)| l).collect(),
    };
    if ids.is_empty() {
        bail!("{}: no non-zero label to mesh", labels_path.display());
    }
    let export = shape::export::SurfaceExport {
        labels: ids.iter().map(|&l| (l, format!("label_{l}"))).collect(),
        smooth,
        decimate,
        space: if lps { MeshSpace::Lps } else { MeshSpace::Ras },
    };
    let tris = shape::export::export_label_surfaces(&labels, out, &export).map_err(|e| anyhow::anyhow!("{e} (from {})", labels_path.display()))?;
    log::info!("{} label(s), {tris} triangles → {}", ids.len(), out.display());
    Ok(())
}

#[derive(serde::Serialize)]
struct MetricsJson<'a> {
    pred: String,
    gt: String,
    spacing_mm: [f64; 3],
    labels: &'a [shape::LabelMetrics],
}

/// `metrics PRED GT [--json]`: per label present in either file.
pub fn metrics(pred_path: &Path, gt_path: &Path, json: bool) -> Result<()> {
    let (pred, gt) = rayon::join(|| crate::volume::open_labels(pred_path), || crate::volume::open_labels(gt_path));
    let (pred, gt) = (pred?, gt?);
    let rows = shape::compare_label_maps(&pred, &gt, pred_path, gt_path)?;
    if json {
        let out = MetricsJson {
            pred: pred_path.display().to_string(),
            gt: gt_path.display().to_string(),
            spacing_mm: gt.spacing_mm(),
            labels: &rows,
        };
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    let mm = |x: Option<f64>| x.map_or("—".to_string(), |v| format!("{v:.3}"));
    println!("{:>6} {:>8} {:>8} {:>9} {:>9} {:>10} {:>10} {:>10}", "label", "dice", "iou", "hd95_mm", "assd_mm", "chamfer_mm", "pred_vox", "gt_vox");
    for r in &rows {
        println!(
            "{:>6} {:>8.4} {:>8.4} {:>9} {:>9} {:>10} {:>10} {:>10}",
            r.label,
            r.dice,
            r.iou,
            mm(r.hd95_mm),
            mm(r.assd_mm),
            mm(r.chamfer_mm),
            r.pred_voxels,
            r.gt_voxels
        );
    }
    println!("(— : the label is empty in one of the files, so there is no surface to measure)");
    Ok(())
}
