//! Image-snapshot settings shared by every kittest snapshot in this crate (3D view, app).
//! Include with `#[path = "common/snapshot.rs"] mod snapshot;`.
//!
//! Snapshots are rendered with wgpu on Mesa's lavapipe (software Vulkan; installed by
//! `packaging/linux/setup.sh`), which is deterministic on one machine. The tolerance only has
//! to absorb small differences between Mesa versions (anti-aliased edges, rounding); it is
//! kept low so a moved line or a changed colour still fails. Create or update the reference
//! images with `UPDATE_SNAPSHOTS=1 cargo test --release ...` and look at them before
//! committing.

#![allow(dead_code)]

use egui_kittest::SnapshotOptions;

/// Per-pixel colour tolerance (kittest's weighted squared YIQ distance; its default is 0.6).
pub const SNAPSHOT_THRESHOLD: f32 = 0.6;
/// Pixels allowed above that tolerance: a few anti-aliased edge pixels, not a feature.
pub const SNAPSHOT_MAX_FAILED_PIXELS: usize = 8;

/// The one place snapshot thresholds are set.
pub fn snapshot_options() -> SnapshotOptions {
    SnapshotOptions::new().threshold(SNAPSHOT_THRESHOLD).max_failed_pixels(SNAPSHOT_MAX_FAILED_PIXELS)
}

/// A wgpu render state like the one kittest creates (software adapter preferred, predictable
/// texture filtering), for tests that must register GPU resources before the first frame
/// (e.g. `sam3d_studio::render::init`). Pass it on with
/// `egui_kittest::wgpu::WgpuTestRenderer::from_render_state(state.clone())`.
pub fn test_render_state() -> egui_wgpu::RenderState {
    egui_kittest::wgpu::create_render_state(
        egui_kittest::wgpu::default_wgpu_setup(),
        egui_wgpu::RendererOptions::PREDICTABLE,
    )
}
