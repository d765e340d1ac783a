//! nnInteractive's remote protocol, spoken by `sam3d-studio-engine serve-http` (so 3D Slicer's
//! nnInteractive extension, or any `nninteractive-client`, drives this project's model) and by
//! the viewer's remote engine: [`array`], the packed-array body format (blosc2 chunks), and
//! [`api`], the paths, headers and JSON bodies.

pub mod api;
pub mod array;

pub use array::{Codec, Dtype, NniaArray, NniaError, PackOptions, pack, peek_header, unpack};
