//! `train` and `eval` on DICOM cases (a series with its DICOM SEG, a series with its RTSTRUCT:
//! `sam3d-core`'s `tests/data/dicom_cases`, written by `tests/oracle/dicom_case_fixtures.py`)
//! give what they give on the same cases as NIfTI: the same training cases, the same
//! evaluation rows and label names.

use sam3d_engine::engine::eval::{EvalOptions, EvalRow, evaluate};
use sam3d_engine::engine::train::{TrainConfig, load_cases, train};
use sam3d_engine::options::PipelineOptions;
use std::path::{Path, PathBuf};
use tch::Device;

fn data(which: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sam3d-core/tests/data/dicom_cases").join(which)
}

fn config(dir: &Path, steps: u64) -> TrainConfig {
    let text = format!(
        "[model]\npreset = \"tiny\"\n[data]\ndirs = [\"{}\"]\nval_cases = 0\n[train]\nsteps = {steps}\nbatch = 2\nthreads = 1\nseed = 3\n",
        dir.display()
    );
    TrainConfig::from_toml_str(&text, "test.toml", Path::new(".")).expect("config")
}

fn eval(dir: &Path, weights: Option<PathBuf>) -> (Vec<EvalRow>, sam3d_engine::engine::eval::EvalSummary) {
    let opts = EvalOptions {
        data: dir.to_path_buf(),
        weights,
        adapter: None,
        mr_adapter: None,
        device: Device::Cpu,
        grow: Default::default(),
        labels: vec![],
        context: true,
        reference_mask2d: false,
        baseline: true,
        pipeline: PipelineOptions { join: false, ..Default::default() },
        click_depth: 1.0,
        clicks: 1,
    };
    evaluate(&opts, &|_| {}, &|| {}).unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()))
}

#[test]
fn train_and_eval_read_dicom_cases_as_their_nifti_twins() {
    // The training cases: the same names, classes, label maps and scans.
    let (dicom, _) = load_cases(&config(&data("dicom"), 2)).expect("DICOM cases");
    let (nifti, _) = load_cases(&config(&data("nifti"), 2)).expect("NIfTI cases");
    assert_eq!(dicom.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), vec!["rt_case", "seg_case"]);
    assert_eq!(dicom.len(), nifti.len());
    for (a, b) in dicom.iter().zip(&nifti) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.classes, vec![1, 2], "{}", a.name);
        assert_eq!(a.classes, b.classes);
        assert_eq!(a.labels.data, b.labels.data, "{}: labels", a.name);
        assert_eq!(a.volume.data, b.volume.data, "{}: scan", a.name);
        assert!(a.labels.data.iter().filter(|&&l| l == 2).count() > 200, "{}: the kidney is there", a.name);
    }

    // Two steps of the tiny model on the DICOM folder.
    let tmp = tempfile::tempdir().expect("tmp");
    let run = tmp.path().join("run");
    let s = train(&config(&data("dicom"), 2), &run, false, &|_, _| {}).expect("train on DICOM cases");
    assert_eq!(s.losses.len(), 2);
    assert!(s.losses.iter().all(|l| l.1.is_finite()), "{:?}", s.losses);
    let weights = run.join("model.safetensors");
    assert!(weights.is_file());

    // Evaluation with those weights and the baseline: the same clicks and figures on both.
    let (rows_d, sum_d) = eval(&data("dicom"), Some(weights.clone()));
    let (rows_n, sum_n) = eval(&data("nifti"), Some(weights));
    // 2 cases × 2 labels × 3 planes × (model + baseline).
    assert_eq!(rows_d.len(), 24);
    assert_eq!(rows_d.len(), rows_n.len());
    for (a, b) in rows_d.iter().zip(&rows_n) {
        let at = format!("{}/{}/{:?}/{}", a.case, a.label, a.plane, a.method);
        assert_eq!((&a.case, a.label, a.plane, &a.method), (&b.case, b.label, b.plane, &b.method));
        assert!((0..3).all(|k| (a.click[k] - b.click[k]).abs() < 1e-4), "{at}: click {:?} vs {:?}", a.click, b.click);
        assert_eq!(a.metrics.gt_voxels, b.metrics.gt_voxels, "{at}");
        assert!(a.metrics.gt_voxels > 200, "{at}: the reference is the fixture's organ");
        // The same scan and reference, but the NIfTI twin's affine is float32 (within about
        // 1e-6 of the DICOM one): region growing (distances in mm) and the model (resampling
        // through the affine) may differ in a few boundary voxels, no more.
        assert!((a.metrics.dice - b.metrics.dice).abs() <= 0.01, "{at}: Dice {} vs {}", a.metrics.dice, b.metrics.dice);
        if a.method == "baseline" && a.case == "seg_case" && a.label == 1 {
            // The liver's ellipsoid stands out of the background: region growing finds it.
            assert!(a.metrics.dice > 0.9 && b.metrics.dice > 0.9, "{at}: Dice {} vs {}", a.metrics.dice, b.metrics.dice);
        }
    }
    // Names: the SEG's segments and the RTSTRUCT's ROIs, as the NIfTI twins' tables say.
    for (sum, what) in [(&sum_d, "DICOM"), (&sum_n, "NIfTI")] {
        let names: Vec<(u16, Option<String>)> = sum.methods["baseline"].by_label.iter().map(|l| (l.label, l.name.clone())).collect();
        assert_eq!(names, vec![(1, Some("Liver".into())), (2, Some("Kidney".into()))], "{what}");
    }
    let from = sum_d.label_names.clone().unwrap_or_default();
    assert!(from.ends_with("rtstruct.dcm"), "names from the first case's own labels: {from}");
}
