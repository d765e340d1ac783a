//! `phantom`: synthetic labelled CT-like / MR-like cases for tests, demos and training.

use crate::data::phantom::{PhantomSpec, labels_tsv};
use crate::data::scenes::{Scene, generate_scene, scene_labels_tsv};
use crate::volume::Modality;
use anyhow::{Context, Result};
use std::path::Path;

/// Writes `case_NNN.nii.gz`, `case_NNN_labels.nii.gz` and `labels.tsv` into `outdir`.
pub fn phantom(outdir: &Path, cases: usize, seed: u64, spec: &PhantomSpec, scene: Scene) -> Result<()> {
    std::fs::create_dir_all(outdir).with_context(|| format!("{}: cannot create directory", outdir.display()))?;
    let modality = spec.modality;
    let bar = crate::progress::Progress::new("phantoms", cases as u64);
    for c in 0..cases {
        let case = generate_scene(scene, spec, seed.wrapping_add(c as u64));
        let stem = outdir.join(format!("case_{c:03}"));
        let dtype = if modality == Modality::Mr { crate::volume::DataType::Float32 } else { crate::volume::DataType::Int16 };
        case.volume.save(&stem.with_extension("nii.gz"), Some(dtype))?;
        case.labels.save(&outdir.join(format!("case_{c:03}_labels.nii.gz")))?;
        bar.inc(1);
    }
    bar.finish();
    crate::volume::atomic_write(&outdir.join("labels.tsv"), |f| {
        let tsv = if scene == Scene::Organs { labels_tsv() } else { scene_labels_tsv() };
        std::io::Write::write_all(f, tsv.as_bytes())
    })?;
    Ok(())
}
