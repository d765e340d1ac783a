//! The endpoints of nnInteractive's remote protocol (`sam3d_core::nninteractive::api`), what
//! each does with a client's session, and the reaper.

use super::image::{box_prompt, point_prompt, volume_of};
use super::sessions::{Lease, LeaseError, LeaseState};
use super::target::{Box3, TargetBuffer};
use super::worker::{ModelWorker, WorkerError};
use super::{ApiError, AppState, HttpOptions, authorize};
use crate::engine::InferRequest;
use crate::geometry::ViewPlane;
use crate::prompts::Prompt;
use crate::volume::OnGrid;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sam3d_core::nninteractive::api::*;
use sam3d_core::nninteractive::{Dtype, PackOptions, pack, unpack};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::Arc;

type St = State<Arc<AppState>>;

/// The state every request shares, with the capabilities the model really has.
pub fn app_state(options: HttpOptions, worker: ModelWorker) -> AppState {
    let info = worker.info().clone();
    let supported = BTreeMap::from([("points", true), ("bbox2d", true), ("bbox3d", true), ("scribble", false), ("lasso", false)].map(|(k, v)| (k.to_string(), v)));
    let channels = BTreeMap::from([
        ("prev_seg".to_string(), serde_json::json!(0)),
        ("points".to_string(), serde_json::json!([1, 2])),
        ("bbox2d".to_string(), serde_json::json!([3, 4])),
        ("bbox3d".to_string(), serde_json::json!([3, 4])),
    ]);
    let capabilities = Capabilities {
        supported_interactions: supported,
        channel_mapping: channels,
        num_interaction_channels: 5,
        supports_initial_label: true,
        supports_zero_shot_label_refinement: false,
        preferred_scribble_thickness: None,
        interaction_decay: None,
        patch_size: None,
        do_autozoom: true,
        inference_session_version: format!("sam3d-studio-engine {}", env!("CARGO_PKG_VERSION")),
        license: Some("Apache-2.0".into()),
        supports_undo: true,
        server: Some(ServerInfo {
            program: format!("sam3d-studio-engine {}", env!("CARGO_PKG_VERSION")),
            preset: info.preset.clone(),
            device: info.device.clone(),
            weights: info.weights.as_ref().and_then(|w| w.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            negative_boxes: false,
        }),
    };
    let registry = super::sessions::Registry::new(options.max_sessions, options.idle_timeout, options.liveness_timeout);
    AppState { options, registry, worker, capabilities }
}

/// Every endpoint.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(PATH_HEALTHZ, get(healthz))
        .route(PATH_CAPABILITIES, get(capabilities))
        .route(PATH_CLAIM, post(claim))
        .route(PATH_RELEASE, post(release))
        .route(PATH_HEARTBEAT, post(heartbeat))
        .route(PATH_LEASE_STATUS, get(lease_status))
        .route(PATH_SET_IMAGE, post(set_image))
        .route(PATH_SET_TARGET_BUFFER, post(set_target_buffer))
        .route(PATH_SET_DO_AUTOZOOM, post(set_do_autozoom))
        .route(PATH_RESET_INTERACTIONS, post(reset_interactions))
        .route(PATH_UNDO, post(undo))
        .route(PATH_PREDICT, post(predict))
        .route(PATH_ADD_POINT, post(add_point))
        .route(PATH_ADD_BBOX, post(add_bbox))
        .route(PATH_ADD_INITIAL_SEG, post(add_initial_seg))
        .route(PATH_ADD_SCRIBBLE, post(unsupported))
        .route(PATH_ADD_LASSO, post(unsupported))
        .fallback(no_such_endpoint)
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// Reaps idle and dead sessions every sweep interval.
pub async fn reap_forever(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.options.sweep_interval);
    loop {
        tick.tick().await;
        for (lease, why) in state.registry.sweep() {
            log::info!("reaped a {why} session (client {}); {}/{} active", lease.client, state.registry.len(), state.registry.max_sessions);
            state.worker.forget(lease.client);
        }
    }
}

fn json_reply<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(b) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], b).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn reply<T: Serialize>(r: Result<T, ApiError>) -> Response {
    match r {
        Ok(v) => json_reply(&v),
        Err(e) => e.into_response(),
    }
}

/// The session of the request's lease token (410 when it has none or an unknown one).
fn lease_of(state: &AppState, headers: &HeaderMap, active: bool) -> Result<Arc<Lease>, ApiError> {
    let token = headers.get(LEASE_HEADER).and_then(|v| v.to_str().ok());
    let lease = state.registry.get(token).map_err(|e| match e {
        LeaseError::Missing => ApiError::new(StatusCode::GONE, format!("lease token missing: claim a session ({PATH_CLAIM}) and send its token in {LEASE_HEADER}")),
        _ => ApiError::new(StatusCode::GONE, "lease expired or unknown"),
    })?;
    if active {
        lease.mark_active();
    }
    Ok(lease)
}

/// The body, at most `limit` bytes, within the body deadline.
async fn read_body(state: &AppState, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(state.options.body_timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, format!("the body did not arrive within {} s", state.options.body_timeout.as_secs()))),
        Ok(Err(e)) => {
            let too_big = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) || e.to_string().contains("length limit");
            if too_big {
                Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than the {limit} bytes allowed")))
            } else {
                Err(ApiError::bad(format!("the body could not be read: {e}")))
            }
        }
        Ok(Ok(b)) => Ok(b),
    }
}

/// A JSON body (1 MiB at most).
async fn json_body<T: DeserializeOwned>(state: &AppState, body: Body, path: &str) -> Result<T, ApiError> {
    let bytes = read_body(state, body, 1 << 20).await?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
    serde_json::from_slice(bytes).map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{path}: the JSON body: {e}")))
}

/// The `X-Meta` header as JSON (absent: `{}`).
fn meta<T: DeserializeOwned>(headers: &HeaderMap, path: &str) -> Result<T, ApiError> {
    let raw = match headers.get(META_HEADER) {
        None => "{}",
        Some(v) => v.to_str().map_err(|_| ApiError::bad(format!("{path}: {META_HEADER} is not text")))?,
    };
    serde_json::from_str(raw).map_err(|e| ApiError::bad(format!("{path}: bad {META_HEADER}: {e}")))
}

/// Runs `f` on a blocking thread (decompression, preparation, the model); a panic is a 500.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => {
            log::error!("a request panicked: {e}");
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error while serving the request"))
        }
    }
}

fn worker_error(e: WorkerError) -> ApiError {
    match e {
        WorkerError::Request(m) => ApiError::bad(m),
        WorkerError::Internal(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m),
    }
}

async fn healthz() -> Response {
    json_reply(&serde_json::json!({ "ok": true }))
}

async fn capabilities(State(st): St, headers: HeaderMap) -> Response {
    reply(authorize(&st, &headers).map(|_| st.capabilities.clone()))
}

async fn claim(State(st): St, headers: HeaderMap) -> Response {
    reply(authorize(&st, &headers).and_then(|_| {
        let (token, lease) = st.registry.claim().map_err(|_| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            detail: format!("server is at capacity ({} sessions)", st.registry.max_sessions),
            retry_after: Some(10),
        })?;
        lease.mark_active();
        log::info!("claimed a session (client {}); {}/{} active", lease.client, st.registry.len(), st.registry.max_sessions);
        Ok(ClaimReply {
            lease_token: token,
            idle_timeout_seconds: st.options.idle_timeout.as_secs_f64(),
            liveness_timeout_seconds: st.options.liveness_timeout.as_secs_f64(),
            max_sessions: st.registry.max_sessions,
        })
    }))
}

async fn release(State(st): St, headers: HeaderMap) -> Response {
    reply(authorize(&st, &headers).map(|_| {
        if let Some(lease) = st.registry.release(headers.get(LEASE_HEADER).and_then(|v| v.to_str().ok())) {
            st.worker.forget(lease.client);
        }
        serde_json::json!({ "released": true })
    }))
}

async fn heartbeat(State(st): St, headers: HeaderMap) -> Response {
    reply(authorize(&st, &headers).and_then(|_| lease_of(&st, &headers, false)).map(|l| LeaseStatus { remaining_seconds: st.registry.remaining(&l), idle_timeout_seconds: None }))
}

async fn lease_status(State(st): St, headers: HeaderMap) -> Response {
    let r = authorize(&st, &headers).and_then(|_| {
        let l = st.registry.peek(headers.get(LEASE_HEADER).and_then(|v| v.to_str().ok())).map_err(|_| ApiError::new(StatusCode::GONE, "lease expired or unknown"))?;
        Ok(LeaseStatus { remaining_seconds: st.registry.remaining(&l), idle_timeout_seconds: Some(st.options.idle_timeout.as_secs_f64()) })
    });
    reply(r)
}

async fn set_image(State(st): St, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        authorize(&st, &headers)?;
        let lease = lease_of(&st, &headers, true)?;
        let m: SetImageMeta = meta(&headers, PATH_SET_IMAGE)?;
        let bytes = read_body(&st, body, st.options.max_body_bytes).await?;
        let st2 = st.clone();
        blocking(move || {
            let array = unpack(&bytes, st2.options.max_array_bytes).map_err(|e| ApiError::bad(format!("{PATH_SET_IMAGE}: the image: {e}")))?;
            drop(bytes);
            let (volume, modality) = volume_of(&array, &m.image_properties).map_err(|e| ApiError::bad(format!("{PATH_SET_IMAGE}: {e}")))?;
            let shape = array.shape.clone();
            drop(array);
            let mut state = lease.lock();
            let volume = Arc::new(volume);
            st2.worker.set_image(lease.client, volume.clone(), modality).map_err(worker_error)?;
            *state = LeaseState { image: Some(volume), do_autozoom: state.do_autozoom, ..Default::default() };
            Ok(SetImageReply { original_image_shape: shape })
        })
        .await
    };
    reply(r.await)
}

async fn set_target_buffer(State(st): St, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        authorize(&st, &headers)?;
        let lease = lease_of(&st, &headers, true)?;
        let req: TargetBufferRequest = json_body(&st, body, PATH_SET_TARGET_BUFFER).await?;
        let shape: Vec<usize> = req.shape.iter().map(|d| d.as_u64().filter(|&d| d > 0).map(|d| d as usize)).collect::<Option<_>>().filter(|s: &Vec<usize>| s.len() == 3).ok_or_else(|| ApiError::bad(format!("shape must be three positive integers, got {:?}", req.shape)))?;
        let dtype = Dtype::from_name(&req.dtype).filter(|d| d.is_integral()).ok_or_else(|| ApiError::bad(format!("unsupported dtype {:?}: the target buffer must be bool or an integer type", req.dtype)))?;
        let bytes = shape.iter().fold(1u128, |a, &d| a.saturating_mul(d as u128));
        if bytes > st.options.max_array_bytes as u128 {
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("a target buffer of shape {shape:?} needs {bytes} bytes, the limit is {}", st.options.max_array_bytes)));
        }
        let shape = [shape[0], shape[1], shape[2]];
        blocking(move || {
            let mut state = lease.lock();
            check_buffer_shape(&state, shape)?;
            state.buffer = Some(TargetBuffer::new(shape, dtype));
            new_object(&mut state);
            Ok(serde_json::json!({}))
        })
        .await
    };
    reply(r.await)
}

/// The buffer must cover the image voxel for voxel.
fn check_buffer_shape(state: &LeaseState, shape: [usize; 3]) -> Result<(), ApiError> {
    if let Some(img) = &state.image {
        let want = img.shape().array_shape();
        if want != shape {
            return Err(ApiError::bad(format!("the target buffer's shape {shape:?} is not the image's {want:?}")));
        }
    }
    Ok(())
}

/// Forgets the object: the next prompt starts a new one.
fn new_object(state: &mut LeaseState) {
    state.object = None;
    state.pending.clear();
    state.history.clear();
}

async fn set_do_autozoom(State(st): St, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        authorize(&st, &headers)?;
        let lease = lease_of(&st, &headers, true)?;
        let req: AutozoomRequest = json_body(&st, body, PATH_SET_DO_AUTOZOOM).await?;
        // On (the default, as the capabilities say): the scale follows the object; off: this
        // client's prompts run at the model's own scale (no zoom, no close-up probe).
        lease.lock().do_autozoom = req.do_autozoom;
        Ok(serde_json::json!({}))
    };
    reply(r.await)
}

async fn reset_interactions(State(st): St, headers: HeaderMap) -> Response {
    let r = async {
        authorize(&st, &headers)?;
        let lease = lease_of(&st, &headers, true)?;
        blocking(move || {
            let mut state = lease.lock();
            if let Some(b) = state.buffer.as_mut() {
                b.clear();
            }
            new_object(&mut state);
            Ok(serde_json::json!({}))
        })
        .await
    };
    reply(r.await)
}

/// A prediction's reply: the buffer inside the changed box, packed, and `X-Meta`.
fn prediction_reply(buffer: Option<&TargetBuffer>, changed: Option<Box3>, ran: bool, voxel_count: Option<usize>, secs: Option<f64>) -> Result<Response, ApiError> {
    let mut m = PredictionMeta { ran_prediction: ran, voxel_count, secs, ..Default::default() };
    let mut body = Vec::new();
    if let (Some(b), Some(bbox), true) = (buffer, changed, ran) {
        let region = b.region(&bbox);
        let shape = region.shape().to_vec();
        let data = region.into_raw_vec_and_offset().0;
        body = pack(&data, &shape, PackOptions::default()).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        m.bbox = Some(bbox);
        m.dtype = Some(Dtype::U8.name().into());
        m.shape = Some(shape);
    }
    let meta = serde_json::to_string(&m).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let meta = HeaderValue::from_str(&meta).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM)), (axum::http::HeaderName::from_static("x-meta"), meta)], body).into_response())
}

/// Runs `prompts` on the client's object, in order, then puts its candidate in the buffer.
/// On an error the object stays as it was before them.
fn run_prompts(st: &AppState, lease: &Lease, state: &mut LeaseState, prompts: Vec<(Prompt, ViewPlane)>) -> Result<Response, ApiError> {
    if state.image.is_none() {
        return Err(ApiError::bad(format!("no image: send one first ({PATH_SET_IMAGE})")));
    }
    if state.buffer.is_none() {
        return Err(ApiError::bad(format!("no target buffer: set one first ({PATH_SET_TARGET_BUFFER})")));
    }
    let before = state.object;
    let mut last = None;
    let mut secs = 0.0;
    for (prompt, plane) in prompts {
        let req = InferRequest { prompt, plane, mask2d: None, object: state.object };
        match st.worker.prompt(lease.client, req, state.do_autozoom) {
            Ok(out) => {
                secs += out.secs;
                state.object = Some(out.object);
                last = Some(out);
            }
            Err(e) => {
                state.object = before;
                return Err(worker_error(e));
            }
        }
    }
    let Some(out) = last else { return prediction_reply(None, None, false, None, None) };
    let Some(buffer) = state.buffer.as_mut() else { return Err(ApiError::bad("no target buffer")) };
    let change = buffer.set_candidate(out.candidate.as_ref());
    let bbox = change.as_ref().map(|c| c.bbox);
    state.history.push((change, before));
    let voxels = out.candidate.as_ref().map_or(0, |c| c.voxel_count);
    prediction_reply(state.buffer.as_ref(), bbox, true, Some(voxels), Some(secs))
}

/// Adds a prompt: runs it (with any queued before it) or queues it. The caller has checked the
/// key.
async fn add_prompt(st: Arc<AppState>, headers: HeaderMap, run: bool, make: impl FnOnce(&LeaseState) -> Result<(Prompt, ViewPlane), ApiError> + Send + 'static) -> Result<Response, ApiError> {
    let lease = lease_of(&st, &headers, true)?;
    blocking(move || {
        let mut state = lease.lock();
        let prompt = make(&state)?;
        state.pending.push(prompt);
        if !run {
            return prediction_reply(None, None, false, None, None);
        }
        let prompts = std::mem::take(&mut state.pending);
        run_prompts(&st, &lease, &mut state, prompts)
    })
    .await
}

fn image_of(state: &LeaseState) -> Result<&crate::volume::Volume, ApiError> {
    state.image.as_deref().ok_or_else(|| ApiError::bad(format!("no image: send one first ({PATH_SET_IMAGE})")))
}

async fn add_point(State(st): St, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        authorize(&st, &headers)?;
        let req: PointRequest = json_body(&st, body, PATH_ADD_POINT).await?;
        let run = req.run_prediction;
        add_prompt(st, headers, run, move |state| {
            let p = point_prompt(&req.coordinates, req.include_interaction, image_of(state)?).map_err(ApiError::bad)?;
            Ok((p, req.plane.unwrap_or(ViewPlane::Axial)))
        })
        .await
    };
    r.await.unwrap_or_else(IntoResponse::into_response)
}

async fn add_bbox(State(st): St, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        authorize(&st, &headers)?;
        let req: BboxRequest = json_body(&st, body, PATH_ADD_BBOX).await?;
        if !req.include_interaction {
            return Err(ApiError::bad("negative boxes (include_interaction: false) are not supported by this model: use negative points"));
        }
        let run = req.run_prediction;
        add_prompt(st, headers, run, move |state| {
            let (b, plane) = box_prompt(&req.bbox_coords, image_of(state)?).map_err(ApiError::bad)?;
            Ok((Prompt::boxed(b), plane.unwrap_or(ViewPlane::Axial)))
        })
        .await
    };
    r.await.unwrap_or_else(IntoResponse::into_response)
}

async fn predict(State(st): St, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        authorize(&st, &headers)?;
        let _: PredictRequest = json_body(&st, body, PATH_PREDICT).await?;
        let lease = lease_of(&st, &headers, true)?;
        blocking(move || {
            let mut state = lease.lock();
            let prompts = std::mem::take(&mut state.pending);
            if prompts.is_empty() {
                return prediction_reply(None, None, false, None, None);
            }
            run_prompts(&st, &lease, &mut state, prompts)
        })
        .await
    };
    r.await.unwrap_or_else(IntoResponse::into_response)
}

async fn undo(State(st): St, headers: HeaderMap) -> Response {
    let r = async {
        authorize(&st, &headers)?;
        let lease = lease_of(&st, &headers, true)?;
        blocking(move || {
            let mut state = lease.lock();
            let Some((change, object)) = state.history.pop() else { return prediction_reply(None, None, false, None, None) };
            state.pending.clear();
            state.object = object;
            // An interaction that changed nothing is undone too, with nothing to send.
            let (Some(buffer), Some(change)) = (state.buffer.as_mut(), change) else { return prediction_reply(None, None, true, None, None) };
            let bbox = buffer.restore(change);
            prediction_reply(state.buffer.as_ref(), Some(bbox), true, None, None)
        })
        .await
    };
    r.await.unwrap_or_else(IntoResponse::into_response)
}

async fn add_initial_seg(State(st): St, headers: HeaderMap, body: Body) -> Response {
    let r = async {
        authorize(&st, &headers)?;
        let lease = lease_of(&st, &headers, true)?;
        let _m: InitialSegMeta = meta(&headers, PATH_ADD_INITIAL_SEG)?;
        let bytes = read_body(&st, body, st.options.max_body_bytes).await?;
        let st2 = st.clone();
        blocking(move || {
            let array = unpack(&bytes, st2.options.max_array_bytes).map_err(|e| ApiError::bad(format!("{PATH_ADD_INITIAL_SEG}: the segmentation: {e}")))?;
            let mut state = lease.lock();
            let shape = state.buffer.as_ref().map(TargetBuffer::shape).ok_or_else(|| ApiError::bad(format!("no target buffer: set one first ({PATH_SET_TARGET_BUFFER})")))?;
            if array.shape != shape {
                return Err(ApiError::bad(format!("the segmentation's shape {:?} is not the target buffer's {shape:?}", array.shape)));
            }
            let mask = ndarray::Array3::from_shape_vec(shape, array.to_mask()).map_err(|e| ApiError::bad(e.to_string()))?;
            let component = crate::baseline::prompted::crop_component(&mask, [0, 0, 0]);
            let object = st2.worker.start_object(lease.client, component).map_err(worker_error)?;
            let before = state.object;
            state.pending.clear();
            state.object = Some(object);
            let buffer = state.buffer.as_mut().ok_or_else(|| ApiError::bad("no target buffer"))?;
            let change = buffer.set_all(&mask.mapv(u8::from));
            state.history.push((change, before));
            // The client writes the segmentation into its own buffer; nothing is sent back.
            // There is no prediction from a label alone (zero-shot refinement is not supported).
            prediction_reply(None, None, false, None, None)
        })
        .await
    };
    r.await.unwrap_or_else(IntoResponse::into_response)
}

async fn unsupported(State(st): St, headers: HeaderMap, uri: Uri) -> Response {
    let r: Result<Response, ApiError> = authorize(&st, &headers).and_then(|_| {
        let kind = uri.path().trim_start_matches("/add_").trim_end_matches("_interaction").to_string();
        Err(ApiError::bad(format!("{kind} interactions are not supported by this model (see {PATH_CAPABILITIES})")))
    });
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn no_such_endpoint(uri: Uri) -> Response {
    ApiError::new(StatusCode::NOT_FOUND, format!("no endpoint {}", uri.path())).into_response()
}
