//! The viewer and the field's formats: a folder of several DICOM series asks which to open
//! (localisers listed, not openable), the chosen series opens on its own grid, the model
//! engine gets a copy of the volume as read (it never decodes the series again), and a label
//! map saves as a 3D Slicer `.seg.nrrd` with its names and colours, or as NIfTI with a `.tsv`.

#[path = "common/dicom.rs"]
mod dicom;
#[path = "common/viewer.rs"]
mod viewer;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sam3d_studio::app::series_picker::openable;
use sam3d_studio::app::{App, AppCommand, Startup};
use sam3d_studio::volume::{LabelMap, OnGrid};
use std::path::PathBuf;



fn harness() -> Harness<'static, App> {
    Harness::builder().with_size([1280.0, 800.0]).with_step_dt(1.0 / 60.0).with_max_steps(120).wgpu().build_eframe(move |cc| {
        App::new(cc, Startup { device: Some("CPU".into()), ..Default::default() })
    })
}

use viewer::wait_for_loader;

#[test]
fn a_folder_of_several_series_asks_which_and_the_choice_opens_for_the_viewer_and_the_engine() {
    let dir = tempfile::tempdir().expect("tmp");
    let study = dir.path().join("study");
    dicom::copy_dir(&dicom::fixture("axial"), &study.join("ax"));
    dicom::copy_dir(&dicom::fixture("coronal"), &study.join("cor"));
    dicom::copy_dir(&dicom::fixture("localizer"), &study.join("scout"));
    let want = sam3d_studio::volume::dicom::open_series(&dicom::fixture("axial"), &Default::default()).expect("the axial series alone");

    let mut h = harness();
    h.state_mut().send(AppCommand::OpenVolume { path: study.clone(), labels: None });
    wait_for_loader(&mut h);
    assert!(h.state().rt.scene.is_none(), "nothing is opened before the user chooses");
    let picker = h.state().rt.series_picker.clone().expect("the series picker");
    assert_eq!(picker.series.iter().filter(|s| openable(s)).count(), 2, "{:#?}", picker.series);
    assert!(picker.series.iter().any(|s| !openable(s)), "the localiser is listed, not openable");
    h.get_by_label("Choose a DICOM series");

    // Choose the axial series (series 3 of the fixtures; the coronal one is series 8).
    let axial = picker.series.iter().find(|s| openable(s) && s.series_number == Some(3)).expect("axial listed");
    let cmd = picker.open(axial.index);
    h.state_mut().send(cmd);
    wait_for_loader(&mut h);
    assert!(h.state().rt.series_picker.is_none());
    let scene = h.state().rt.scene.as_ref().expect("the chosen series is open");
    assert_eq!(scene.volume.shape(), want.shape());
    assert!(scene.volume.ras_from_voxel().max_abs_diff(&want.ras_from_voxel) < 1e-9);
    // Held as int16 (whole Hounsfield units in range): the same values as the float32 reading.
    assert_eq!(scene.volume.dtype(), sam3d_studio::volume::DataType::Int16);
    assert_eq!(scene.volume.to_f32().data, want.data);
    // No copy for the engine until the model is to be used (choosing 3D from click with the
    // model, or a first model click, asks for it)...
    assert!(scene.engine_path.is_none(), "nothing written at open");
    h.state_mut().request_engine_copy();
    wait_for_loader(&mut h);
    let scene = h.state().rt.scene.as_ref().expect("open");
    // ...then the engine reads a copy of what the viewer decoded, not the folder again.
    let copy = scene.engine_path.clone().expect("a copy for the engine");
    assert!(copy.starts_with(std::env::temp_dir()) && copy.extension().is_some_and(|e| e == "nii"), "{}", copy.display());
    let back = sam3d_studio::volume::open(&copy).expect("the copy reads");
    assert_eq!(back.data, want.data);
    // NIfTI holds the affine in float32: the same grid to a micrometre.
    assert!(back.ras_from_voxel.max_abs_diff(&want.ras_from_voxel) < 1e-5);

    // A label map on the series' grid, saved as a Slicer segmentation and as NIfTI + .tsv.
    let labels_path = dir.path().join("labels.nii.gz");
    let mut map = LabelMap::empty_like(&want);
    map.data.slice_mut(ndarray::s![1..3, 2..6, 2..5]).fill(4);
    map.save(&labels_path).expect("labels");
    std::fs::write(dir.path().join("labels.tsv"), "4\ttumour\t10 200 30\n").expect("tsv");
    h.state_mut().send(AppCommand::OpenLabels(labels_path));
    wait_for_loader(&mut h);
    for name in ["out.seg.nrrd", "out.nii.gz"] {
        let out = dir.path().join(name);
        h.state_mut().send(AppCommand::SaveLabels(out.clone()));
        wait_for_loader(&mut h);
        let saved = sam3d_studio::volume::open_labels(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(saved.data, map.data, "{name}");
        assert!(saved.ras_from_voxel.max_abs_diff(&want.ras_from_voxel) < 1e-6, "{name}");
        let (names, _) = sam3d_studio::volume::label_names::names_beside(&out).expect("readable").expect("names kept");
        assert_eq!(names.get(&4), Some(&("tumour".to_string(), Some([10, 200, 30]))), "{name}");
    }
    // The engine's copies go with the viewer.
    drop(h);
    assert!(!copy.exists(), "the copy outlived the viewer");
}

/// An RTSTRUCT opened over its DICOM series in the viewer becomes the label map with the ROI
/// names and colours; saved as a DICOM SEG it references that series and reads back (with the
/// core's reader of the series grid) as the same labels.
#[test]
fn an_rtstruct_opens_over_its_series_and_saves_as_a_dicom_seg() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/sam3d-core/tests/data/rtstruct/axial");
    let want = sam3d_studio::volume::dicom::open_rtstruct_labels(&data.join("rtstruct.dcm"), &data.join("ct")).expect("core rasterisation");
    let mut h = harness();
    h.state_mut().send(AppCommand::OpenVolume { path: data.join("ct"), labels: None });
    wait_for_loader(&mut h);
    assert!(h.state().rt.scene.as_ref().is_some_and(|s| s.dicom_series.is_some()));
    h.state_mut().send(AppCommand::OpenStructures(data.join("rtstruct.dcm")));
    wait_for_loader(&mut h);
    let scene = h.state().rt.scene.as_ref().expect("scene");
    let layer = scene.labels.as_ref().expect("the structures as a label map");
    assert_eq!(layer.map.data, want.labels.data);
    assert_eq!(layer.table.entries.get(&1).map(|e| (e.name.as_str(), e.colour)), Some(("Ring", [220, 40, 40])));
    assert!(h.state().messages().iter().any(|m| m.text.contains("Between")), "the contour left out is reported: {:?}", h.state().messages().iter().map(|m| &m.text).collect::<Vec<_>>());

    let dir = tempfile::tempdir().expect("tmp");
    let seg = dir.path().join("structures.dcm");
    h.state_mut().send(AppCommand::SaveLabels(seg.clone()));
    wait_for_loader(&mut h);
    assert!(h.state().messages().iter().any(|m| m.text.starts_with("Saved label map")), "{:?}", h.state().messages().iter().map(|m| &m.text).collect::<Vec<_>>());
    let obj = dicom_object::open_file(&seg).expect("a DICOM file");
    let modality = obj.element_by_name("Modality").expect("modality").to_str().expect("text").to_string();
    assert_eq!(modality.trim(), "SEG");
    let referenced = obj.element_by_name("ReferencedSeriesSequence").expect("references its series");
    let uid = referenced.items().and_then(|i| i.first()).and_then(|i| i.element_by_name("SeriesInstanceUID").ok()).and_then(|e| e.to_str().ok()).expect("series UID");
    let ct_uid = sam3d_studio::volume::dicom::list_series(&data.join("ct")).expect("series")[0].series_uid.clone();
    assert_eq!(uid.trim_end_matches('\0').trim(), ct_uid);
}
