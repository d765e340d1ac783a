//! Data: synthetic phantoms, the click preprocessing shared by inference and training
//! ([`click`]), (later) dataset preprocessing, loading and augmentation.
//! No tch here: everything is plain ndarray so tests and tools run without libtorch.

pub mod click;
pub mod phantom;
