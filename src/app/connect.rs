//! Model → Connect to engine…: run the model on another machine (a Linux GPU box, say) through
//! a remote engine (`sam3d-studio-engine serve-http`), or go back to the engine on this one. The
//! address is kept between runs; the key only for this session (`SAM3D_ENGINE_KEY` gives it at
//! start, as `SAM3D_ENGINE_URL` gives the address). "Test" asks the server what it runs without
//! claiming a session.

use super::remote_http::RemoteSettings;
use super::{App, AppCommand, ClickMethod};
use crate::nninteractive::api::{Capabilities, PATH_CAPABILITIES, PATH_HEALTHZ};
use crate::protocol::Request;
use crossbeam_channel::Receiver;
use egui::RichText;
use std::time::Duration;

/// The dialog's fields and the answer of its last test.
#[derive(Debug, Default)]
pub struct ConnectDialog {
    pub url: String,
    pub key: String,
    test: Option<Receiver<Result<String, String>>>,
    answer: Option<Result<String, String>>,
}

impl ConnectDialog {
    pub fn new(settings: &RemoteSettings) -> Self {
        let url = if settings.url.is_empty() { "http://127.0.0.1:1527".into() } else { settings.url.clone() };
        ConnectDialog { url, key: settings.key.clone().unwrap_or_default(), ..Default::default() }
    }

    fn settings(&self) -> RemoteSettings {
        RemoteSettings { url: self.url.trim().to_string(), key: Some(self.key.trim().to_string()).filter(|k| !k.is_empty()) }
    }
}

/// What a server says it is, or why it could not be asked (a thread; no session is claimed).
fn probe(settings: RemoteSettings, ctx: egui::Context) -> Receiver<Result<String, String>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let spawned = std::thread::Builder::new().name("sam3d-engine-probe".into()).spawn(move || {
        let r = (|| {
            let base = settings.checked_url()?;
            let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(8))).http_status_as_error(false).build().into();
            let health = agent.get(format!("{base}{PATH_HEALTHZ}")).call().map_err(|e| format!("{base}: {e}"))?;
            if health.status() != 200 {
                return Err(format!("{base}{PATH_HEALTHZ} answered {}: not an engine", health.status()));
            }
            let mut req = agent.get(format!("{base}{PATH_CAPABILITIES}"));
            if let Some(k) = &settings.key {
                req = req.header("Authorization", format!("Bearer {k}"));
            }
            let mut caps = req.call().map_err(|e| format!("{base}: {e}"))?;
            match caps.status().as_u16() {
                200 => {}
                401 => return Err("the server is there, and wants a different key".into()),
                s => return Err(format!("{base}{PATH_CAPABILITIES} answered {s}")),
            }
            let c: Capabilities = caps.body_mut().read_json().map_err(|e| format!("{base}: not an nnInteractive-protocol server ({e})"))?;
            Ok(match c.server {
                Some(s) => format!("{} · model {} ({}) on {}", s.program, s.preset, s.weights, super::device_name(&s.device)),
                None => format!("an nnInteractive server ({}), model licence {}", c.inference_session_version, c.license.unwrap_or_default()),
            })
        })();
        let _ = tx.send(r);
        ctx.request_repaint();
    });
    if let Err(e) = spawned {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let _ = tx.send(Err(format!("could not start the probe: {e}")));
        return rx;
    }
    rx
}

/// The dialog, when open.
pub fn window_ui(app: &mut App, ctx: &egui::Context) {
    let Some(d) = app.rt.connect.as_mut() else { return };
    if let Some(a) = d.test.as_ref().and_then(|rx| rx.try_recv().ok()) {
        d.answer = Some(a);
        d.test = None;
    }
    let mut open = true;
    let mut command = None;
    let connected = app.rt.remote.as_ref().and_then(|r| r.remote_url()).map(str::to_string);
    egui::Window::new("Connect to engine").open(&mut open).collapsible(false).resizable(false).show(ctx, |ui| {
        ui.label("Run the model on another machine: start `sam3d-studio-engine serve-http` there and give its address.");
        egui::Grid::new("connect-grid").num_columns(2).show(ui, |ui| {
            ui.label("Address");
            ui.add(egui::TextEdit::singleline(&mut d.url).desired_width(280.0).hint_text("http://host:1527"));
            ui.end_row();
            ui.label("Key");
            ui.add(egui::TextEdit::singleline(&mut d.key).password(true).desired_width(280.0).hint_text("the server's --api-key-file line (if any)"));
            ui.end_row();
        });
        match (&d.test, &d.answer) {
            (Some(_), _) => {
                ui.horizontal(|ui| {
                    super::spinner::spinner(ui);
                    ui.label("asking the server…");
                });
            }
            (None, Some(Ok(a))) => {
                ui.label(RichText::new(format!("Reachable: {a}")).color(egui::Color32::from_rgb(120, 200, 120)));
            }
            (None, Some(Err(e))) => {
                ui.label(RichText::new(e).color(egui::Color32::from_rgb(230, 110, 100)));
            }
            (None, None) => {}
        }
        if let Some(u) = &connected {
            ui.label(RichText::new(format!("Now: the model runs on {u}")).weak());
        }
        ui.horizontal(|ui| {
            if ui.button("Test").clicked() {
                d.answer = None;
                d.test = Some(probe(d.settings(), ctx.clone()));
            }
            if ui.button("Connect").on_hover_text("Use this engine for \"3D from click\" from now on").clicked() {
                command = Some(AppCommand::ConnectEngine(Some(d.settings())));
            }
            if ui.add_enabled(connected.is_some(), egui::Button::new("Use this computer")).on_hover_text("Run the model here again").clicked() {
                command = Some(AppCommand::ConnectEngine(None));
            }
        });
    });
    if let Some(c) = command {
        app.send(c);
        app.rt.connect = None;
    } else if !open {
        app.rt.connect = None;
    }
}

impl App {
    /// Uses a remote engine from now on (`None`: the local one): the current engine stops, and
    /// the new one is asked for its model at once, so the status bar says where it runs.
    pub(super) fn connect_engine(&mut self, settings: Option<RemoteSettings>, ctx: &egui::Context) {
        self.cancel_click(ctx);
        self.drop_engine();
        match settings {
            Some(s) => {
                if let Err(e) = s.checked_url() {
                    self.error(e);
                    return;
                }
                self.notice(format!("Connecting to the engine at {}…", s.url));
                self.remote_engine = s;
                self.rt.device = "connecting…".into();
                if self.remote_send(&Request::LoadWeights { path: Default::default() }, ctx) {
                    self.click_method = ClickMethod::Model;
                }
            }
            None => {
                self.remote_engine = RemoteSettings::default();
                self.rt.device = "checking…".into();
                self.rt.device_rx = super::spawn_device_probe(ctx.clone());
                self.notice("The model runs on this computer again (load weights to use it)".into());
            }
        }
    }
}
