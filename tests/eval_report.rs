//! `eval` on two small phantoms: one row per case/label/plane/method, clicks inside the organ,
//! a summary with both methods; the baseline segments the phantoms' organs well.

use sam3d_studio::engine::eval::{CSV_HEADER, EvalOptions, evaluate, write_report};
use sam3d_studio::engine::train::write_phantoms;
use sam3d_studio::model::{Config, Model};
use sam3d_studio::volume::{LabelMap, Modality, OnGrid};
use tch::Device;

#[test]
fn eval_on_two_phantoms_writes_the_expected_rows() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    write_phantoms(&data, 2, 21, Modality::Ct).expect("phantoms");
    let weights = tmp.path().join("tiny.safetensors");
    Model::new(Config::tiny(), Device::Cpu).save_weights(&weights).expect("weights");
    let opts = EvalOptions { data: data.clone(), weights: Some(weights), adapter: None, device: Device::Cpu, grow: Default::default(), labels: vec![], context: true };
    let (rows, summary) = evaluate(&opts, &|_| {}, &|| {}).expect("eval");
    let mut expected = 0;
    for c in 0..2 {
        let lab = LabelMap::load(&data.join(format!("case_{c:03}_labels.nii.gz"))).expect("labels");
        let labels: Vec<u16> = lab.counts().into_iter().map(|(l, _)| l).filter(|&l| l != 0).collect();
        expected += labels.len() * 3 * 2;
        for r in rows.iter().filter(|r| r.case == format!("case_{c:03}")) {
            let a = lab.index_of_ras(sam3d_studio::geometry::RasMm::new(r.click[0], r.click[1], r.click[2])).expect("click inside");
            assert_eq!(lab.data[[a.k, a.j, a.i]], r.label, "the click lies inside its organ");
            assert_eq!(r.metrics.gt_voxels, lab.data.iter().filter(|&&v| v == r.label).count());
        }
    }
    assert_eq!(rows.len(), expected);
    assert_eq!(rows.iter().filter(|r| r.method == "baseline").count(), expected / 2);
    assert_eq!(summary.methods.len(), 2);
    let base = &summary.methods["baseline"];
    assert!(base.mean_dice > 0.5, "baseline mean Dice {}", base.mean_dice);
    assert!(base.worst_dice <= base.mean_dice);
    let out = tmp.path().join("report.csv");
    let js = write_report(&out, &rows, &summary).expect("write");
    let csv = std::fs::read_to_string(&out).expect("csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], CSV_HEADER);
    assert_eq!(lines.len(), expected + 1);
    assert!(lines[1..].iter().all(|l| l.split(',').count() == CSV_HEADER.split(',').count()));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(js).expect("json")).expect("parse");
    assert!(v["methods"]["model"]["mean_dice"].is_number());
}
