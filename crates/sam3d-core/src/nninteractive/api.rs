//! The HTTP API of nnInteractive's remote inference (what `nninteractive-client` 2.6 sends and
//! reads): paths, headers and JSON bodies, shared by `sam3d-studio-engine serve-http` and the
//! viewer's remote engine. Requests are read leniently (unknown fields are ignored, as a newer
//! client may send more); the fields marked *extension* are this project's own and optional, so
//! the real client never needs them.

use crate::geometry::ViewPlane;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// JSON metadata beside a binary body (request and reply).
pub const META_HEADER: &str = "X-Meta";
/// The lease token a claim returns, on every later request.
pub const LEASE_HEADER: &str = "X-Lease-Token";
/// The body type of a packed array.
pub const OCTET_STREAM: &str = "application/octet-stream";

pub const PATH_HEALTHZ: &str = "/healthz";
pub const PATH_CAPABILITIES: &str = "/capabilities";
pub const PATH_CLAIM: &str = "/claim";
pub const PATH_RELEASE: &str = "/release";
pub const PATH_HEARTBEAT: &str = "/heartbeat";
pub const PATH_LEASE_STATUS: &str = "/lease_status";
pub const PATH_SET_IMAGE: &str = "/set_image";
pub const PATH_SET_TARGET_BUFFER: &str = "/set_target_buffer";
pub const PATH_RESET_INTERACTIONS: &str = "/reset_interactions";
pub const PATH_UNDO: &str = "/undo";
pub const PATH_PREDICT: &str = "/predict";
pub const PATH_SET_DO_AUTOZOOM: &str = "/set_do_autozoom";
pub const PATH_ADD_BBOX: &str = "/add_bbox_interaction";
pub const PATH_ADD_POINT: &str = "/add_point_interaction";
pub const PATH_ADD_SCRIBBLE: &str = "/add_scribble_interaction";
pub const PATH_ADD_LASSO: &str = "/add_lasso_interaction";
pub const PATH_ADD_INITIAL_SEG: &str = "/add_initial_seg_interaction";

/// `POST /claim`'s reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimReply {
    pub lease_token: String,
    pub idle_timeout_seconds: f64,
    pub liveness_timeout_seconds: f64,
    pub max_sessions: usize,
}

/// `GET /capabilities`' reply: what the server's model takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// `points`, `bbox2d`, `bbox3d`, `scribble`, `lasso` → supported.
    pub supported_interactions: BTreeMap<String, bool>,
    /// nnInteractive's input channels per interaction (informative here: this model takes
    /// prompts, not channels; the client only reads it back).
    pub channel_mapping: BTreeMap<String, serde_json::Value>,
    pub num_interaction_channels: usize,
    pub supports_initial_label: bool,
    pub supports_zero_shot_label_refinement: bool,
    pub preferred_scribble_thickness: Option<Vec<f64>>,
    pub interaction_decay: Option<f64>,
    pub patch_size: Option<Vec<usize>>,
    pub do_autozoom: bool,
    pub inference_session_version: String,
    pub license: Option<String>,
    pub supports_undo: bool,
    /// *Extension*: the server program and its model (preset, device, weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerInfo>,
}

/// *Extension* of [`Capabilities`]: what serves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// `sam3d-studio-engine 0.1.0`.
    pub program: String,
    pub preset: String,
    pub device: String,
    pub weights: String,
    /// Negative boxes (`include_interaction: false`) are refused with 400.
    pub negative_boxes: bool,
}

/// `POST /heartbeat` and `GET /lease_status` replies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseStatus {
    pub remaining_seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<f64>,
}

/// `X-Meta` of `POST /set_image` (the body is a packed `[c, a0, a1, a2]` array).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SetImageMeta {
    #[serde(default)]
    pub image_properties: ImageProperties,
}

/// What the client says of the image's geometry. The array `[c, a0, a1, a2]` is read as the
/// grid's `[k, j, i]` (the order of SimpleITK's `GetArrayFromImage` and Slicer's
/// `arrayFromVolume`), so a voxel coordinate `[a0, a1, a2]` is `(k, j, i)`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageProperties {
    /// Spacing in mm along `a0, a1, a2` (nnU-Net's order: the array's). Absent: 1 mm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spacing: Option<Vec<f64>>,
    /// *Extension*: voxel `(i, j, k)` → RAS mm, row-major 4×4 (overrides `spacing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affine: Option<[[f64; 4]; 4]>,
    /// *Extension*: `ct` or `mr` (absent: decided from the intensities).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modality: Option<String>,
}

/// `POST /set_image`'s reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetImageReply {
    pub original_image_shape: Vec<usize>,
}

/// `POST /set_target_buffer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetBufferRequest {
    pub shape: Vec<serde_json::Value>,
    pub dtype: String,
}

fn yes() -> bool {
    true
}

/// `POST /add_point_interaction`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointRequest {
    /// `[a0, a1, a2]` voxel indices of the uploaded array.
    pub coordinates: Vec<f64>,
    pub include_interaction: bool,
    #[serde(default = "yes")]
    pub run_prediction: bool,
    #[serde(default)]
    pub override_capability_checks: bool,
    /// *Extension*: the view the point was clicked in (absent: axial).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plane: Option<ViewPlane>,
}

/// `POST /add_bbox_interaction`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BboxRequest {
    /// `[[lo, hi], …]` per array axis, half-open; a 2D box has extent 1 along one axis.
    pub bbox_coords: Vec<Vec<f64>>,
    pub include_interaction: bool,
    #[serde(default = "yes")]
    pub run_prediction: bool,
    #[serde(default)]
    pub override_capability_checks: bool,
}

/// `X-Meta` of `POST /add_initial_seg_interaction` (the body is a packed 3D array).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InitialSegMeta {
    #[serde(default)]
    pub run_prediction: bool,
    #[serde(default)]
    pub override_capability_checks: bool,
}

/// `POST /predict`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PredictRequest {
    #[serde(default)]
    pub force_full_refine: bool,
}

/// `POST /set_do_autozoom`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutozoomRequest {
    pub do_autozoom: bool,
}

/// `X-Meta` of a prediction's reply: the body holds the target buffer inside `bbox` (packed),
/// or nothing when `bbox` is `None`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PredictionMeta {
    pub ran_prediction: bool,
    /// `[[lo, hi]; 3]` per array axis, clipped to the buffer.
    pub bbox: Option<[[usize; 2]; 3]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Vec<usize>>,
    /// *Extension*: the object's voxels and the model's time for this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voxel_count: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secs: Option<f64>,
}

/// An error reply's body (FastAPI's shape, which the client reads).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub detail: String,
}
