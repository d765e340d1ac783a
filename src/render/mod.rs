//! The 3D view: label meshes drawn with wgpu inside egui.
//!
//! Use:
//! 1. once, where the eframe app is created with the wgpu renderer:
//!    `render::init(cc.wgpu_render_state.as_ref()?)`;
//! 2. keep a [`MeshViewState`] in the app (its camera, options and label visibility are
//!    serde-persisted), feed it with [`MeshViewState::set_meshes`] when meshes change,
//!    [`MeshViewState::set_crosshair`] and [`MeshViewState::set_slice_planes`] when the
//!    crosshair moves;
//! 3. each frame, `render::mesh_view_ui(ui, &mut state)` fills the available space.
//!
//! How it draws (see [`gpu`]): pipelines, buffers and bind groups live in egui-wgpu's
//! `CallbackResources`; each frame's paint callback carries only plain values (matrices,
//! colours, which meshes are visible) and a shared handle to the CPU mesh data, uploaded to the
//! GPU once per [`MeshViewState::set_meshes`]. The scene is rendered offscreen (depth buffer,
//! 4× MSAA, resolved) in the callback's `prepare`, then composited into egui's pass in `paint`.
//!
//! Mouse: left-drag orbits (turntable, S stays up), middle/right-drag or shift+left-drag pans,
//! the wheel zooms, a double-click fits the view to the meshes. Buttons A P L R S I pick the
//! anatomical views (see [`ViewPreset`]).

mod camera;
pub mod gpu;
mod mesh_data;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use egui::{Color32, FontId, PointerButton, Rect, Sense, UiBuilder, Vec2};
use serde::{Deserialize, Serialize};

pub use camera::{BoundsRas, CameraBasis, FOV_Y_DEG, OrbitCamera, ViewPreset};
pub use gpu::{MAX_SLICE_PLANES, MSAA_SAMPLES, init, is_initialised};
pub use mesh_data::{GpuVertex, PackedMesh};

use crate::geometry::{RasMm, ViewPlane};
use crate::shape::Mesh;
use gpu::{Blend, CameraUniform, MarkerDraw, MeshDraw, MeshViewCallback, PlaneDraw};
use mesh_data::{InstanceData, PreparedMeshes, quad_vertices, srgba_to_linear};

/// One label's mesh, as handed to the 3D view.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelMesh {
    /// Label id in the label map.
    pub label: u16,
    /// Display name (from the colour table).
    pub name: String,
    /// sRGB colour; alpha < 255 draws the mesh translucent.
    pub color: [u8; 4],
    /// Vertices RAS mm, CCW triangles seen from outside.
    pub mesh: Mesh,
}

/// What the 3D view remembers about one label once its mesh was handed over.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelInfo {
    pub label: u16,
    pub name: String,
    pub color: [u8; 4],
    pub triangles: usize,
}

/// Label meshes packed for the GPU (vertex normals computed, one vertex and index array).
/// Plain data (`Send`): build it where the meshes are computed, off the UI thread.
#[derive(Debug)]
pub struct PreparedLabelMeshes {
    labels: Vec<LabelInfo>,
    prepared: Arc<PreparedMeshes>,
}

impl PreparedLabelMeshes {
    pub fn new(meshes: Vec<LabelMesh>) -> Self {
        let prepared = PreparedMeshes::new(next_key(), meshes.iter().map(|m| &m.mesh));
        if prepared.dropped_triangles > 0 {
            log::warn!("3D view: dropped {} triangles with out-of-range vertex indices", prepared.dropped_triangles);
        }
        let labels = meshes
            .into_iter()
            .map(|m| LabelInfo { label: m.label, name: m.name, color: m.color, triangles: m.mesh.triangles.len() })
            .collect();
        Self { labels, prepared: Arc::new(prepared) }
    }

    /// Surfaces already packed (the mesher's cache shares them: a mesh is held once), with
    /// each label's id, name and colour, in order.
    pub fn from_packed(meshes: Vec<(LabelInfo, Arc<PackedMesh>)>) -> Self {
        let (mut labels, packed): (Vec<LabelInfo>, Vec<Arc<PackedMesh>>) = meshes.into_iter().unzip();
        for (info, m) in labels.iter_mut().zip(&packed) {
            info.triangles = m.triangle_count();
        }
        let prepared = PreparedMeshes::from_packed(next_key(), packed);
        if prepared.dropped_triangles > 0 {
            log::warn!("3D view: dropped {} triangles with out-of-range vertex indices", prepared.dropped_triangles);
        }
        Self { labels, prepared: Arc::new(prepared) }
    }

    /// The labels these surfaces show, in order.
    pub fn labels(&self) -> &[LabelInfo] {
        &self.labels
    }

    pub fn triangle_count(&self) -> usize {
        self.prepared.triangle_count()
    }

    /// The packed surface of each label, in the order of [`Self::labels`].
    pub fn packed(&self) -> &[Arc<PackedMesh>] {
        &self.prepared.meshes
    }
}

/// A translucent rectangle through the crosshair, e.g. where a slice view cuts the volume.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlicePlane {
    /// The four corners, in order around the edge, RAS mm.
    pub corners_ras: [RasMm; 4],
    /// sRGB colour; alpha is multiplied by [`MeshViewOptions::slice_plane_opacity`].
    pub color: [u8; 4],
}

impl SlicePlane {
    /// A plane in 3D Slicer's colour for its view: axial red, coronal green, sagittal yellow.
    pub fn new(plane: ViewPlane, corners_ras: [RasMm; 4]) -> Self {
        let color = match plane {
            ViewPlane::Axial => [240, 80, 80, 255],
            ViewPlane::Coronal => [100, 200, 90, 255],
            ViewPlane::Sagittal => [235, 215, 80, 255],
        };
        Self { corners_ras, color }
    }

    /// The axis-aligned RAS plane of `plane`'s orientation through `point`, spanning `bounds`
    /// (for voxel-aligned, non-oblique volumes; oblique ones pass their own corners to [`Self::new`]).
    pub fn through_box(plane: ViewPlane, point: RasMm, bounds: &BoundsRas) -> Self {
        // Normal axis, then two in-plane axes.
        let (n, u, v) = match plane {
            ViewPlane::Axial => (2, 0, 1),
            ViewPlane::Coronal => (1, 0, 2),
            ViewPlane::Sagittal => (0, 1, 2),
        };
        let corner = |su: bool, sv: bool| {
            let mut p = [0.0; 3];
            p[n] = point.to_array()[n];
            p[u] = if su { bounds.max[u] } else { bounds.min[u] };
            p[v] = if sv { bounds.max[v] } else { bounds.min[v] };
            RasMm::new(p[0], p[1], p[2])
        };
        Self::new(plane, [corner(false, false), corner(true, false), corner(true, true), corner(false, true)])
    }
}

/// Display options of the 3D view (persisted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MeshViewOptions {
    /// Opacity of all meshes in [0, 1], multiplied by each label colour's alpha.
    pub opacity: f32,
    /// Draw the crosshair marker (three rods along R, A, S coloured red, green, blue).
    pub show_crosshair: bool,
    /// Draw the slice planes given by [`MeshViewState::set_slice_planes`].
    pub show_slice_planes: bool,
    /// Opacity of the slice planes in [0, 1].
    pub slice_plane_opacity: f32,
    /// Show the one-line mouse help at the bottom.
    pub show_help: bool,
}

impl Default for MeshViewOptions {
    fn default() -> Self {
        Self {
            opacity: 1.0,
            show_crosshair: true,
            show_slice_planes: false,
            slice_plane_opacity: 0.25,
            show_help: true,
        }
    }
}

/// Opacity of the other meshes while a label is in focus ([`MeshViewState::set_focus`]).
pub const FOCUS_CONTEXT_OPACITY: f32 = 0.2;

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

fn next_key() -> u64 {
    NEXT_KEY.fetch_add(1, Ordering::Relaxed)
}

/// Everything one 3D view shows and how it is looked at. Camera, options and hidden labels
/// are persisted; meshes, crosshair and planes come from the app at run time.
#[derive(Serialize, Deserialize)]
#[serde(default)]
pub struct MeshViewState {
    pub camera: OrbitCamera,
    pub options: MeshViewOptions,
    /// Labels the user hid in this view.
    hidden_labels: BTreeSet<u16>,
    #[serde(skip)]
    labels: Vec<LabelInfo>,
    #[serde(skip)]
    prepared: Arc<PreparedMeshes>,
    #[serde(skip)]
    crosshair: Option<RasMm>,
    #[serde(skip)]
    slice_planes: Vec<SlicePlane>,
    /// Fit the camera to the scene at the next frame (needs the viewport's aspect).
    #[serde(skip)]
    fit_pending: bool,
    /// The label in focus (a new result) and which one it is (a key that changes with each
    /// result): the other meshes are drawn faint so they never hide it.
    #[serde(skip)]
    focus: Option<(u16, u64)>,
    /// Fit the camera to this label once its mesh is loaded.
    #[serde(skip)]
    fit_label: Option<u16>,
    /// Identifies this view's GPU data; unique per state, never persisted.
    #[serde(skip, default = "next_key")]
    view_key: u64,
    /// Keep showing the last picture while the camera and the view's size stay as they are
    /// ([`MeshViewState::set_hold`]).
    #[serde(skip)]
    hold: bool,
}

impl Default for MeshViewState {
    fn default() -> Self {
        Self {
            camera: OrbitCamera::default(),
            options: MeshViewOptions::default(),
            hidden_labels: BTreeSet::new(),
            labels: Vec::new(),
            prepared: Arc::new(PreparedMeshes { generation: next_key(), ..Default::default() }),
            crosshair: None,
            slice_planes: Vec::new(),
            fit_pending: true,
            focus: None,
            fit_label: None,
            view_key: next_key(),
            hold: false,
        }
    }
}

impl std::fmt::Debug for MeshViewState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshViewState")
            .field("camera", &self.camera)
            .field("options", &self.options)
            .field("labels", &self.labels.len())
            .field("triangles", &self.prepared.triangle_count())
            .field("crosshair", &self.crosshair)
            .finish_non_exhaustive()
    }
}

impl MeshViewState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the meshes (uploaded to the GPU once, at the next frame). The camera is fitted
    /// to them when the view had no meshes before; otherwise it stays where the user put it.
    ///
    /// Packing costs O(triangles) (≈ 30 ms for 300k triangles); for big meshes build a
    /// [`PreparedLabelMeshes`] on the worker thread and call [`Self::set_prepared_meshes`].
    pub fn set_meshes(&mut self, meshes: Vec<LabelMesh>) {
        self.set_prepared_meshes(PreparedLabelMeshes::new(meshes));
    }

    /// Like [`Self::set_meshes`], with the packing already done (cheap: moves an `Arc`).
    pub fn set_prepared_meshes(&mut self, meshes: PreparedLabelMeshes) {
        let was_empty = self.prepared.is_empty();
        if was_empty && !meshes.prepared.is_empty() {
            self.fit_pending = true;
        }
        self.labels = meshes.labels;
        self.prepared = meshes.prepared;
    }

    /// The labels whose meshes are loaded, in the order given.
    pub fn labels(&self) -> &[LabelInfo] {
        &self.labels
    }

    /// Total triangles loaded.
    pub fn triangle_count(&self) -> usize {
        self.prepared.triangle_count()
    }

    /// The packed surface of each loaded label, in the order of [`Self::labels`].
    pub fn packed_meshes(&self) -> &[Arc<PackedMesh>] {
        &self.prepared.meshes
    }

    /// Bounds of all loaded meshes.
    pub fn mesh_bounds(&self) -> Option<BoundsRas> {
        self.prepared.bounds
    }

    pub fn set_label_visible(&mut self, label: u16, visible: bool) {
        if visible {
            self.hidden_labels.remove(&label);
        } else {
            self.hidden_labels.insert(label);
        }
    }

    pub fn is_label_visible(&self, label: u16) -> bool {
        !self.hidden_labels.contains(&label)
    }

    /// Recolours a label (no re-upload: colours are per-frame values).
    pub fn set_label_color(&mut self, label: u16, color: [u8; 4]) {
        for info in self.labels.iter_mut().filter(|i| i.label == label) {
            info.color = color;
        }
    }

    /// Moves the crosshair marker (ignored if not finite).
    pub fn set_crosshair(&mut self, crosshair: RasMm) {
        self.crosshair = crosshair.is_finite().then_some(crosshair);
    }

    pub fn clear_crosshair(&mut self) {
        self.crosshair = None;
    }

    /// While `on`, the view keeps its last picture through changes of the marker, the planes
    /// and the meshes, and draws again only when the camera moves or the view is resized. The
    /// app holds it while a job runs on the cores the job needs: under a software renderer a
    /// frame of a CT's label surfaces costs as much CPU as a good part of a click. Off, every
    /// change shows at the next frame.
    pub fn set_hold(&mut self, on: bool) {
        self.hold = on;
    }

    pub fn crosshair(&self) -> Option<RasMm> {
        self.crosshair
    }

    /// Replaces the slice planes (at most [`MAX_SLICE_PLANES`] are drawn; shown when
    /// [`MeshViewOptions::show_slice_planes`] is on).
    pub fn set_slice_planes(&mut self, planes: Vec<SlicePlane>) {
        self.slice_planes = planes;
    }

    /// Puts a label in focus (`None`: none): the other meshes are drawn at
    /// [`FOCUS_CONTEXT_OPACITY`] so they never hide it, and the camera is fitted to it (with
    /// its surroundings) each time `key` changes, once its mesh is loaded.
    pub fn set_focus(&mut self, focus: Option<(u16, u64)>) {
        if focus.is_some() && focus != self.focus {
            self.fit_label = focus.map(|f| f.0);
        }
        if focus.is_none() {
            self.fit_label = None;
        }
        self.focus = focus;
    }

    /// The label in focus.
    pub fn focus(&self) -> Option<u16> {
        self.focus.map(|f| f.0)
    }

    /// Bounds of one label's mesh, when loaded.
    pub fn label_bounds(&self, label: u16) -> Option<BoundsRas> {
        self.labels.iter().zip(&self.prepared.part_bounds).filter(|(i, _)| i.label == label).find_map(|(_, b)| *b)
    }

    /// Fits the camera to the scene at the next frame, keeping the viewing direction.
    pub fn reset_camera(&mut self) {
        self.fit_pending = true;
    }

    /// Bounds of what is drawn: visible meshes, else everything else shown (planes, marker).
    pub fn scene_bounds(&self) -> Option<BoundsRas> {
        fn add(bounds: &mut Option<BoundsRas>, b: BoundsRas) {
            *bounds = Some(bounds.map_or(b, |a| a.union(&b)));
        }
        let mut bounds: Option<BoundsRas> = None;
        for (info, b) in self.labels.iter().zip(&self.prepared.part_bounds) {
            if let Some(b) = b
                && self.is_label_visible(info.label)
            {
                add(&mut bounds, *b);
            }
        }
        if bounds.is_none() {
            if self.options.show_slice_planes {
                for plane in &self.slice_planes {
                    for c in &plane.corners_ras {
                        add(&mut bounds, BoundsRas { min: c.to_array(), max: c.to_array() });
                    }
                }
            }
            if let Some(c) = self.crosshair {
                let r = 25.0;
                let p = c.to_array();
                add(&mut bounds, BoundsRas { min: p.map(|x| x - r), max: p.map(|x| x + r) });
            }
        }
        bounds.filter(|b| b.min.iter().chain(&b.max).all(|x| x.is_finite()))
    }

    /// The paint callback for one frame of a viewport of `size_px` physical pixels.
    fn frame(&self, size_px: [u32; 2]) -> MeshViewCallback {
        let aspect = f64::from(size_px[0].max(1)) / f64::from(size_px[1].max(1));
        let scene = self.scene_bounds();
        let marker_half_mm = scene.map_or(10.0, |b| (0.12 * b.radius()).clamp(3.0, 80.0));
        // Depth range: the scene plus the marker.
        let depth_bounds = match (scene, self.crosshair) {
            (Some(b), Some(c)) => {
                let p = c.to_array();
                Some(b.union(&BoundsRas { min: p.map(|x| x - marker_half_mm), max: p.map(|x| x + marker_half_mm) }))
            }
            (b, _) => b,
        };
        let clip_from_world = self.camera.clip_from_world(aspect, depth_bounds.as_ref());
        let eye = self.camera.eye_ras();
        let camera = CameraUniform {
            clip_from_world: clip_from_world.cast::<f32>().into(),
            eye: [eye[0] as f32, eye[1] as f32, eye[2] as f32, 1.0],
        };

        let opacity = self.options.opacity.clamp(0.0, 1.0);
        let mut opaque = Vec::new();
        let mut translucent = Vec::new();
        for (part, info) in self.labels.iter().enumerate() {
            if !self.is_label_visible(info.label) {
                continue;
            }
            let mut color = srgba_to_linear(info.color);
            color[3] *= opacity;
            if let Some(f) = self.focus()
                && f != info.label
                && self.labels.iter().any(|i| i.label == f)
            {
                color[3] *= FOCUS_CONTEXT_OPACITY;
            }
            if color[3] < 0.004 {
                continue;
            }
            let blend = if color[3] >= 0.999 { Blend::Opaque } else { Blend::Translucent };
            let draw = MeshDraw {
                part,
                instance: InstanceData { color, offset_scale: [0.0, 0.0, 0.0, 1.0], params: [1.0, 0.0, 0.0, 0.0] },
                blend,
            };
            match blend {
                Blend::Opaque => opaque.push(draw),
                Blend::Translucent => {
                    let depth = self.prepared.part_bounds.get(part).copied().flatten().map_or(0.0, |b| {
                        let c = b.centre();
                        (0..3).map(|k| (c[k] - eye[k]).powi(2)).sum::<f64>()
                    });
                    translucent.push((depth, draw));
                }
            }
        }
        // Back to front.
        translucent.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut draws = opaque;
        draws.extend(translucent.into_iter().map(|(_, d)| d));

        let marker = self.crosshair.filter(|_| self.options.show_crosshair).map(|c| MarkerDraw {
            offset_scale: [c.x() as f32, c.y() as f32, c.z() as f32, marker_half_mm as f32],
            colors: [[235, 60, 60, 255], [60, 210, 80, 255], [70, 120, 255, 255]].map(srgba_to_linear),
        });

        let planes = if self.options.show_slice_planes {
            let plane_opacity = self.options.slice_plane_opacity.clamp(0.0, 1.0);
            self.slice_planes
                .iter()
                .filter(|p| p.corners_ras.iter().all(|c| c.is_finite()))
                .take(MAX_SLICE_PLANES)
                .map(|p| {
                    let corners = p.corners_ras.map(|c| [c.x() as f32, c.y() as f32, c.z() as f32]);
                    let mut color = srgba_to_linear(p.color);
                    color[3] *= plane_opacity;
                    PlaneDraw { vertices: quad_vertices(&corners), color }
                })
                .collect()
        } else {
            Vec::new()
        };

        MeshViewCallback {
            view_key: self.view_key,
            size_px,
            camera,
            meshes: self.prepared.clone(),
            draws,
            marker,
            planes,
            hold: self.hold,
        }
    }
}

/// Radians of orbit per point dragged.
const ORBIT_RAD_PER_POINT: f64 = 0.008;
/// Zoom factor per point scrolled: distance × exp(−k · scroll).
const ZOOM_PER_SCROLL_POINT: f64 = 0.0025;

/// The 3D view: fills the available space, handles orbit/pan/zoom, paints the meshes through
/// the wgpu callback, and overlays the view buttons and a short help line.
/// Needs [`init`] to have run on the app's wgpu render state (otherwise it draws the overlay
/// only and logs an error once).
pub fn mesh_view_ui(ui: &mut egui::Ui, state: &mut MeshViewState) -> egui::Response {
    let size = ui.available_size().max(Vec2::splat(48.0));
    let (rect, response) = ui.allocate_exact_size(size, Sense::click_and_drag());
    handle_input(ui, &response, rect, state);

    let ppp = ui.ctx().pixels_per_point();
    let size_px = [(rect.width() * ppp).round().max(1.0) as u32, (rect.height() * ppp).round().max(1.0) as u32];
    if state.fit_pending
        && let Some(bounds) = state.scene_bounds()
    {
        state.camera.fit(&bounds, f64::from(rect.width() / rect.height().max(1.0)));
        state.fit_pending = false;
    }
    if let Some(label) = state.fit_label
        && let Some(b) = state.label_bounds(label)
    {
        // The result with some of its surroundings: its box grown by half its size each way.
        let grow = b.radius() * 0.5;
        let around = BoundsRas { min: b.min.map(|x| x - grow), max: b.max.map(|x| x + grow) };
        state.camera.fit(&around, f64::from(rect.width() / rect.height().max(1.0)));
        state.fit_label = None;
    }
    if ui.is_rect_visible(rect) {
        ui.painter().add(egui_wgpu::Callback::new_paint_callback(rect, state.frame(size_px)));
        overlay_ui(ui, rect, state);
    }
    response
}

fn handle_input(ui: &egui::Ui, response: &egui::Response, rect: Rect, state: &mut MeshViewState) {
    let shift = ui.input(|i| i.modifiers.shift);
    let delta = response.drag_delta();
    let (dx, dy) = (f64::from(delta.x), f64::from(delta.y));
    let panning = response.dragged_by(PointerButton::Middle)
        || response.dragged_by(PointerButton::Secondary)
        || (response.dragged_by(PointerButton::Primary) && shift);
    if panning {
        state.camera.pan_px(dx, dy, f64::from(rect.height()));
    } else if response.dragged_by(PointerButton::Primary) {
        state.camera.orbit(dx * ORBIT_RAD_PER_POINT, dy * ORBIT_RAD_PER_POINT);
    }
    if response.hovered() {
        let (scroll, zoom) = ui.input(|i| (i.smooth_scroll_delta.y, i.zoom_delta()));
        if scroll != 0.0 {
            state.camera.zoom((-f64::from(scroll) * ZOOM_PER_SCROLL_POINT).exp());
            ui.ctx().input_mut(|i| i.smooth_scroll_delta.y = 0.0);
        }
        if zoom != 1.0 && zoom > 0.0 {
            state.camera.zoom(1.0 / f64::from(zoom));
        }
    }
    if response.double_clicked() {
        state.reset_camera();
    }
}

fn overlay_ui(ui: &mut egui::Ui, rect: Rect, state: &mut MeshViewState) {
    let mut buttons =
        ui.new_child(UiBuilder::new().max_rect(rect.shrink(6.0)).layout(egui::Layout::left_to_right(egui::Align::Min)));
    buttons.spacing_mut().item_spacing.x = 3.0;
    for preset in ViewPreset::ALL {
        if buttons.small_button(preset.letter()).on_hover_text(format!("{} view", preset.name())).clicked() {
            state.camera.set_preset(preset);
        }
    }
    if buttons.small_button("Fit").on_hover_text("Fit the view to the meshes (double-click)").clicked() {
        state.reset_camera();
    }

    let painter = ui.painter_at(rect);
    let text_color = Color32::from_gray(190);
    if state.prepared.is_empty() {
        let text = egui::RichText::new("No meshes yet").size(16.0).color(text_color);
        ui.put(Rect::from_center_size(rect.center(), Vec2::new(rect.width(), 24.0)), egui::Label::new(text));
    } else {
        // Right of the view buttons, with an ellipsis where the view is too narrow for it.
        let visible = state.labels.iter().filter(|l| state.is_label_visible(l.label)).count();
        let room = (rect.right() - 8.0) - (buttons.min_rect().right() + 2.0);
        if room > 24.0 {
            let mut job = egui::text::LayoutJob::simple_singleline(
                format!("{visible}/{} meshes · {} triangles", state.labels.len(), state.triangle_count()),
                FontId::proportional(11.0),
                text_color,
            );
            job.wrap = egui::text::TextWrapping::truncate_at_width(room);
            let galley = painter.layout_job(job);
            painter.galley(rect.right_top() + Vec2::new(-8.0 - galley.size().x, 8.0), galley, text_color);
        }
    }
    if state.options.show_help {
        let galley = painter.layout(
            "drag: orbit · right/middle/shift-drag: pan · wheel: zoom · double-click: fit".to_owned(),
            FontId::proportional(11.0),
            text_color,
            (rect.width() - 16.0).max(40.0),
        );
        let pos = rect.left_bottom() + Vec2::new(8.0, -6.0 - galley.size().y);
        painter.galley(pos, galley, text_color);
    }
}

#[cfg(test)]
mod focus_tests {
    use super::*;
    use crate::geometry::RasFromVoxel;
    use ndarray::Array3;

    fn cube_mesh(offset: usize) -> crate::shape::Mesh {
        let mask = Array3::from_shape_fn((12, 12, 24), |(k, j, i)| (2..6).contains(&k) && (2..6).contains(&j) && (offset..offset + 4).contains(&i));
        crate::shape::mesh::mesh_from_mask(mask.view(), &RasFromVoxel::identity())
    }

    #[test]
    fn a_result_in_focus_is_never_hidden_and_the_camera_comes_to_it() {
        let mut v = MeshViewState::new();
        v.set_meshes(vec![
            LabelMesh { label: 1, name: "reference".into(), color: [200, 100, 100, 255], mesh: cube_mesh(2) },
            LabelMesh { label: 9, name: "result".into(), color: [60, 220, 230, 255], mesh: cube_mesh(16) },
        ]);
        let alpha = |v: &MeshViewState, label: u16| {
            let part = v.labels().iter().position(|l| l.label == label).expect("part");
            v.frame([64, 64]).draws.iter().find(|d| d.part == part).map(|d| d.instance.color[3]).expect("drawn")
        };
        assert_eq!((alpha(&v, 1), alpha(&v, 9)), (1.0, 1.0));
        v.set_focus(Some((9, 1)));
        assert!((alpha(&v, 1) - FOCUS_CONTEXT_OPACITY).abs() < 1e-6 && alpha(&v, 9) == 1.0);
        assert_eq!(v.fit_label, Some(9), "the camera is fitted to the new result");
        v.fit_label = None;
        v.set_focus(Some((9, 1)));
        assert_eq!(v.fit_label, None, "the same result again: the camera stays where the user put it");
        v.set_focus(Some((9, 2)));
        assert_eq!(v.fit_label, Some(9), "a newer result: fitted again");
        v.set_focus(None);
        assert_eq!(alpha(&v, 1), 1.0);
        let b = v.label_bounds(9).expect("bounds");
        assert!(b.min[0] > 14.0 && b.max[0] < 21.0, "{b:?}");
    }
}
