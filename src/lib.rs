//! # sam3d-studio
//!
//! One click on one slice of a CT or MR volume → the organ's 3D shape, with a SAM3D-family
//! model that users fine-tune with LoRA. Layers (each uses only those above it; see ARCHITECTURE.md):
//!
//! | module | owns |
//! |---|---|
//! | [`geometry`] | typed points and transforms (RAS mm, voxel ijk, array index, slice, screen), orientation codes, canonical reorientation, view planes |
//! | [`volume`] | `Volume` / `LabelMap`, and `StoredVolume` (a scan held in the narrowest type that holds its values exactly: int16 for most CTs); [`volume::open`] / [`volume::open_with`] (the one place a path becomes a volume: NIfTI-1/2, NRRD and `.nhdr`, Slicer `.seg.nrrd`, MetaImage, DICOM series with [`volume::dicom`]'s listing and series choice) and [`volume::save_labels`] / [`volume::save_volume`] (the one place one becomes a file: NIfTI, NRRD, `.seg.nrrd`, MetaImage); resampling, intensity normalisation and window/level, label names (a `.tsv` beside a label map, or a segmentation's own) |
//! | [`shape`] | signed distance fields, marching-cubes meshes (whole masks, or a crop on coarser blocks) and their export, the component of a model's SDF on a source grid, segmentation metrics (whole label maps, or one mask against one label on their box) |
//! | [`data`] | synthetic phantoms (CT-like / MR-like, labelled, odd affines), and phantom scenes of lesions, vessels, lungs and bone (`data::scenes`); structure families for reports (`data::family`); the scale that follows the object and its close-up probe (`data::zoom`); click preprocessing (slice, pointmap, output cube, the context cube and the decoder's guide cube) and SDF → source-grid mask; training samples with augmentation (drawn per data directory weight, held-out labels removed); a data folder's cases (`data::cases`: volume/label pairs, DICOM case folders with their SEG or RTSTRUCT) and their reading; dataset preprocessing cache, which training also reads; the corrector's cube, its input channels and the simulated corrections it learns from (`data::correction`); plain ndarray |
//! | [`baseline`] | classical one-click 3D segmentation (smoothed confidence-connected region growing), no weights; the image refinement of the model's masks (`baseline::refine`), which reads the scan smoothed whole once per volume (`baseline::smoothed`); region growing joined to the model's shape where the two agree, or its part near the shape where it leaks (`baseline::join`) |
//! | [`render`] | the 3D view: wgpu mesh renderer inside egui (offscreen, MSAA, depth; a frame with unchanged inputs reuses the last picture, and while a job runs only the camera redraws it), orbit camera, shaders from `shaders/` |
//! | [`app`] | the eframe viewer: linked slice views and their tool seam (`app::tools`), window/level, label overlay, loader thread (which hands the engine a copy of the volume as read), the DICOM series picker, label edits with a capped undo history (`app::edit`), commands, 3D view (mesher thread: surfaces of the shown labels only, held once), "3D from click" (region growing, or the model via the engine process) with each result measured against the label under the click, start-up `--at`/`--click`, a remote engine over HTTP (`app::remote_http`, Model → Connect to engine…: the model on another machine through nnInteractive's protocol), the case browser (an `eval` report's clicks worst first; opening one opens its case and runs its click there), the fine-tuning panel (a LoRA run on the open scan in an engine process of its own, its loss plotted, stopped and resumed, then compared with the base weights on the held-out labels) |
//! | [`cli`] | the command-line subcommands (`main.rs` only hands over) |
//!
//! The first five modules, and the vocabulary the viewer and the engine share (`options`,
//! `protocol`, `commands`, `train_config`, `progress`, `assets`), live in the `sam3d-core`
//! crate and are re-exported here; the model and the engine live in `sam3d-engine`, which this
//! crate does not depend on: the compiler keeps libtorch out of the viewer and the command line
//! (ARCHITECTURE.md).

pub use sam3d_core::{assets, baseline, commands, data, edit as label_edit, geometry, nninteractive, options, progress, prompts, protocol, shape, train_config, utc, volume};

pub mod app;
pub mod cli;
pub mod render;
