//! Data for the model, as plain ndarray (no tch): synthetic phantoms ([`phantom`]) and the click
//! preprocessing shared by inference and training ([`click`]). Dataset preprocessing and
//! loading join here later.

pub mod click;
pub mod phantom;
