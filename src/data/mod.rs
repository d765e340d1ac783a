//! Data: synthetic phantoms, (later) dataset preprocessing, loading and augmentation.
//! No tch here: everything is plain ndarray so tests and tools run without libtorch.

pub mod phantom;
