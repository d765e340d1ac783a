//! # sam3d-studio
//!
//! One click on one slice of a CT or MR volume → the organ's 3D shape, with a SAM3D-family
//! model that users fine-tune with LoRA. Layers (each uses only those above it; see DESIGN.md):
//!
//! | module | owns |
//! |---|---|
//! | [`geometry`] | typed points and transforms (RAS mm, voxel ijk, array index, slice, screen), orientation codes, canonical reorientation, view planes |
//! | [`volume`] | `Volume` / `LabelMap`, NIfTI-1/2 read and write, resampling, intensity normalisation and window/level, the label-names `.tsv` beside a label map |
//! | [`shape`] | signed distance fields, marching-cubes meshes (whole masks, or a crop on coarser blocks) and their export, the component of a model's SDF on a source grid, segmentation metrics (whole label maps, or one mask against one label on their box) |
//! | [`data`] | synthetic phantoms (CT-like / MR-like, labelled, odd affines); click preprocessing (slice, pointmap, output cube, the context cube and the decoder's guide cube) and SDF → source-grid mask; training samples with augmentation (drawn per data directory weight, held-out labels removed); dataset preprocessing cache, which training also reads; plain ndarray |
//! | [`baseline`] | classical one-click 3D segmentation (smoothed confidence-connected region growing), no weights; the image refinement of the model's masks (`baseline::refine`); region growing joined to the model's shape where the two agree, or its part near the shape where it leaks (`baseline::join`) |
//! | [`model`] | tch: the SAM3D network (optionally with the image-guided shape decoder), LoRA adapters (files that carry their trained heads), configs (`configs/*.toml`), safetensors checkpoints |
//! | [`engine`] | inference sessions (volume cached, many clicks; the three planes through a click fused, optionally with test views; organs wider than the output cube continued by more passes), the background worker thread, the `serve` JSON-lines protocol of `sam3d-studio-engine`, the training loop and one-click evaluation, the progress lines a child `train` or `eval` writes for the viewer |
//! | [`render`] | the 3D view: wgpu mesh renderer inside egui (offscreen, MSAA, depth), orbit camera, shaders from `shaders/` |
//! | [`app`] | the eframe viewer: linked slice views, window/level, label overlay, loader thread, commands, 3D view (mesher thread), "3D from click" (region growing, or the model via the engine process) with each result measured against the label under the click, start-up `--at`/`--click`, the case browser (an `eval` report's clicks worst first; opening one opens its case and runs its click there), the fine-tuning panel (a LoRA run on the open scan in an engine process of its own, its loss plotted, stopped and resumed, then compared with the base weights on the held-out labels) |
//! | [`cli`] | the command-line subcommands (`main.rs` only hands over) |
//!
//! Nothing under `geometry`, `volume` or `data` knows egui, wgpu or tch; only `model` and
//! `engine` know tch.

pub mod app;
pub mod baseline;
pub mod cli;
pub mod data;
pub mod engine;
pub mod geometry;
pub mod model;
pub mod render;
pub mod shape;
pub mod volume;
