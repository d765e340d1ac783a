//! Driving the real viewer in kittest: wait for its background threads.
//! Include with `#[path = "common/viewer.rs"] mod viewer;`.

#![allow(dead_code)]

use egui_kittest::Harness;
use sam3d_studio::app::App;
use std::time::{Duration, Instant};

/// Steps frames until the loader thread (and the 3D view's mesher) has finished everything it
/// was asked to do.
pub fn wait_for_loader(h: &mut Harness<'static, App>) {
    let t0 = Instant::now();
    h.step();
    while h.state().is_busy() || h.state().is_meshing() {
        assert!(t0.elapsed() < Duration::from_secs(60), "loader did not finish");
        std::thread::sleep(Duration::from_millis(5));
        h.step();
    }
    h.run();
}

/// The demo CT and its label map (assets/demo).
pub fn demo() -> (std::path::PathBuf, std::path::PathBuf) {
    let d = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    (d.join("ct.nii.gz"), d.join("labels.nii.gz"))
}
