//! # sam3d-core
//!
//! Everything of sam3d-studio that needs neither libtorch nor a window: coordinates, volumes and
//! their file formats, shapes and metrics, data, the classical baseline, and the vocabulary the
//! viewer, the command line and the engine share. The compiler keeps it so: this crate does not
//! depend on tch, egui or wgpu (ARCHITECTURE.md). Layers (each uses only those above it):
//!
//! | module | owns |
//! |---|---|
//! | [`geometry`] | typed points and transforms (RAS mm, voxel ijk, array index, slice, screen), orientation codes, canonical reorientation, view planes |
//! | [`volume`] | `Volume` / `LabelMap`; [`volume::open`] / [`volume::open_with`] (the one place a path becomes a volume: NIfTI-1/2, NRRD and `.nhdr`, Slicer `.seg.nrrd`, MetaImage, DICOM series with [`volume::dicom`]'s listing and series choice) and [`volume::save_labels`] / [`volume::save_volume`] (the one place one becomes a file: NIfTI, NRRD, `.seg.nrrd`, MetaImage); resampling, intensity normalisation and window/level, label names (a `.tsv` beside a label map, or a segmentation's own) |
//! | [`shape`] | signed distance fields, connected components and flood fills, marching-cubes meshes (whole masks, or a crop on coarser blocks) and their export, the component of a model's SDF on a source grid, segmentation metrics |
//! | [`data`] | synthetic phantoms and phantom scenes (lesions, vessels, lungs, bone); structure families; the scale that follows the object (zoom); click preprocessing (slice, pointmap, output cube, context and guide cubes) and SDF → source-grid mask; training samples with augmentation; a data folder's cases (volume/label pairs, DICOM case folders with their SEG or RTSTRUCT) and their reading; the dataset preprocessing cache; plain ndarray |
//! | [`edit`] | edits of a label map (what changed, to undo and redo), the overwrite rule every edit follows, and the edit tools: brush strokes (disc or sphere in mm, threshold paint), 2D region and 3D hole fills, islands |
//! | [`baseline`] | classical one-click 3D segmentation (region growing), the image refinement of the model's masks, region growing joined to the model's shape |
//! | [`prompts`] | refinement prompts (positive and negative points, a box, the object they refine) and the simulated user's next correction |
//! | [`options`] | the pipeline options of one click (refine, extend, planes, views, join, MR adapter): one value for `infer`, `eval`, the viewer and the engine |
//! | [`nninteractive`] | nnInteractive's remote protocol (packed blosc2 arrays, the HTTP API's paths and bodies), spoken by the engine's HTTP server and the viewer's remote engine |
//! | [`protocol`] | the JSON-lines protocol between a client (the viewer) and `sam3d-studio-engine serve` |
//! | [`commands`] | the arguments of the model commands (`infer`, `train`, `eval`), parsed by the front binary and run by the engine |
//! | [`train_config`] | the training config (TOML) the engine trains from and the fine-tuning panel writes |
//! | [`progress`] | progress of long work: a terminal bar with ETA, and the lines a child job writes for the viewer |
//! | [`assets`] | where the shipped weights, adapter and demo data are found |
//! | [`utc`] | the calendar date and time of a moment (run folder names, DICOM dates) |

pub mod assets;
pub mod baseline;
pub mod commands;
pub mod data;
pub mod edit;
pub mod geometry;
pub mod nninteractive;
pub mod options;
pub mod progress;
pub mod prompts;
pub mod protocol;
pub mod shape;
pub mod train_config;
pub mod utc;
pub mod volume;
