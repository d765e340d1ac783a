//! The protocol between a client (the viewer) and `sam3d-studio-engine serve`: one JSON object
//! per line each way, on the engine's stdin (requests) and stdout (replies). The engine and the
//! client both use these types, so they cannot drift apart.
//!
//! Version [`PROTOCOL_VERSION`] (4). Requests ([`Request`]): `load_weights{path}`,
//! `load_adapter{path}`, `set_volume{path}`,
//! `infer{job,click,plane,options,negative,box,object}`, `cancel{job}`, `shutdown`. An `infer`
//! is one prompt ([`crate::prompts`]): `click` is its point in RAS mm (`null` for a box alone),
//! `negative` (default `false`) makes the point remove instead of add, `box` is a
//! [`BoxPrompt`] (`{a, b, open}`: two RAS corners, `open` the plane a 2D box was drawn on),
//! `object` is the [`ObjectRef`] `{id, after}` of the object it refines — the engine keeps the
//! object's candidate, so only the new prompt is sent; `after` is how many of the object's
//! prompts the client holds (fewer than the engine: undone, and the engine goes back). Without
//! `object` the prompt starts a new object whose id is the job's; the client counts its
//! prompts (the `result` reply is unchanged). `options` is the prompt's
//! [`PipelineOptions`], every field optional. A version-3 request (a click, no prompt fields)
//! reads as a positive click starting a new object, as before.
//!
//! Replies ([`Reply`]): `ready{device,protocol}`, `model_loaded{info}`, `adapter_loaded{info}`,
//! `volume_ready{secs}`, `progress{job,stage,fraction}`, `cancelled{job}`, `failed{job,message}`,
//! and `result{job,crop,mesh_path,timings,voxel_count,ml,adapter}` where
//! - `crop` is a [`CropFile`] or `null` when nothing was segmented: the kept component's
//!   bounding box on the volume's grid — array index `[k, j, i]` of its first voxel and its shape
//!   `[nk, nj, ni]` — and a raw file of `nk·nj·ni` bytes, C order (`i` fastest), 1 inside and 0
//!   outside ([`crate::shape::GridComponent::mask_bytes`]). The client knows the volume's grid
//!   (it sent the path), so it pastes the crop into a full-size mask.
//! - `mesh_path` is the click's surface as the engine meshed it (binary little-endian PLY,
//!   [`crate::shape::export::ply_bytes`], RAS mm, read back by [`crate::shape::read_ply`]), or
//!   `null`.
//! - `adapter` is the LoRA adapter the click ran with, or `null` for the base weights alone.
//!
//! Both files live in a temporary folder of the engine process; the client removes them once
//! read (or dropped), and the engine removes the folder when it stops. End of stdin (or
//! `shutdown`) stops the engine. A line either side cannot read is reported and skipped
//! (`failed{job:null}` from the engine; [`ClientEvent::Unreadable`] in the client); it never
//! ends the session.
//!
//! History: version 1 sent the full-size mask as a `.nii`; version 2 sent the crop, and the
//! pipeline options as five `set_*` requests before each click; version 3 sends them with it;
//! version 4 adds refinement prompts (negative points, boxes, the object a prompt refines).

use crate::baseline::join::JoinOutcome;
use crate::geometry::{RasMm, ViewPlane};
use crate::options::PipelineOptions;
use crate::prompts::{BoxPrompt, ObjectRef, PointPrompt, Polarity, Prompt};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The protocol version of this build (sent in `ready`).
pub const PROTOCOL_VERSION: u32 = 4;

/// A request line (client → engine).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    LoadWeights { path: PathBuf },
    LoadAdapter { path: PathBuf },
    SetVolume { path: PathBuf },
    /// One prompt (a click, by default positive and starting a new object), with the pipeline
    /// it runs through.
    Infer {
        job: u64,
        /// The prompt's point (RAS mm); `None`: a box alone.
        #[serde(default)]
        click: Option<[f64; 3]>,
        plane: ViewPlane,
        #[serde(default)]
        options: PipelineOptions,
        /// The point removes what is under it.
        #[serde(default, skip_serializing_if = "is_false")]
        negative: bool,
        /// A box bounding the object from this prompt on.
        #[serde(default, rename = "box", skip_serializing_if = "Option::is_none")]
        bbox: Option<BoxPrompt>,
        /// The object this prompt refines; `None`: a new one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        object: Option<ObjectRef>,
    },
    /// Cancel this job and every earlier one.
    Cancel { job: u64 },
    Shutdown,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Request {
    /// A click request: a positive click starting a new object.
    pub fn infer(job: u64, click: RasMm, plane: ViewPlane, options: PipelineOptions) -> Self {
        Request::Infer { job, click: Some(click.to_array()), plane, options, negative: false, bbox: None, object: None }
    }

    /// A prompt request: `prompt` refining `object` (`None`: starting a new object).
    pub fn prompt(job: u64, prompt: &Prompt, plane: ViewPlane, options: PipelineOptions, object: Option<ObjectRef>) -> Self {
        Request::Infer {
            job,
            click: prompt.point.map(|p| p.at.to_array()),
            plane,
            options,
            negative: prompt.point.is_some_and(|p| p.polarity == Polarity::Negative),
            bbox: prompt.bbox,
            object,
        }
    }
}

/// The prompt an `infer` request's fields make, checked: an error (naming the field) when it
/// has neither point nor box, a negative without a point, or a non-finite value.
pub fn infer_prompt(click: Option<[f64; 3]>, negative: bool, bbox: Option<BoxPrompt>) -> Result<Prompt, String> {
    if negative && click.is_none() {
        return Err("infer: `negative` needs a `click`".into());
    }
    let point = click.map(|c| PointPrompt { at: RasMm::new(c[0], c[1], c[2]), polarity: if negative { Polarity::Negative } else { Polarity::Positive } });
    let p = Prompt { point, bbox };
    p.check().map_err(|e| format!("infer: {e}"))?;
    Ok(p)
}

/// What a client shows about the loaded model (plain data).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub preset: String,
    pub weights: Option<PathBuf>,
    pub weights_sha256: Option<String>,
    pub adapter: Option<PathBuf>,
    pub adapter_rank: Option<usize>,
    pub adapter_merged: bool,
    pub parameters: usize,
    pub device: String,
    /// The corrector the engine corrects points with (`None`: none; an older engine).
    #[serde(default)]
    pub corrector: Option<PathBuf>,
}

/// How a SAM-Med3D checkpoint's [`ModelInfo::preset`] starts (the engine names the family there).
pub const SAM_MED3D_PRESET: &str = "SAM-Med3D";

impl ModelInfo {
    /// Whether the model is a published SAM-Med3D checkpoint rather than the project's own
    /// network (the viewer hides the own network's pipeline options then).
    pub fn is_sam_med3d(&self) -> bool {
        self.preset.starts_with(SAM_MED3D_PRESET)
    }

    /// `tiny (default.safetensors)`: the preset and the weights' file name.
    pub fn describe(&self) -> String {
        match self.weights.as_deref().and_then(Path::file_name) {
            Some(f) => format!("{} ({})", self.preset, f.to_string_lossy()),
            None => self.preset.clone(),
        }
    }
    /// `mr.safetensors (rank 8)`, or `None` without an adapter.
    pub fn describe_adapter(&self) -> Option<String> {
        let a = self.adapter.as_deref()?;
        let name = a.file_name().map_or_else(|| a.display().to_string(), |n| n.to_string_lossy().into_owned());
        Some(match self.adapter_rank {
            Some(r) => format!("{name} (rank {r})"),
            None => name,
        })
    }
}

/// Stages of one click, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Preprocess,
    Mask2d,
    Shape,
    Postprocess,
    Mesh,
}

impl Stage {
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Preprocess => "preprocess",
            Stage::Mask2d => "mask2d",
            Stage::Shape => "shape",
            Stage::Postprocess => "postprocess",
            Stage::Mesh => "mesh",
        }
    }
    /// Fraction of the job done when this stage starts (for a progress bar).
    pub fn start_fraction(&self) -> f32 {
        match self {
            Stage::Preprocess => 0.0,
            Stage::Mask2d => 0.1,
            Stage::Shape => 0.3,
            Stage::Postprocess => 0.7,
            Stage::Mesh => 0.85,
        }
    }
}

/// Seconds per stage of one click.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub preprocess_secs: f64,
    pub mask2d_secs: f64,
    /// The 3D stage (with plane fusion, also the other planes' slices and 2D masks).
    pub shape_secs: f64,
    /// The refinement, the continuation's click search and its agreement and union, the
    /// join, a correction's learned step, and the cut to the prompts.
    pub postprocess_secs: f64,
    /// `None` when no mesh was made.
    pub mesh_secs: Option<f64>,
    pub total_secs: f64,
    /// Clicks added toward the faces of the output cube an organ reaches (their time is in
    /// the stages above).
    pub extension_passes: usize,
    /// Region growing from the click ([`crate::baseline::join`]; its time is in
    /// `postprocess_secs`): what it did, `None` when it is off or the model found nothing.
    pub join: Option<JoinOutcome>,
    /// The magnification the click's pass saw the scan at ([`crate::data::zoom`]; `--no-zoom`: none);
    /// `None`: as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zoom: Option<f64>,
}

/// Where a result's crop is: a raw file of its mask bytes, its origin and shape on the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CropFile {
    pub path: PathBuf,
    pub origin_kji: [usize; 3],
    pub shape_kji: [usize; 3],
}

fn protocol_1() -> u32 {
    1
}

/// A reply line (engine → client).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    Ready {
        device: String,
        /// Absent from version-1 engines.
        #[serde(default = "protocol_1")]
        protocol: u32,
    },
    ModelLoaded { info: ModelInfo },
    AdapterLoaded { info: ModelInfo },
    VolumeReady { secs: f64 },
    Progress { job: u64, stage: Stage, fraction: f32 },
    /// `crop` and `mesh_path` are `None` when nothing was segmented.
    Result {
        job: u64,
        crop: Option<CropFile>,
        mesh_path: Option<PathBuf>,
        timings: Timings,
        voxel_count: usize,
        ml: f64,
        #[serde(default)]
        adapter: Option<PathBuf>,
    },
    Cancelled { job: u64 },
    Failed { job: Option<u64>, message: String },
}

/// What a client's reader hands on: a reply, a line it could not read (reported, then
/// skipped), or the end of the engine's output.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    Reply(Reply),
    Unreadable(String),
    Exited(String),
}

/// Longest line either side reads (a reply or a request is a few hundred bytes).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// One line as JSON (no newline).
pub fn to_line<T: Serialize>(msg: &T) -> String {
    // These types have string keys and no maps with other keys: serialising cannot fail.
    serde_json::to_string(msg).unwrap_or_else(|e| format!("{{\"event\":\"failed\",\"job\":null,\"message\":\"{e}\"}}"))
}

/// Reads one line: the message, or why it could not be read (the line quoted, shortened).
pub fn from_line<T: for<'de> Deserialize<'de>>(line: &str) -> Result<T, String> {
    if line.len() > MAX_LINE_BYTES {
        return Err(format!("a line of {} bytes (at most {MAX_LINE_BYTES})", line.len()));
    }
    serde_json::from_str(line).map_err(|e| {
        let shown: String = line.chars().take(200).collect();
        let more = if shown.len() < line.len() { "…" } else { "" };
        format!("unreadable line {shown:?}{more}: {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::PlaneFusion;

    #[test]
    fn a_click_with_its_options_reads_back_and_old_or_partial_requests_are_handled() {
        let opts = PipelineOptions { planes: PlaneFusion::Own, join: false, ..Default::default() };
        let r = Request::infer(7, RasMm::new(1.5, -2.0, 3.25), ViewPlane::Coronal, opts.clone());
        let back: Request = from_line(&to_line(&r)).expect("reads");
        assert_eq!(back, r);
        // A client may leave the options out: the shipped pipeline.
        let bare: Request = from_line(r#"{"cmd":"infer","job":1,"click":[0,0,0],"plane":"Axial"}"#).expect("reads");
        assert_eq!(bare, Request::infer(1, RasMm::new(0.0, 0.0, 0.0), ViewPlane::Axial, PipelineOptions::default()));
        // A version-3 click with its options: a positive click starting a new object.
        let v3: Request = from_line(r#"{"cmd":"infer","job":2,"click":[1,2,3],"plane":"Coronal","options":{"join":false}}"#).expect("reads");
        let Request::Infer { click, negative, bbox, object, options, .. } = v3 else { panic!("an infer") };
        assert_eq!((click, negative, bbox, object, options.join), (Some([1.0, 2.0, 3.0]), false, None, None, false));
        assert_eq!(infer_prompt(click, negative, bbox).expect("a prompt"), crate::prompts::Prompt::positive(RasMm::new(1.0, 2.0, 3.0)));
        // A positive click keeps the version-3 line (no new fields written).
        assert_eq!(to_line(&Request::infer(1, RasMm::new(0.0, 0.0, 0.0), ViewPlane::Axial, PipelineOptions::default())).matches("negative").count(), 0);
        // Version 2's separate setters are gone: refused with the line quoted.
        let e = from_line::<Request>(r#"{"cmd":"set_refine","on":false}"#).expect_err("gone");
        assert!(e.contains("set_refine"), "{e}");
        assert!(from_line::<Request>(&"x".repeat(MAX_LINE_BYTES + 1)).expect_err("too long").contains("bytes"));
    }

    #[test]
    fn refinement_prompts_read_back_and_bad_ones_are_refused() {
        use crate::prompts::{BoxPrompt, ObjectRef, Prompt};
        let obj = Some(ObjectRef { id: 9, after: 2 });
        let bx = BoxPrompt::from_corners([-10.0, 5.0, 30.0, 20.0, 40.0, 30.0]).expect("2D box");
        let prompts = [
            Prompt::negative(RasMm::new(4.0, -5.5, 6.0)),
            Prompt::boxed(bx),
            Prompt { point: Some(crate::prompts::PointPrompt { at: RasMm::new(1.0, 2.0, 3.0), polarity: Polarity::Positive }), bbox: Some(bx) },
        ];
        for p in prompts {
            let r = Request::prompt(12, &p, ViewPlane::Sagittal, PipelineOptions::default(), obj);
            let line = to_line(&r);
            let back: Request = from_line(&line).expect("reads");
            assert_eq!(back, r, "{line}");
            let Request::Infer { click, negative, bbox, object, .. } = back else { panic!("an infer") };
            assert_eq!(infer_prompt(click, negative, bbox).expect("a prompt"), p);
            assert_eq!(object, obj);
        }
        // The wire form, as a client in another language writes it.
        let r: Request = from_line(r#"{"cmd":"infer","job":3,"click":null,"plane":"Axial","box":{"a":[0,0,0],"b":[10,10,0],"open":"Axial"},"object":{"id":1,"after":1}}"#).expect("reads");
        let Request::Infer { click, negative, bbox, .. } = r else { panic!("an infer") };
        assert_eq!(infer_prompt(click, negative, bbox).expect("a box").bbox.and_then(|b| b.open), Some(ViewPlane::Axial));
        assert!(infer_prompt(None, false, None).expect_err("empty").contains("point or a box"));
        assert!(infer_prompt(None, true, None).expect_err("negative without a point").contains("negative"));
        assert!(from_line::<Request>(r#"{"cmd":"infer","job":3,"click":[0,0,0],"plane":"Axial","object":{"id":1}}"#).is_err(), "an object without its step");
        assert!(from_line::<Request>(r#"{"cmd":"infer","job":3,"click":[0,0,0],"plane":"Axial","negativ":true}"#).expect_err("a typo").contains("negativ"));
    }

    #[test]
    fn every_reply_reads_back() {
        let info = ModelInfo { preset: "tiny".into(), weights: Some("/w/default.safetensors".into()), adapter: Some("/a/mr.safetensors".into()), adapter_rank: Some(8), ..Default::default() };
        assert_eq!(info.describe(), "tiny (default.safetensors)");
        assert_eq!(info.describe_adapter().as_deref(), Some("mr.safetensors (rank 8)"));
        let replies = [
            Reply::Ready { device: "cpu".into(), protocol: PROTOCOL_VERSION },
            Reply::ModelLoaded { info: info.clone() },
            Reply::Progress { job: 3, stage: Stage::Shape, fraction: 0.3 },
            Reply::Result {
                job: 3,
                crop: Some(CropFile { path: "/t/job-3.mask".into(), origin_kji: [1, 2, 3], shape_kji: [4, 5, 6] }),
                mesh_path: None,
                timings: Timings { join: Some(JoinOutcome::JoinedNear), total_secs: 0.5, ..Default::default() },
                voxel_count: 120,
                ml: 1.25,
                adapter: None,
            },
            Reply::Failed { job: None, message: "x".into() },
        ];
        for r in replies {
            assert_eq!(from_line::<Reply>(&to_line(&r)).expect("reads"), r);
        }
        // Version 1's `ready` had no protocol field.
        assert_eq!(from_line::<Reply>(r#"{"event":"ready","device":"cpu"}"#).expect("v1"), Reply::Ready { device: "cpu".into(), protocol: 1 });
    }
}
