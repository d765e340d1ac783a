//! Data for the model, as plain ndarray (no tch): synthetic phantoms ([`phantom`]), the click
//! preprocessing shared by inference and training ([`click`]), training samples made on the fly
//! with augmentation ([`train_samples`]), a data folder's cases and their reading ([`cases`]:
//! NIfTI, NRRD, MetaImage or DICOM scans with label maps, DICOM SEGs or RT structure sets) and
//! dataset preprocessing into a cache ([`preprocess`]).

pub mod cases;
pub mod family;
pub mod click;
pub mod correction;
pub mod phantom;
pub mod preprocess;
pub mod sam_med3d;
pub mod scenes;
pub mod train_samples;
pub mod zoom;
