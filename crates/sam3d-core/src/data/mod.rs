//! Data for the model, as plain ndarray (no tch): synthetic phantoms ([`phantom`]), the click
//! preprocessing shared by inference and training ([`click`]), training samples made on the fly
//! with augmentation ([`train_samples`]) and dataset preprocessing into a cache ([`preprocess`]).

pub mod click;
pub mod phantom;
pub mod preprocess;
pub mod sam_med3d;
pub mod train_samples;
