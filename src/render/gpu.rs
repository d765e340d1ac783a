//! The wgpu side of the 3D view: pipelines and buffers kept in egui-wgpu's
//! `CallbackResources`, and the per-frame paint callback.
//!
//! Per frame, [`MeshViewCallback::prepare`] renders the scene offscreen (4× MSAA colour +
//! depth, resolved into a single-sample texture) into egui's command encoder, and
//! [`MeshViewCallback::paint`] draws that texture into egui's render pass with one
//! fullscreen triangle. Per frame only the camera uniform, the per-draw instance data and the
//! slice-plane quads are written; mesh vertex data is uploaded once per mesh generation.

use std::collections::HashMap;
use std::sync::Arc;

use egui_wgpu::{CallbackResources, CallbackTrait, ScreenDescriptor};

use super::mesh_data::{GpuVertex, InstanceData, MeshPart, PreparedMeshes, marker_geometry};

/// Multisample count of the offscreen target.
pub const MSAA_SAMPLES: u32 = 4;
/// Colour format of the offscreen target (linear blending, sRGB storage).
const COLOR_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8UnormSrgb;
const DEPTH_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Depth32Float;
/// Most slice planes drawn at once.
pub const MAX_SLICE_PLANES: usize = 6;
/// A view whose callback has not run for this many prepares (of any view) loses its GPU data
/// (it is re-uploaded from the CPU copy if it comes back).
const EVICT_AFTER_PREPARES: u64 = 2000;

const MESH_SHADER: &str = include_str!("../../shaders/mesh.wgsl");
const COMPOSITE_SHADER: &str = include_str!("../../shaders/composite.wgsl");

/// Camera uniform (`shaders/mesh.wgsl`, `Camera`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CameraUniform {
    /// Column-major clip_from_world.
    pub clip_from_world: [[f32; 4]; 4],
    /// Eye position RAS mm; w unused.
    pub eye: [f32; 4],
}

/// How one mesh draw is blended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blend {
    /// Depth-tested and depth-writing, drawn first.
    Opaque,
    /// Alpha-blended, no depth write, drawn after the opaque ones in the given order
    /// (back to front); back faces first, then front faces.
    Translucent,
}

/// One label mesh to draw this frame.
#[derive(Clone, Copy, Debug)]
pub struct MeshDraw {
    /// Index into [`PreparedMeshes::parts`].
    pub part: usize,
    pub instance: InstanceData,
    pub blend: Blend,
}

/// The crosshair marker this frame.
#[derive(Clone, Copy, Debug)]
pub struct MarkerDraw {
    /// Centre RAS mm (xyz) and rod half-length mm (w).
    pub offset_scale: [f32; 4],
    /// Linear RGBA per rod (R, A, S axes).
    pub colors: [[f32; 4]; 3],
}

/// One translucent slice plane this frame.
#[derive(Clone, Copy, Debug)]
pub struct PlaneDraw {
    pub vertices: [GpuVertex; 6],
    /// Linear RGB, straight alpha.
    pub color: [f32; 4],
}

/// Everything one frame of one 3D view needs: plain values plus a shared handle to the
/// (immutable) CPU mesh data, which is only read when its generation is new to the GPU.
pub struct MeshViewCallback {
    /// Identifies the view's GPU data (targets, buffers) in the resources.
    pub view_key: u64,
    /// Offscreen size, physical pixels.
    pub size_px: [u32; 2],
    pub camera: CameraUniform,
    pub meshes: Arc<PreparedMeshes>,
    /// Opaque draws first, then translucent ones back to front.
    pub draws: Vec<MeshDraw>,
    pub marker: Option<MarkerDraw>,
    pub planes: Vec<PlaneDraw>,
    /// Keep the last picture while the camera's eye and the size are unchanged
    /// (`MeshViewState::set_hold`).
    pub hold: bool,
}

/// GPU objects shared by every 3D view, created once by [`init`].
pub struct RenderResources {
    camera_layout: wgpu::BindGroupLayout,
    composite_layout: wgpu::BindGroupLayout,
    opaque: wgpu::RenderPipeline,
    /// Translucent back faces (front faces culled).
    translucent_back: wgpu::RenderPipeline,
    /// Translucent front faces (back faces culled).
    translucent_front: wgpu::RenderPipeline,
    /// Translucent, both sides, depth-tested: slice planes.
    translucent_both: wgpu::RenderPipeline,
    /// Translucent, ignores depth: the marker's hidden parts, dimmed.
    xray: wgpu::RenderPipeline,
    composite: wgpu::RenderPipeline,
    marker_vertices: wgpu::Buffer,
    marker_indices: wgpu::Buffer,
    marker_parts: [MeshPart; 3],
    max_texture_side: u32,
    views: HashMap<u64, ViewGpu>,
    prepares: u64,
    mesh_uploads: u64,
    frames_reused: u64,
}

/// Per-view GPU data.
struct ViewGpu {
    last_used: u64,
    camera_buffer: wgpu::Buffer,
    camera_group: wgpu::BindGroup,
    instances: wgpu::Buffer,
    instance_capacity: usize,
    planes: wgpu::Buffer,
    targets: Option<Targets>,
    meshes: Option<MeshBuffers>,
    /// What the targets hold: the inputs of the last frame drawn into them ([`frame_inputs`]),
    /// and of those the size and the camera's eye.
    drawn: Option<Vec<u8>>,
    drawn_view: Option<([u32; 2], [f32; 4])>,
}

struct Targets {
    size_px: [u32; 2],
    msaa_view: wgpu::TextureView,
    resolve_view: wgpu::TextureView,
    depth_view: wgpu::TextureView,
    composite_group: wgpu::BindGroup,
}

struct MeshBuffers {
    generation: u64,
    /// `None` when there is nothing to draw (wgpu refuses empty buffers for binding).
    buffers: Option<(wgpu::Buffer, wgpu::Buffer)>,
}

/// Registers the 3D view's GPU resources with egui-wgpu. Call once, with the render state of
/// the eframe app (`cc.wgpu_render_state` in the app's constructor); calling again is a no-op.
///
/// Assumes egui's own render pass has no depth buffer and no multisampling (eframe's defaults:
/// `NativeOptions::depth_buffer = 0`, `multisampling = 0`); the 3D view brings its own.
pub fn init(render_state: &egui_wgpu::RenderState) {
    let mut renderer = render_state.renderer.write();
    if renderer.callback_resources.contains::<RenderResources>() {
        return;
    }
    let resources = RenderResources::new(&render_state.device, render_state.target_format);
    renderer.callback_resources.insert(resources);
}

/// Whether [`init`] has run for this render state.
pub fn is_initialised(render_state: &egui_wgpu::RenderState) -> bool {
    render_state.renderer.read().callback_resources.contains::<RenderResources>()
}

/// Counters for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuStats {
    /// Offscreen frames asked for (all views), drawn or reused.
    pub frames: u64,
    /// Mesh sets uploaded to the GPU (all views).
    pub mesh_uploads: u64,
    /// Frames not drawn because the view's last picture had the same inputs.
    pub frames_reused: u64,
    /// Views holding GPU data.
    pub views: usize,
}

/// Counters of the 3D view's GPU work; `None` before [`init`].
pub fn stats(render_state: &egui_wgpu::RenderState) -> Option<GpuStats> {
    let renderer = render_state.renderer.read();
    let res = renderer.callback_resources.get::<RenderResources>()?;
    Some(GpuStats { frames: res.prepares, mesh_uploads: res.mesh_uploads, frames_reused: res.frames_reused, views: res.views.len() })
}

fn vertex_layouts() -> [wgpu::VertexBufferLayout<'static>; 2] {
    const VERTEX_ATTRS: [wgpu::VertexAttribute; 2] = wgpu::vertex_attr_array![0 => Float32x3, 1 => Float32x3];
    const INSTANCE_ATTRS: [wgpu::VertexAttribute; 3] =
        wgpu::vertex_attr_array![2 => Float32x4, 3 => Float32x4, 4 => Float32x4];
    [
        wgpu::VertexBufferLayout {
            array_stride: size_of::<GpuVertex>() as u64,
            step_mode: wgpu::VertexStepMode::Vertex,
            attributes: &VERTEX_ATTRS,
        },
        wgpu::VertexBufferLayout {
            array_stride: size_of::<InstanceData>() as u64,
            step_mode: wgpu::VertexStepMode::Instance,
            attributes: &INSTANCE_ATTRS,
        },
    ]
}

impl RenderResources {
    fn new(device: &wgpu::Device, target_format: wgpu::TextureFormat) -> Self {
        let mesh_module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("render/mesh.wgsl"),
            source: wgpu::ShaderSource::Wgsl(MESH_SHADER.into()),
        });
        let composite_module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("render/composite.wgsl"),
            source: wgpu::ShaderSource::Wgsl(COMPOSITE_SHADER.into()),
        });

        let camera_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("render/camera"),
            entries: &[wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::VERTEX | wgpu::ShaderStages::FRAGMENT,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: wgpu::BufferSize::new(size_of::<CameraUniform>() as u64),
                },
                count: None,
            }],
        });
        let composite_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("render/composite"),
            entries: &[wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::FRAGMENT,
                ty: wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2,
                    multisampled: false,
                },
                count: None,
            }],
        });

        let mesh_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("render/mesh"),
            bind_group_layouts: &[Some(&camera_layout)],
            immediate_size: 0,
        });
        let layouts = vertex_layouts();
        let mesh_pipeline = |label: &str,
                             cull_mode: Option<wgpu::Face>,
                             blend: Option<wgpu::BlendState>,
                             depth_write: bool,
                             depth_compare: wgpu::CompareFunction| {
            device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
                label: Some(label),
                layout: Some(&mesh_layout),
                vertex: wgpu::VertexState {
                    module: &mesh_module,
                    entry_point: Some("vs_main"),
                    compilation_options: Default::default(),
                    buffers: &[Some(layouts[0].clone()), Some(layouts[1].clone())],
                },
                primitive: wgpu::PrimitiveState {
                    topology: wgpu::PrimitiveTopology::TriangleList,
                    front_face: wgpu::FrontFace::Ccw,
                    cull_mode,
                    ..Default::default()
                },
                depth_stencil: Some(wgpu::DepthStencilState {
                    format: DEPTH_FORMAT,
                    depth_write_enabled: Some(depth_write),
                    depth_compare: Some(depth_compare),
                    stencil: Default::default(),
                    bias: Default::default(),
                }),
                multisample: wgpu::MultisampleState { count: MSAA_SAMPLES, mask: !0, alpha_to_coverage_enabled: false },
                fragment: Some(wgpu::FragmentState {
                    module: &mesh_module,
                    entry_point: Some("fs_main"),
                    compilation_options: Default::default(),
                    targets: &[Some(wgpu::ColorTargetState {
                        format: COLOR_FORMAT,
                        blend,
                        write_mask: wgpu::ColorWrites::ALL,
                    })],
                }),
                multiview_mask: None,
                cache: None,
            })
        };
        let blend = Some(wgpu::BlendState::PREMULTIPLIED_ALPHA_BLENDING);
        use wgpu::CompareFunction::{Always, LessEqual};
        let opaque = mesh_pipeline("render/mesh opaque", None, None, true, LessEqual);
        let translucent_back =
            mesh_pipeline("render/mesh translucent back", Some(wgpu::Face::Front), blend, false, LessEqual);
        let translucent_front =
            mesh_pipeline("render/mesh translucent front", Some(wgpu::Face::Back), blend, false, LessEqual);
        let translucent_both = mesh_pipeline("render/mesh translucent", None, blend, false, LessEqual);
        let xray = mesh_pipeline("render/mesh x-ray", None, blend, false, Always);

        let composite_pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("render/composite"),
            bind_group_layouts: &[Some(&composite_layout)],
            immediate_size: 0,
        });
        let composite = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("render/composite"),
            layout: Some(&composite_pipeline_layout),
            vertex: wgpu::VertexState {
                module: &composite_module,
                entry_point: Some("vs_fullscreen"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            fragment: Some(wgpu::FragmentState {
                module: &composite_module,
                entry_point: Some(if target_format.is_srgb() { "fs_to_srgb_target" } else { "fs_to_gamma_target" }),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState {
                    format: target_format,
                    blend: None,
                    write_mask: wgpu::ColorWrites::ALL,
                })],
            }),
            multiview_mask: None,
            cache: None,
        });

        let (marker_v, marker_i, marker_parts) = marker_geometry();
        let marker_vertices = create_buffer_with(
            device,
            "render/marker vertices",
            bytemuck::cast_slice(&marker_v),
            wgpu::BufferUsages::VERTEX,
        );
        let marker_indices = create_buffer_with(
            device,
            "render/marker indices",
            bytemuck::cast_slice(&marker_i),
            wgpu::BufferUsages::INDEX,
        );

        Self {
            camera_layout,
            composite_layout,
            opaque,
            translucent_back,
            translucent_front,
            translucent_both,
            xray,
            composite,
            marker_vertices,
            marker_indices,
            marker_parts,
            max_texture_side: device.limits().max_texture_dimension_2d,
            views: HashMap::new(),
            prepares: 0,
            mesh_uploads: 0,
            frames_reused: 0,
        }
    }

    fn new_view(&self, device: &wgpu::Device) -> ViewGpu {
        let camera_buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("render/camera"),
            size: size_of::<CameraUniform>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let camera_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("render/camera"),
            layout: &self.camera_layout,
            entries: &[wgpu::BindGroupEntry { binding: 0, resource: camera_buffer.as_entire_binding() }],
        });
        let instance_capacity = 64;
        ViewGpu {
            last_used: self.prepares,
            drawn: None,
            drawn_view: None,
            camera_buffer,
            camera_group,
            instances: instance_buffer(device, instance_capacity),
            instance_capacity,
            planes: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("render/slice planes"),
                size: (MAX_SLICE_PLANES * 6 * size_of::<GpuVertex>()) as u64,
                usage: wgpu::BufferUsages::VERTEX | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            targets: None,
            meshes: None,
        }
    }

    fn new_targets(&self, device: &wgpu::Device, size_px: [u32; 2]) -> Targets {
        let size = wgpu::Extent3d { width: size_px[0], height: size_px[1], depth_or_array_layers: 1 };
        let texture = |label: &str, format, sample_count, usage| {
            device
                .create_texture(&wgpu::TextureDescriptor {
                    label: Some(label),
                    size,
                    mip_level_count: 1,
                    sample_count,
                    dimension: wgpu::TextureDimension::D2,
                    format,
                    usage,
                    view_formats: &[],
                })
                .create_view(&wgpu::TextureViewDescriptor::default())
        };
        let attach = wgpu::TextureUsages::RENDER_ATTACHMENT;
        let msaa_view = texture("render/colour msaa", COLOR_FORMAT, MSAA_SAMPLES, attach);
        let resolve_view =
            texture("render/colour resolved", COLOR_FORMAT, 1, attach | wgpu::TextureUsages::TEXTURE_BINDING);
        let depth_view = texture("render/depth", DEPTH_FORMAT, MSAA_SAMPLES, attach);
        let composite_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("render/composite"),
            layout: &self.composite_layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::TextureView(&resolve_view),
            }],
        });
        Targets { size_px, msaa_view, resolve_view, depth_view, composite_group }
    }
}

/// A buffer of `size` bytes (padded to wgpu's copy alignment) filled, while it is mapped at
/// creation, with `parts` one after another (their lengths add up to `size`).
fn create_buffer_filled<'a>(device: &wgpu::Device, label: &str, size: usize, usage: wgpu::BufferUsages, parts: impl Iterator<Item = &'a [u8]>) -> wgpu::Buffer {
    let align = wgpu::COPY_BUFFER_ALIGNMENT as usize;
    let padded = size.div_ceil(align).max(1) * align;
    let buffer = device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: padded as u64, usage, mapped_at_creation: true });
    match buffer.slice(..).get_mapped_range_mut() {
        Ok(mut view) => {
            let mut at = 0;
            for bytes in parts {
                view.slice(at..at + bytes.len()).copy_from_slice(bytes);
                at += bytes.len();
            }
        }
        Err(e) => log::error!("{label}: could not map the new buffer: {e:?}"),
    }
    buffer.unmap();
    buffer
}

fn create_buffer_with(device: &wgpu::Device, label: &str, contents: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
    use wgpu::util::DeviceExt;
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage })
}

fn instance_buffer(device: &wgpu::Device, capacity: usize) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("render/instances"),
        size: (capacity * size_of::<InstanceData>()) as u64,
        usage: wgpu::BufferUsages::VERTEX | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

impl MeshViewCallback {
    /// Clamped offscreen size; `None` when there is nothing to draw into.
    fn target_size(&self, max_side: u32) -> Option<[u32; 2]> {
        let [w, h] = self.size_px;
        (w > 0 && h > 0).then(|| [w.min(max_side), h.min(max_side)])
    }

    /// The instance array for this frame: meshes, then the marker (x-ray copies, then solid),
    /// then the planes.
    fn instances(&self) -> Vec<InstanceData> {
        let mut out: Vec<InstanceData> = self.draws.iter().map(|d| d.instance).collect();
        if let Some(marker) = &self.marker {
            for dim in [true, false] {
                for color in marker.colors {
                    let alpha = if dim { 0.35 * color[3] } else { color[3] };
                    out.push(InstanceData {
                        color: [color[0], color[1], color[2], alpha],
                        offset_scale: marker.offset_scale,
                        params: [1.0, 0.0, 0.0, 0.0],
                    });
                }
            }
        }
        out.extend(self.planes.iter().take(MAX_SLICE_PLANES).map(|p| InstanceData {
            color: p.color,
            offset_scale: [0.0, 0.0, 0.0, 1.0],
            params: [0.0; 4],
        }));
        out
    }
}

/// Everything a 3D view's frame is drawn from, as bytes: the meshes' generation, the target's
/// size, the camera, each draw's mesh and blend, the instances (colours, transforms, the
/// marker's), whether there is a marker and the slice planes' vertices. Two frames with the same
/// inputs are the same picture.
fn frame_inputs(cb: &MeshViewCallback, size_px: [u32; 2], instances: &[InstanceData], planes: &[GpuVertex]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + instances.len() * std::mem::size_of::<InstanceData>());
    out.extend_from_slice(&cb.meshes.generation.to_le_bytes());
    out.extend_from_slice(bytemuck::cast_slice(&size_px));
    out.extend_from_slice(bytemuck::bytes_of(&cb.camera));
    for d in &cb.draws {
        out.extend_from_slice(&(d.part as u64).to_le_bytes());
        out.push(d.blend as u8);
    }
    out.push(u8::from(cb.marker.is_some()));
    out.extend_from_slice(bytemuck::cast_slice(instances));
    out.extend_from_slice(bytemuck::cast_slice(planes));
    out
}

impl CallbackTrait for MeshViewCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        _screen_descriptor: &ScreenDescriptor,
        egui_encoder: &mut wgpu::CommandEncoder,
        callback_resources: &mut CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        let Some(res) = callback_resources.get_mut::<RenderResources>() else {
            static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                log::error!("3D view: render::init was not called for this renderer; nothing drawn");
            }
            return Vec::new();
        };
        let Some(size_px) = self.target_size(res.max_texture_side) else {
            return Vec::new();
        };
        res.prepares += 1;
        let now = res.prepares;
        res.views.retain(|&key, v| key == self.view_key || now - v.last_used < EVICT_AFTER_PREPARES);
        if !res.views.contains_key(&self.view_key) {
            let view = res.new_view(device);
            res.views.insert(self.view_key, view);
        }
        let needs_targets =
            res.views.get(&self.view_key).is_some_and(|v| v.targets.as_ref().is_none_or(|t| t.size_px != size_px));
        let new_targets = needs_targets.then(|| res.new_targets(device, size_px));
        let Some(view) = res.views.get_mut(&self.view_key) else {
            return Vec::new();
        };
        view.last_used = now;
        if let Some(t) = new_targets {
            view.targets = Some(t);
        }

        // Mesh data: once per generation.
        if view.meshes.as_ref().is_none_or(|m| m.generation != self.meshes.generation) {
            let buffers = (!self.meshes.is_empty()).then(|| {
                // Each mesh is written straight into the mapped buffer: no packed CPU copy of
                // all meshes is ever made.
                let m = &self.meshes;
                let vertices = create_buffer_filled(device, "render/mesh vertices", m.vertex_count * std::mem::size_of::<GpuVertex>(), wgpu::BufferUsages::VERTEX, m.meshes.iter().map(|p| bytemuck::cast_slice(&p.vertices)));
                let indices = create_buffer_filled(device, "render/mesh indices", m.index_count * 4, wgpu::BufferUsages::INDEX, m.meshes.iter().map(|p| bytemuck::cast_slice(&p.indices)));
                (vertices, indices)
            });
            res.mesh_uploads += u64::from(buffers.is_some());
            view.meshes = Some(MeshBuffers { generation: self.meshes.generation, buffers });
        }

        // A frame with the same inputs as the one the targets hold is not drawn again (a
        // repaint for the status bar or a progress bar leaves the 3D view as it is; under a
        // software renderer a frame of a CT's label surfaces costs the cores a click needs).
        let instances = self.instances();
        let plane_vertices: Vec<GpuVertex> =
            self.planes.iter().take(MAX_SLICE_PLANES).flat_map(|p| p.vertices).collect();
        let inputs = frame_inputs(self, size_px, &instances, &plane_vertices);
        let seen_from = (size_px, self.camera.eye);
        if view.targets.is_some() && (view.drawn.as_ref() == Some(&inputs) || (self.hold && view.drawn_view == Some(seen_from))) {
            res.frames_reused += 1;
            return Vec::new();
        }
        view.drawn = Some(inputs);
        view.drawn_view = Some(seen_from);

        // Per-frame values.
        queue.write_buffer(&view.camera_buffer, 0, bytemuck::bytes_of(&self.camera));
        if instances.len() > view.instance_capacity {
            view.instance_capacity = instances.len().next_power_of_two();
            view.instances = instance_buffer(device, view.instance_capacity);
        }
        if !instances.is_empty() {
            queue.write_buffer(&view.instances, 0, bytemuck::cast_slice(&instances));
        }
        if !plane_vertices.is_empty() {
            queue.write_buffer(&view.planes, 0, bytemuck::cast_slice(&plane_vertices));
        }

        let Some(targets) = &view.targets else {
            return Vec::new();
        };
        let mut pass = egui_encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("render/3d view"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &targets.msaa_view,
                depth_slice: None,
                resolve_target: Some(&targets.resolve_view),
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(wgpu::Color::TRANSPARENT),
                    store: wgpu::StoreOp::Discard,
                },
            })],
            depth_stencil_attachment: Some(wgpu::RenderPassDepthStencilAttachment {
                view: &targets.depth_view,
                depth_ops: Some(wgpu::Operations { load: wgpu::LoadOp::Clear(1.0), store: wgpu::StoreOp::Discard }),
                stencil_ops: None,
            }),
            timestamp_writes: None,
            occlusion_query_set: None,
            multiview_mask: None,
        });
        pass.set_bind_group(0, &view.camera_group, &[]);
        pass.set_vertex_buffer(1, view.instances.slice(..));

        // Instance slots: meshes, then the marker's dimmed copies, its solid rods, the planes.
        let marker_dim_base = self.draws.len() as u32;
        let marker_solid_base = marker_dim_base + 3;
        let planes_base = if self.marker.is_some() { marker_dim_base + 6 } else { marker_dim_base };

        let mesh_buffers = view.meshes.as_ref().and_then(|m| m.buffers.as_ref());
        let draw_meshes = |pass: &mut wgpu::RenderPass<'_>, pipeline: &wgpu::RenderPipeline, blend: Blend| {
            let Some((vertices, indices)) = mesh_buffers else { return };
            pass.set_pipeline(pipeline);
            pass.set_vertex_buffer(0, vertices.slice(..));
            pass.set_index_buffer(indices.slice(..), wgpu::IndexFormat::Uint32);
            for (i, draw) in self.draws.iter().enumerate() {
                let Some(part) = self.meshes.parts.get(draw.part) else { continue };
                if draw.blend == blend && part.index_count > 0 {
                    let instance = i as u32;
                    pass.draw_indexed(part.range(), part.base_vertex, instance..instance + 1);
                }
            }
        };
        let draw_marker = |pass: &mut wgpu::RenderPass<'_>, pipeline: &wgpu::RenderPipeline, base: u32| {
            if self.marker.is_none() {
                return;
            }
            pass.set_pipeline(pipeline);
            pass.set_vertex_buffer(0, res.marker_vertices.slice(..));
            pass.set_index_buffer(res.marker_indices.slice(..), wgpu::IndexFormat::Uint32);
            for (k, part) in res.marker_parts.iter().enumerate() {
                let instance = base + k as u32;
                pass.draw_indexed(part.range(), part.base_vertex, instance..instance + 1);
            }
        };

        // 1. Opaque: meshes, then the marker where it is not hidden.
        draw_meshes(&mut pass, &res.opaque, Blend::Opaque);
        draw_marker(&mut pass, &res.opaque, marker_solid_base);
        // 2. Translucent meshes (already sorted back to front): back faces, then front faces.
        draw_meshes(&mut pass, &res.translucent_back, Blend::Translucent);
        draw_meshes(&mut pass, &res.translucent_front, Blend::Translucent);
        // 3. The marker's hidden parts, dimmed, so the crosshair shows through an organ.
        draw_marker(&mut pass, &res.xray, marker_dim_base);
        // 4. Slice planes.
        let n_planes = self.planes.len().min(MAX_SLICE_PLANES) as u32;
        if n_planes > 0 {
            pass.set_pipeline(&res.translucent_both);
            pass.set_vertex_buffer(0, view.planes.slice(..));
            for p in 0..n_planes {
                pass.draw(p * 6..p * 6 + 6, planes_base + p..planes_base + p + 1);
            }
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        render_pass: &mut wgpu::RenderPass<'static>,
        callback_resources: &CallbackResources,
    ) {
        let Some(res) = callback_resources.get::<RenderResources>() else { return };
        let Some(targets) = res.views.get(&self.view_key).and_then(|v| v.targets.as_ref()) else { return };
        render_pass.set_pipeline(&res.composite);
        render_pass.set_bind_group(0, &targets.composite_group, &[]);
        render_pass.draw(0..3, 0..1);
    }
}
