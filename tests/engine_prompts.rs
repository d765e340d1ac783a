//! Refinement prompts through an engine session (tiny random model): a negative click only
//! removes, and never leaves a voxel near itself; a box clips; a prompt names the step it
//! follows, so an undone prompt is redone from the step before; a stale object is refused.
//! These are the rules without the learned corrector; with one, a point's result is the
//! corrector's, brought back onto the scan exactly where its cube lies. The refinement gives
//! the same result whether it reads the scan smoothed in the background or smooths its box.

use nalgebra::{Matrix3, Vector3};
use ndarray::Array3;
use sam3d_engine::engine::{EngineError, InferRequest, InferResult, NoHooks, Session};
use sam3d_engine::model::{Config, Model};
use sam3d_studio::geometry::{RasFromVoxel, RasMm, ViewPlane, VoxelIjk};
use sam3d_studio::prompts::{BoxPrompt, NEGATIVE_RADIUS_MM, ObjectRef, Prompt};
use sam3d_studio::volume::{OnGrid, Volume};
use std::sync::Arc;
use tch::Device;

/// Two overlapping balls of one intensity on a 2 mm grid: A (radius 14 mm) at x = −15 and B
/// (radius 18 mm) at x = +15.
fn two_balls() -> Volume {
    let a = RasFromVoxel::from_parts(Matrix3::from_diagonal(&Vector3::new(2.0, 2.0, 2.0)), Vector3::new(-50.0, -40.0, -40.0));
    let mut data = Array3::from_shape_fn((41, 41, 51), |(k, j, i)| {
        let p = a.apply(VoxelIjk::new(i as f64, j as f64, k as f64));
        let inside = p.distance(&RasMm::new(-15.0, 0.0, 0.0)) <= 14.0 || p.distance(&RasMm::new(15.0, 0.0, 0.0)) <= 18.0;
        if inside { 60.0 } else { -100.0 + ((i * 7 + j * 13 + k * 29) % 11) as f32 }
    });
    data[[0, 0, 0]] = -1000.0;
    data[[0, 0, 1]] = 1000.0;
    Volume::new(data, a).expect("volume")
}

/// The tiny model, its weights from seed 11. libtorch's generator is the process's: the lock
/// keeps another test's seeding from slipping between the seed and the weights.
fn tiny_model() -> Model {
    static SEEDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _seeding = SEEDING.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(11);
    Model::new(Config::tiny(), Device::Cpu)
}

fn session(vol: &Arc<Volume>) -> Session {
    let mut s = Session::new().with_corrector(None);
    s.set_model(tiny_model()).expect("model");
    s.set_volume(vol.clone(), None).expect("volume");
    s
}

fn run(s: &mut Session, prompt: Prompt, object: Option<ObjectRef>) -> Result<InferResult, EngineError> {
    s.infer(&InferRequest { prompt, plane: ViewPlane::Axial, mask2d: None, object }, &mut NoHooks)
}

fn voxels(r: &InferResult) -> Vec<[usize; 3]> {
    r.mask.data.indexed_iter().filter(|(_, v)| **v != 0).map(|((k, j, i), _)| [k, j, i]).collect()
}

#[test]
fn prompts_refine_the_object_the_session_holds() {
    let vol = Arc::new(two_balls());
    let mut s = session(&vol);
    let (a, b) = (RasMm::new(-15.0, 0.0, 0.0), RasMm::new(15.0, 0.0, 0.0));
    let r1 = run(&mut s, Prompt::positive(a), None).expect("first click");
    assert_eq!(r1.object.after, 1);
    assert!(r1.voxel_count > 0, "the first click found nothing: the test needs a candidate");
    // A negative click: only removes, keeps nothing near itself.
    let r2 = run(&mut s, Prompt::negative(b), Some(r1.object)).expect("negative");
    assert_eq!(r2.object, ObjectRef { id: r1.object.id, after: 2 });
    assert_eq!((r2.prompts.positive.len(), r2.prompts.negative.len()), (1, 1));
    assert!(voxels(&r2).iter().all(|&[k, j, i]| r1.mask.data[[k, j, i]] != 0), "a negative click added voxels");
    let near = voxels(&r2).iter().filter(|&&[k, j, i]| vol.ras_of(sam3d_studio::geometry::ArrayIdx { k, j, i }).distance(&b) <= NEGATIVE_RADIUS_MM).count();
    assert_eq!(near, 0, "voxels near the negative click");
    let at_a = vol.index_of_ras(a).expect("inside");
    assert_eq!(r2.mask.data[at_a.as_kji()], r1.mask.data[at_a.as_kji()], "the positive click's voxel");
    // A box over x ≤ 0 clips.
    let bx = BoxPrompt::from_corners([-50.0, -40.0, -40.0, 0.0, 40.0, 40.0]).expect("box");
    let r3 = run(&mut s, Prompt::boxed(bx), Some(r2.object)).expect("box");
    assert!(voxels(&r3).iter().all(|&[k, j, i]| bx.contains(vol.ras_of(sam3d_studio::geometry::ArrayIdx { k, j, i }))));
    assert!(voxels(&r3).iter().all(|&[k, j, i]| r2.mask.data[[k, j, i]] != 0));
    // Undo the box and the negative click, and give the negative click again: the same step 2.
    let again = run(&mut s, Prompt::negative(b), Some(ObjectRef { id: r1.object.id, after: 1 })).expect("redo");
    assert_eq!(again.object.after, 2);
    assert_eq!(again.mask.data, r2.mask.data);
    // Steps the engine does not hold, and another object, are refused by name.
    let e = run(&mut s, Prompt::negative(b), Some(ObjectRef { id: r1.object.id, after: 5 })).expect_err("too far");
    assert!(e.to_string().contains("holds 2 of its prompts"), "{e}");
    let e = run(&mut s, Prompt::negative(b), Some(ObjectRef { id: 99, after: 1 })).expect_err("another object");
    assert!(e.to_string().contains("object 99"), "{e}");
    // A new volume forgets the object.
    s.set_volume(vol.clone(), None).expect("volume");
    assert!(run(&mut s, Prompt::negative(b), Some(again.object)).is_err());
    // A new object from a box alone: its centre is the click, the result stays in the box.
    let r = run(&mut s, Prompt::boxed(bx), None).expect("box alone");
    assert_eq!(r.prompts.positive, vec![bx.centre()]);
    assert!(voxels(&r).iter().all(|&[k, j, i]| bx.contains(vol.ras_of(sam3d_studio::geometry::ArrayIdx { k, j, i }))));
}

/// A corrector that returns the candidate it is given (its head zeroed: only the prior on the
/// previous candidate speaks), saved where a session can load it.
fn identity_corrector(dir: &std::path::Path) -> std::path::PathBuf {
    use sam3d_engine::model::corrector::{Corrector, CorrectorConfig};
    let net = Corrector::new(CorrectorConfig { base: 4, levels: 2, cells: 32 }, Device::Cpu).expect("corrector");
    tch::no_grad(|| {
        for (name, mut t) in net.vs.variables() {
            if name.starts_with("head.") {
                let _ = t.zero_();
            }
        }
    });
    let path = dir.join("identity.safetensors");
    net.save(&path, Default::default()).expect("save");
    path
}

#[test]
fn the_corrector_s_cube_lies_where_the_candidate_lies() {
    let vol = Arc::new(two_balls());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = session(&vol);
    s.set_corrector(Some(identity_corrector(dir.path())));
    assert!(s.has_corrector(), "{:?}", s.corrector_error());
    // What a client is told (the viewer's "Learned corrections" box follows it).
    assert!(s.model_info().expect("model").corrector.is_some_and(|p| p.ends_with("identity.safetensors")));
    let (a, b) = (RasMm::new(-15.0, 0.0, 0.0), RasMm::new(15.0, 0.0, 0.0));
    let r1 = run(&mut s, Prompt::positive(a), None).expect("first click");
    assert!(r1.voxel_count > 50, "the first click found {} voxels: the test needs a candidate", r1.voxel_count);
    // A negative point far from the candidate: the identity corrector gives the candidate back
    // through its 32³ cube, so any shift or flip of the cube would show as lost voxels.
    let far = RasMm::new(15.0, 30.0, 30.0);
    let r2 = run(&mut s, Prompt::negative(far), Some(r1.object)).expect("negative");
    let (v1, v2) = (voxels(&r1), voxels(&r2));
    let both = v2.iter().filter(|&&[k, j, i]| r1.mask.data[[k, j, i]] != 0).count();
    let dice = 2.0 * both as f64 / (v1.len() + v2.len()) as f64;
    assert!(dice > 0.9, "the corrected candidate moved: Dice {dice:.3} against the one given ({} → {} voxels)", v1.len(), v2.len());
    // A negative point on the candidate still clears its neighbourhood (the prompts' rule).
    let r3 = run(&mut s, Prompt::negative(b), Some(r2.object)).expect("negative on it");
    let near = voxels(&r3).iter().filter(|&&[k, j, i]| vol.ras_of(sam3d_studio::geometry::ArrayIdx { k, j, i }).distance(&b) <= NEGATIVE_RADIUS_MM).count();
    assert_eq!(near, 0, "voxels near the negative click");
    // Off in the options: the rules alone, as before.
    let mut o = s.options().clone();
    o.corrector = false;
    s.set_options(o).expect("options");
    let again = run(&mut s, Prompt::negative(far), Some(ObjectRef { id: r1.object.id, after: 1 })).expect("without");
    assert!(voxels(&again).iter().all(|&[k, j, i]| r1.mask.data[[k, j, i]] != 0));
    // A file that is not a corrector: the session says why and has none.
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, b"not a checkpoint").expect("write");
    s.set_corrector(Some(bad));
    assert!(!s.has_corrector());
    assert_eq!(s.model_info().expect("model").corrector, None);
    assert!(s.corrector_error().is_some_and(|e| e.contains("bad.safetensors")), "{:?}", s.corrector_error());
}

/// A session reads the scan smoothed when the volume was set, with the result of one that
/// smooths each box (a cache smoothed with twice the sigma, a mutation I tried, fails here).
#[test]
fn a_click_is_the_same_with_the_scan_smoothed_in_the_background_or_not() {
    let vol = Arc::new(two_balls());
    let mut warm = session(&vol);
    warm.wait_for_smoothing();
    assert!(warm.smoothing_ready(), "setting a volume starts its smoothing");
    let mut cold = Session::new().with_corrector(None);
    cold.set_background_smoothing(false);
    cold.set_model(tiny_model()).expect("model");
    cold.set_volume(vol.clone(), None).expect("volume");
    cold.wait_for_smoothing();
    assert!(!cold.smoothing_ready());
    // Pruning reads the smoothed scan under the whole shape (the tiny model's shapes are large
    // blobs that growing alone would leave as they are), so a misread box shows.
    let mut options = sam3d_studio::options::PipelineOptions::default();
    options.refine_params.prune_multiplier = Some(2.0);
    let unrefined = sam3d_studio::options::PipelineOptions { refine: false, ..options.clone() };
    let mut raw = session(&vol);
    raw.set_options(unrefined).expect("options");
    for s in [&mut warm, &mut cold] {
        s.set_options(options.clone()).expect("options");
    }
    for at in [RasMm::new(-15.0, 0.0, 0.0), RasMm::new(20.0, 4.0, -6.0)] {
        let (a, b) = (run(&mut warm, Prompt::positive(at), None).expect("warm"), run(&mut cold, Prompt::positive(at), None).expect("cold"));
        let r = run(&mut raw, Prompt::positive(at), None).expect("raw");
        assert!(a.voxel_count > 0 && a.mask.data != r.mask.data, "the click at {at:?}: the refinement changed nothing, the test needs it to");
        assert_eq!(a.mask.data, b.mask.data, "the click at {at:?}");
    }
    // Turned on again, the volume is smoothed.
    cold.set_background_smoothing(true);
    cold.wait_for_smoothing();
    assert!(cold.smoothing_ready());
}
