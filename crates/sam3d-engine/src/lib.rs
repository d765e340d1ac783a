//! # sam3d-engine
//!
//! The part of sam3d-studio that owns libtorch: the model, inference sessions, training and
//! evaluation, and the `sam3d-studio-engine` process that the viewer and the command line
//! drive. The front binary `sam3d-studio` never links this crate (ARCHITECTURE.md).
//!
//! | module | owns |
//! |---|---|
//! | [`model`] | tch: the SAM3D network (optionally with the image-guided shape decoder), the corrector ([`model::corrector`]: the learned step of point corrections), the SAM-Med3D network ([`model::sam_med3d`], state-dict names of the published checkpoints), LoRA adapters (files that carry their trained heads; SAM-Med3D's in `model::sam_med3d::lora`, naming their base `.pth`), model configs (`configs/*.toml`), safetensors checkpoints, PyTorch `.pth` checkpoints read without Python (`model::torchfile`: zip archive, a pickle reader that never calls anything, key/shape checks) |
//! | [`engine`] | inference sessions (volume cached, many clicks; a published SAM-Med3D checkpoint as the model, chosen by the file: [`engine::sam_med3d`]; the three planes through a click fused, optionally with test views; organs wider than the output cube continued by more passes), behind the [`engine::shape_model::ShapeModel`] seam; the background worker thread, the `serve` loop of [`sam3d_core::protocol`], the HTTP server of nnInteractive's remote protocol ([`engine::http`], `serve-http`), the training loops (the project's model in `engine::train`, SAM-Med3D LoRA in `engine::train_sam_med3d`, the corrector in `engine::train_corrector`) and one-click evaluation |
//! | [`cli`] | the model commands (`infer`, `train`, `train-corrector`, `eval`), `serve` and `serve-http`, as `sam3d-studio-engine` runs them |
//!
//! The core modules are re-exported, so `crate::volume` and `sam3d_engine::volume` name the
//! same thing as `sam3d_core::volume`.

pub use sam3d_core::{assets, baseline, commands, data, geometry, options, progress, prompts, protocol, shape, train_config, volume};

pub mod cli;
pub mod engine;
pub mod model;
