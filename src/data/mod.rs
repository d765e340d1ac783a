//! Data for the model, as plain ndarray (no tch): the click preprocessing shared by inference
//! and training ([`click`]). Phantoms, dataset preprocessing and loading join here later.

pub mod click;
