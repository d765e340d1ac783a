//! The 3D view's cell and its mesher: label surfaces (and the "3D from click" candidate, unless
//! the engine sent its surface) are computed on the named `sam3d-mesher` thread — marching cubes, a little Taubin smoothing,
//! packed for the GPU with [`PreparedLabelMeshes`] — and handed to the UI through a bounded
//! channel. The worker keeps each label's mesh, so an accepted edit recomputes only the labels
//! it touched.

use super::slice_view::TITLE_H;
use super::{App, AppCommand, ViewCell};
use crate::geometry::{RasFromVoxel, ViewPlane};
use crate::render::{self, BoundsRas, LabelInfo, PackedMesh, PreparedLabelMeshes, SlicePlane};
use crate::shape::{Mesh, mesh_of_label};
use crate::volume::{LabelMap, OnGrid};
use crossbeam_channel::{Receiver, bounded};
use std::sync::{Condvar, Mutex};
use egui::{Color32, Rect, pos2, vec2};
use ndarray::Array3;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Pseudo label id of the "3D from click" candidate in the 3D view.
pub const CANDIDATE_ID: u16 = u16::MAX;
/// The candidate's colour (sRGB, translucent) in the slice views and the 3D view.
pub const CANDIDATE_COLOUR: [u8; 4] = [40, 230, 240, 150];
/// Taubin iterations applied to every displayed surface (removes the voxel staircase).
pub const SMOOTH_ITERATIONS: usize = 10;

/// Work for the mesher.
#[derive(Debug)]
pub struct MeshRequest {
    /// Identifies the label map the cache belongs to; a new one clears the cache.
    pub map_generation: u64,
    pub map: Option<Arc<LabelMap>>,
    /// Labels whose meshes must be recomputed (`None`: every label in `labels`).
    pub recompute: Option<Vec<u16>>,
    /// Every label to show: id, name, sRGB colour.
    pub labels: Vec<(u16, String, [u8; 4])>,
    /// The candidate, if any.
    pub candidate: Option<CandidateShape>,
    pub grid: RasFromVoxel,
}

/// The "3D from click" candidate for the 3D view: its mask on the grid's voxels and, when the
/// method made one, its surface (shown as it is; otherwise the mesher meshes the mask).
#[derive(Clone, Debug)]
pub struct CandidateShape {
    pub mask: Arc<Array3<bool>>,
    pub mesh: Option<Arc<Mesh>>,
}

/// What the mesher reports.
#[derive(Debug)]
pub enum MeshEvent {
    Progress { what: String, fraction: f32 },
    Done(Box<PreparedLabelMeshes>),
}

/// The one request waiting for the mesher: a newer request is merged into it, never dropped.
#[derive(Default)]
struct Slot {
    waiting: Mutex<(Option<MeshRequest>, bool)>,
    ready: Condvar,
}

/// `newer` with the labels `older` asked to recompute kept: a newer request for the same map
/// supersedes the older one's display, but not its work. Requests for different maps: the
/// newer one alone (a new map recomputes everything anyway).
pub fn merge_requests(older: MeshRequest, mut newer: MeshRequest) -> MeshRequest {
    newer.recompute = match (older.recompute, newer.recompute.take(), older.map_generation == newer.map_generation) {
        (Some(mut a), Some(b), true) => {
            a.extend(b);
            a.sort_unstable();
            a.dedup();
            Some(a)
        }
        (_, b, false) => b,
        _ => None,
    };
    newer
}

/// Handle the UI keeps. Dropping it stops the thread once its current request is done.
pub struct Mesher {
    slot: Arc<Slot>,
    pub events: Receiver<MeshEvent>,
}

impl Drop for Mesher {
    fn drop(&mut self) {
        if let Ok(mut w) = self.slot.waiting.lock() {
            w.1 = true;
        }
        self.slot.ready.notify_all();
    }
}

impl Mesher {
    /// Starts the `sam3d-mesher` thread; `wake` runs after each event.
    pub fn spawn(wake: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let slot = Arc::new(Slot::default());
        let (ev_tx, ev_rx) = bounded::<MeshEvent>(64);
        let waiting = slot.clone();
        std::thread::Builder::new().name("sam3d-mesher".into()).spawn(move || {
            // Each shown label's surface, packed for the GPU and shared with the 3D view (held
            // once); a label that is hidden or gone is dropped at the next request.
            let mut cache: BTreeMap<u16, Arc<PackedMesh>> = BTreeMap::new();
            let mut cache_generation = None;
            let mut candidate_cache: Option<(Arc<Array3<bool>>, Arc<PackedMesh>)> = None;
            while let Some(mut req) = next_request(&waiting) {
                if cache_generation != Some(req.map_generation) {
                    cache.clear();
                    cache_generation = Some(req.map_generation);
                    req.recompute = None;
                }
                let send = |e: MeshEvent| {
                    let ok = ev_tx.send(e).is_ok();
                    wake();
                    ok
                };
                cache.retain(|id, _| req.labels.iter().any(|l| l.0 == *id));
                let todo = labels_to_mesh(&req, &cache);
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    if let Some(map) = &req.map {
                        for (n, id) in todo.iter().enumerate() {
                            let name = req.labels.iter().find(|l| l.0 == *id).map_or_else(|| format!("label {id}"), |l| l.1.clone());
                            send(MeshEvent::Progress { what: format!("3D: surface of {name} ({}/{})", n + 1, todo.len()), fraction: n as f32 / todo.len().max(1) as f32 });
                            cache.insert(*id, Arc::new(PackedMesh::new(&label_surface(map, *id))));
                        }
                    }
                    let candidate = match (&req.candidate, &candidate_cache) {
                        (Some(CandidateShape { mesh: Some(m), .. }), _) => Some(Arc::new(PackedMesh::new(m))),
                        (Some(c), Some((old, mesh))) if Arc::ptr_eq(&c.mask, old) => Some(mesh.clone()),
                        (Some(c), _) => {
                            send(MeshEvent::Progress { what: "3D: surface of the click result".into(), fraction: 0.9 });
                            let m = Arc::new(PackedMesh::new(&crate::shape::click_mesh::mesh_of_grid_mask(c.mask.view(), &req.grid)));
                            candidate_cache = Some((c.mask.clone(), m.clone()));
                            Some(m)
                        }
                        (None, _) => None,
                    };
                    if req.candidate.is_none() {
                        candidate_cache = None;
                    }
                    let mut meshes: Vec<(LabelInfo, Arc<PackedMesh>)> = req
                        .labels
                        .iter()
                        .filter_map(|(id, name, color)| {
                            let mesh = cache.get(id).filter(|m| !m.indices.is_empty())?.clone();
                            Some((LabelInfo { label: *id, name: name.clone(), color: *color, triangles: 0 }, mesh))
                        })
                        .collect();
                    if let Some(mesh) = candidate.filter(|m| !m.indices.is_empty()) {
                        meshes.push((LabelInfo { label: CANDIDATE_ID, name: "3D from click".into(), color: CANDIDATE_COLOUR, triangles: 0 }, mesh));
                    }
                    PreparedLabelMeshes::from_packed(meshes)
                }));
                match result {
                    Ok(prepared) => {
                        if !send(MeshEvent::Done(Box::new(prepared))) {
                            break;
                        }
                    }
                    Err(_) => {
                        log::error!("the mesher failed on a label map; the 3D view keeps its previous meshes");
                        cache.clear();
                        cache_generation = None;
                        if !send(MeshEvent::Done(Box::new(PreparedLabelMeshes::new(Vec::new())))) {
                            break;
                        }
                    }
                }
            }
        })?;
        Ok(Self { slot, events: ev_rx })
    }

    /// No request waiting (the one being worked on, if any, was taken).
    pub fn requests_empty(&self) -> bool {
        self.slot.waiting.lock().map_or(true, |w| w.0.is_none())
    }

    /// Hands a request to the mesher without blocking: merged into the one waiting, if any
    /// ([`merge_requests`]), so no label to recompute is ever lost.
    pub fn request(&self, r: MeshRequest) -> Result<(), String> {
        let mut w = self.slot.waiting.lock().map_err(|_| "the mesher thread has stopped".to_string())?;
        w.0 = Some(match w.0.take() {
            Some(older) => merge_requests(older, r),
            None => r,
        });
        drop(w);
        self.slot.ready.notify_one();
        Ok(())
    }
}

/// The labels a request needs meshed: those it asks to recompute, and every label it shows
/// whose surface is not in `cache` (a label shown again after it was hidden). In the order of
/// the request's labels.
pub fn labels_to_mesh(req: &MeshRequest, cache: &BTreeMap<u16, Arc<PackedMesh>>) -> Vec<u16> {
    req.labels
        .iter()
        .map(|l| l.0)
        .filter(|id| !cache.contains_key(id) || req.recompute.as_ref().is_none_or(|r| r.contains(id)))
        .collect()
}

/// Waits for the next request; `None` once the handle is dropped.
fn next_request(slot: &Slot) -> Option<MeshRequest> {
    let mut w = slot.waiting.lock().ok()?;
    loop {
        if let Some(r) = w.0.take() {
            return Some(r);
        }
        if w.1 {
            return None;
        }
        w = slot.ready.wait(w).ok()?;
    }
}

fn smoothed(mut m: Mesh) -> Mesh {
    m.taubin_smooth(SMOOTH_ITERATIONS);
    m
}

/// Grids up to this many voxels (256³) have their label surfaces meshed voxel by voxel; bigger
/// ones on blocks of about [`crate::shape::click_mesh::MESH_BLOCK_MM`], as "3D from click"
/// results are shown: a 512 × 512 × 224 CT's 61 organs at 0.6 mm in plane come to about a
/// third of the triangles (and of the memory they take, on the CPU and the GPU).
pub const VOXEL_SURFACE_MAX_VOXELS: usize = 1 << 24;

/// The surface of one label as the 3D view shows it (Taubin-smoothed, RAS mm): voxel by voxel,
/// or on blocks for a big grid ([`VOXEL_SURFACE_MAX_VOXELS`]).
pub fn label_surface(map: &LabelMap, id: u16) -> Mesh {
    let blocks = crate::shape::click_mesh::mesh_blocks(&map.ras_from_voxel);
    if map.shape().len() <= VOXEL_SURFACE_MAX_VOXELS || blocks == [1, 1, 1] {
        return smoothed(mesh_of_label(map, id));
    }
    let Some((lo, hi)) = crate::shape::sdf::bounding_box_by(map.data.view(), |&l| l == id) else { return Mesh::default() };
    let crop = map.data.slice(ndarray::s![lo[0]..=hi[0], lo[1]..=hi[1], lo[2]..=hi[2]]).mapv(|l| l == id);
    crate::shape::mesh_of_mask_blocks(crop.view(), lo, map.shape(), &map.ras_from_voxel, blocks, SMOOTH_ITERATIONS)
}

/// The RAS box spanned by a grid's voxel centres (for the slice planes in the 3D view).
pub fn grid_bounds(g: &impl OnGrid) -> BoundsRas {
    let s = g.shape();
    let mut min = [f64::INFINITY; 3];
    let mut max = [f64::NEG_INFINITY; 3];
    for c in 0..8 {
        let v = crate::geometry::VoxelIjk::new(
            if c & 1 == 0 { -0.5 } else { s.ni as f64 - 0.5 },
            if c & 2 == 0 { -0.5 } else { s.nj as f64 - 0.5 },
            if c & 4 == 0 { -0.5 } else { s.nk as f64 - 0.5 },
        );
        let p = g.ras_from_voxel().apply(v).to_array();
        for d in 0..3 {
            min[d] = min[d].min(p[d]);
            max[d] = max[d].max(p[d]);
        }
    }
    BoundsRas { min, max }
}

/// The 3D view's cell: title bar (slice-plane checkbox, maximise) and the wgpu view.
pub fn three_d_ui(app: &mut App, ui: &mut egui::Ui, cell: Rect) {
    let title = Rect::from_min_size(cell.min, vec2(cell.width(), TITLE_H));
    let rect = Rect::from_min_max(pos2(cell.min.x, title.max.y), cell.max);
    let p = ui.painter_at(cell);
    p.rect_filled(cell, 0.0, Color32::from_gray(20));
    p.rect_filled(title, 0.0, Color32::from_gray(40));
    p.rect_filled(Rect::from_min_size(title.min, vec2(4.0, TITLE_H)), 0.0, Color32::from_rgb(110, 130, 200));
    let status = match &app.rt.mesh_progress {
        Some((what, _)) => what.clone(),
        None => String::new(),
    };
    super::slice_view::paint_title(&p, title, title.max.x - 176.0, format!("3D view   {status}"));
    let maximised = app.maximised == Some(ViewCell::ThreeD);
    let btn_rect = Rect::from_min_size(pos2(title.max.x - 62.0, title.min.y + 1.0), vec2(60.0, TITLE_H - 2.0));
    if ui.put(btn_rect, egui::Button::new(if maximised { "Restore" } else { "Maximise" }).small().frame(false)).clicked() {
        app.send(AppCommand::ToggleMaximise(ViewCell::ThreeD));
    }
    let cb_rect = Rect::from_min_size(pos2(title.max.x - 170.0, title.min.y + 1.0), vec2(104.0, TITLE_H - 2.0));
    let mut planes = app.mesh_view.options.show_slice_planes;
    if ui.put(cb_rect, egui::Checkbox::new(&mut planes, "Slice planes")).changed() {
        app.mesh_view.options.show_slice_planes = planes;
    }

    // Per-frame values: crosshair marker, slice planes, label visibility and colours.
    if let Some(scene) = app.rt.scene.as_ref() {
        app.mesh_view.set_crosshair(scene.crosshair);
        if app.mesh_view.options.show_slice_planes {
            let b = grid_bounds(scene.volume.as_ref());
            app.mesh_view.set_slice_planes(ViewPlane::ALL.iter().map(|pl| SlicePlane::through_box(*pl, scene.crosshair, &b)).collect());
        }
        if let Some(l) = &scene.labels {
            for (&id, e) in &l.table.entries {
                app.mesh_view.set_label_visible(id, e.visible);
                let [r, g, b] = e.colour;
                app.mesh_view.set_label_color(id, [r, g, b, 255]);
            }
        }
    } else {
        app.mesh_view.clear_crosshair();
    }
    // While a job runs, the 3D view redraws only for its own camera (see `set_hold`).
    app.mesh_view.set_hold(app.rt.click.running.is_some() || app.rt.edit_job.is_some());
    ui.scope_builder(egui::UiBuilder::new().max_rect(rect), |ui| {
        render::mesh_view_ui(ui, &mut app.mesh_view);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::LabelMap;

    fn req(generation: u64, recompute: Option<Vec<u16>>) -> MeshRequest {
        MeshRequest { map_generation: generation, map: None, recompute, labels: Vec::new(), candidate: None, grid: RasFromVoxel::identity() }
    }

    #[test]
    fn a_newer_request_keeps_the_labels_the_older_one_asked_for() {
        let m = merge_requests(req(3, Some(vec![2, 5])), req(3, Some(vec![5, 1])));
        assert_eq!((m.map_generation, m.recompute), (3, Some(vec![1, 2, 5])));
        assert_eq!(merge_requests(req(3, None), req(3, Some(vec![1]))).recompute, None, "the older asked for every label");
        assert_eq!(merge_requests(req(3, Some(vec![2])), req(4, Some(vec![1]))).recompute, Some(vec![1]), "another map");
    }

    fn last_surfaces(mesher: &Mesher) -> Box<PreparedLabelMeshes> {
        let mut last = None;
        while let Ok(ev) = mesher.events.recv_timeout(std::time::Duration::from_secs(20)) {
            if let MeshEvent::Done(p) = ev {
                last = Some(p);
                if mesher.requests_empty() {
                    break;
                }
            }
        }
        last.expect("surfaces")
    }

    #[test]
    fn a_hidden_labels_surface_is_freed_and_built_again_the_same_when_shown() {
        let mut map = LabelMap::new(ndarray::Array3::zeros((14, 14, 14)), RasFromVoxel::identity()).expect("map");
        map.data.slice_mut(ndarray::s![2..6, 2..6, 2..7]).fill(1);
        map.data.slice_mut(ndarray::s![8..12, 7..12, 8..11]).fill(2);
        let map = Arc::new(map);
        let mesher = Mesher::spawn(|| {}).expect("mesher");
        let both = vec![(1, "a".to_string(), [255; 4]), (2, "b".to_string(), [255; 4])];
        let request = |labels: Vec<(u16, String, [u8; 4])>, recompute| MeshRequest { map_generation: 1, map: Some(map.clone()), recompute, labels, candidate: None, grid: RasFromVoxel::identity() };
        mesher.request(request(both.clone(), None)).expect("sent");
        let first = last_surfaces(&mesher);
        assert_eq!(first.labels().iter().map(|l| l.label).collect::<Vec<_>>(), vec![1, 2]);
        let b_first = first.packed()[1].clone();
        assert_eq!(*b_first, PackedMesh::new(&label_surface(&map, 2)), "the surface the 3D view gets is the label's");
        let b_weak = Arc::downgrade(&b_first);
        drop((first, b_first));

        // Label 2 hidden: only label 1 is asked for; 2's surface is freed (nobody holds it).
        mesher.request(request(both[..1].to_vec(), Some(Vec::new()))).expect("sent");
        let hidden = last_surfaces(&mesher);
        assert_eq!(hidden.labels().iter().map(|l| l.label).collect::<Vec<_>>(), vec![1]);
        assert!(b_weak.upgrade().is_none(), "the hidden label's surface is dropped");

        // Shown again: built again, the same surface exactly.
        mesher.request(request(both.clone(), Some(Vec::new()))).expect("sent");
        let shown = last_surfaces(&mesher);
        assert_eq!(shown.labels().iter().map(|l| l.label).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(*shown.packed()[1], PackedMesh::new(&label_surface(&map, 2)));
        assert!(Arc::ptr_eq(&shown.packed()[0], &hidden.packed()[0]), "the shown label kept its surface (not rebuilt)");
    }

    #[test]
    fn only_missing_or_asked_labels_are_meshed() {
        let labels = vec![(1, "a".to_string(), [255; 4]), (2, "b".to_string(), [255; 4]), (3, "c".to_string(), [255; 4])];
        let mut cache = BTreeMap::new();
        cache.insert(1, Arc::new(PackedMesh::default()));
        cache.insert(2, Arc::new(PackedMesh::default()));
        let mut r = req(1, Some(vec![2]));
        r.labels = labels;
        assert_eq!(labels_to_mesh(&r, &cache), vec![2, 3], "2 was asked for, 3 is not built yet");
        r.recompute = None;
        assert_eq!(labels_to_mesh(&r, &cache), vec![1, 2, 3]);
    }

    #[test]
    fn big_grids_are_meshed_on_blocks_and_small_ones_voxel_by_voxel() {
        // 0.6 × 0.6 × 1.5 mm: blocks of 3 × 3 × 1 voxels past the size limit.
        let a = RasFromVoxel::from_matrix(nalgebra::Matrix4::from_diagonal(&nalgebra::Vector4::new(0.6, 0.6, 1.5, 1.0))).expect("affine");
        let ball = |n: usize, nk: usize| {
            let mut m = LabelMap::new(ndarray::Array3::zeros((nk, n, n)), a).expect("map");
            let c = [nk as f64 / 2.0, n as f64 / 2.0, n as f64 / 2.0];
            m.data.indexed_iter_mut().for_each(|((k, j, i), v)| {
                let d = (((k as f64 - c[0]) * 1.5).powi(2) + ((j as f64 - c[1]) * 0.6).powi(2) + ((i as f64 - c[2]) * 0.6).powi(2)).sqrt();
                *v = u16::from(d < 12.0);
            });
            m
        };
        let small = ball(64, 24);
        assert_eq!(label_surface(&small, 1), smoothed(mesh_of_label(&small, 1)), "a small grid: as before");
        let big = ball(1024, 17);
        assert!(big.shape().len() > VOXEL_SURFACE_MAX_VOXELS);
        let coarse = label_surface(&big, 1);
        let fine = smoothed(mesh_of_label(&big, 1));
        assert!(coarse.triangles.len() * 4 < fine.triangles.len(), "{} vs {} triangles", coarse.triangles.len(), fine.triangles.len());
        let (vc, vf) = (coarse.volume_mm3().abs(), fine.volume_mm3().abs());
        assert!((vc - vf).abs() < 0.1 * vf, "the same shape: {vc:.0} vs {vf:.0} mm³");
    }

    #[test]
    fn a_burst_of_requests_is_never_refused_and_the_last_surfaces_hold_every_label() {
        // Two labels, each edited by its own request, sent faster than the mesher works (the
        // old bounded queue refused the ninth and its label kept a stale surface).
        let mut map = LabelMap::new(ndarray::Array3::zeros((12, 12, 12)), RasFromVoxel::identity()).expect("map");
        map.data.slice_mut(ndarray::s![2..5, 2..5, 2..5]).fill(1);
        map.data.slice_mut(ndarray::s![7..10, 7..10, 7..10]).fill(2);
        let map = Arc::new(map);
        let mesher = Mesher::spawn(|| {}).expect("mesher");
        let labels = vec![(1, "a".to_string(), [255; 4]), (2, "b".to_string(), [255; 4])];
        for n in 0..40u16 {
            let r = MeshRequest { map_generation: 1, map: Some(map.clone()), recompute: Some(vec![1 + n % 2]), labels: labels.clone(), candidate: None, grid: RasFromVoxel::identity() };
            mesher.request(r).expect("never refused");
        }
        let mut last = None;
        while let Ok(ev) = mesher.events.recv_timeout(std::time::Duration::from_secs(20)) {
            if let MeshEvent::Done(p) = ev {
                last = Some(p);
                if mesher.requests_empty() {
                    break;
                }
            }
        }
        let last = last.expect("surfaces");
        let mut ids: Vec<u16> = last.labels().iter().map(|l| l.label).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![1, 2]);
    }
}
