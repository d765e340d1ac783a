//! `bench-slice`: what one slice change costs the viewer — slice extraction + window/level +
//! label blending ([`render_slice`]) and the texture upload egui-wgpu does for
//! `TextureHandle::set` (measured through `egui_wgpu::Renderer::update_texture` on whatever
//! adapter wgpu finds; lavapipe in a container).

use super::labels::LabelTable;
use super::loader::{load_labels, load_volume};
use super::slice_image::{Overlay, OverlayMode, SliceScratch, render_slice};
use crate::geometry::{DisplayConvention, SliceGeometry, ViewPlane};
use crate::volume::OnGrid;
use crate::volume::intensity::Preset;
use anyhow::Result;
use std::path::Path;
use std::time::Instant;

/// Timings of one case, in milliseconds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SliceTiming {
    pub plane: String,
    pub overlay: String,
    pub width: usize,
    pub height: usize,
    pub median_ms: f64,
    pub p95_ms: f64,
}

/// The whole report (`--json` prints it).
#[derive(Clone, Debug, serde::Serialize)]
pub struct SliceBenchReport {
    pub volume: String,
    pub shape: [usize; 3],
    pub render: Vec<SliceTiming>,
    /// `None` when no wgpu adapter is available.
    pub upload: Option<SliceTiming>,
    pub adapter: Option<String>,
}

fn stats(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95))
}

/// Renders every slice index of each plane in turn (as scrolling does), `rounds` times.
pub fn bench_slice(volume: &Path, labels: Option<&Path>, rounds: usize) -> Result<SliceBenchReport> {
    let vol = load_volume(volume, None).map_err(anyhow::Error::msg)?;
    let lab = match labels {
        Some(p) => Some(load_labels(p, &vol).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let lut = lab.as_ref().map(|(_, t): &(_, LabelTable)| t.lut());
    let window = Preset::Abdomen.window();
    let mut render = Vec::new();
    let mut scratch = SliceScratch::default();
    let mut pixels = Vec::new();
    let mut axial_size = [0, 0];
    for plane in ViewPlane::ALL {
        let g = SliceGeometry::new(plane, vol.ras_from_voxel(), vol.shape(), DisplayConvention::Radiological);
        let modes: Vec<Option<OverlayMode>> = if lab.is_some() { vec![None, Some(OverlayMode::Fill), Some(OverlayMode::Outline)] } else { vec![None] };
        for mode in modes {
            let mut ms = Vec::new();
            for _ in 0..rounds.max(1) {
                for n in 0..g.extent[2] {
                    let overlay = match (mode, &lab, &lut) {
                        (Some(mode), Some((l, _)), Some(lut)) => Some(Overlay { labels: l, lut, opacity: 0.45, mode }),
                        _ => None,
                    };
                    let t0 = Instant::now();
                    let size = crate::volume::with_stored!(&vol, v => render_slice(v, &g, n, window, overlay, &mut scratch, &mut pixels));
                    ms.push(t0.elapsed().as_secs_f64() * 1e3);
                    std::hint::black_box(&pixels);
                    if plane == ViewPlane::Axial {
                        axial_size = size;
                    }
                }
            }
            let (median_ms, p95_ms) = stats(ms);
            render.push(SliceTiming {
                plane: plane.name().into(),
                overlay: mode.map_or("none", |m| if m == OverlayMode::Fill { "fill" } else { "outline" }).into(),
                width: g.extent[0],
                height: g.extent[1],
                median_ms,
                p95_ms,
            });
        }
    }
    let (upload, adapter) = match bench_upload(axial_size, 200) {
        Ok((t, a)) => (Some(t), Some(a)),
        Err(e) => {
            log::warn!("texture upload not measured: {e}");
            (None, None)
        }
    };
    Ok(SliceBenchReport { volume: volume.display().to_string(), shape: vol.shape().ijk(), render, upload, adapter })
}

/// Uploads a `size` RGBA image `n` times through egui-wgpu's texture path and waits for the GPU.
fn bench_upload(size: [usize; 2], n: usize) -> Result<(SliceTiming, String)> {
    let setup = egui_wgpu::WgpuSetup::without_display_handle();
    let instance = block_on(setup.new_instance());
    let config = egui_wgpu::WgpuConfiguration { wgpu_setup: setup, ..Default::default() };
    let state = block_on(egui_wgpu::RenderState::create(&config, &instance, None, egui_wgpu::RendererOptions::default()))
        .map_err(|e| anyhow::anyhow!("no wgpu device: {e}"))?;
    let info = state.adapter.get_info();
    let adapter = format!("{} ({:?})", info.name, info.backend);
    let id = egui::TextureId::Managed(1);
    let mut ms = Vec::new();
    for k in 0..n {
        let pixels = vec![egui::Color32::from_gray((k % 256) as u8); size[0] * size[1]];
        let image = egui::ColorImage::new(size, pixels);
        let delta = egui::epaint::ImageDelta::full(image, egui::TextureOptions::LINEAR);
        let t0 = Instant::now();
        state.renderer.write().update_texture(&state.device, &state.queue, id, &delta);
        state.queue.submit(std::iter::empty());
        state
            .device
            .poll(wgpu::PollType::Wait { submission_index: None, timeout: Some(std::time::Duration::from_secs(10)) })
            .map_err(|e| anyhow::anyhow!("GPU wait failed: {e}"))?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let (median_ms, p95_ms) = stats(ms);
    Ok((SliceTiming { plane: "axial".into(), overlay: "upload".into(), width: size[0], height: size[1], median_ms, p95_ms }, adapter))
}

/// Minimal executor for wgpu's setup futures (they complete without an external reactor).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Prints a report as a table.
pub fn print_report(r: &SliceBenchReport) {
    println!("volume  {}  ({}×{}×{})", r.volume, r.shape[0], r.shape[1], r.shape[2]);
    println!("{:<9} {:<8} {:>9} {:>10} {:>9}", "plane", "overlay", "pixels", "median ms", "p95 ms");
    for t in &r.render {
        println!("{:<9} {:<8} {:>9} {:>10.3} {:>9.3}", t.plane, t.overlay, format!("{}×{}", t.width, t.height), t.median_ms, t.p95_ms);
    }
    match (&r.upload, &r.adapter) {
        (Some(t), Some(a)) => println!(
            "texture upload {}×{} via egui-wgpu on {a}: median {:.3} ms, p95 {:.3} ms",
            t.width, t.height, t.median_ms, t.p95_ms
        ),
        _ => println!("texture upload: not measured (no wgpu adapter)"),
    }
}
