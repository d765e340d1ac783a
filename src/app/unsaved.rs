//! Nothing unsaved is lost: quitting, closing the window, opening another volume or label map
//! ask first when the labels changed since they were opened or saved; and a crash-recovery
//! autosave keeps a copy of changed labels that the next start offers to restore.
//!
//! The autosave is a Slicer segmentation (`.seg.nrrd`: labels, names and colours in one file)
//! in the autosave folder (the app's data folder, or `SAM3D_AUTOSAVE_DIR`), named after the
//! volume's path, with a small JSON beside it saying which volume it belongs to. It is written
//! on its own thread (to a temporary name, then renamed) at most every [`AUTOSAVE_EVERY`] while
//! changes wait, and removed once the labels are saved or the user chose not to keep them.

use super::command::AppCommand;
use super::App;
use crate::volume::LabelMap;
use crate::volume::label_names::LabelNames;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often changed labels are copied to the autosave.
pub const AUTOSAVE_EVERY: Duration = Duration::from_secs(60);

/// What waits for the answer to "save the changed labels?".
#[derive(Clone, Debug, PartialEq)]
pub enum Pending {
    Quit,
    OpenVolume { path: PathBuf, labels: Option<PathBuf>, series: Option<crate::volume::dicom::SeriesChoice> },
    OpenLabels(PathBuf),
}

impl Pending {
    fn doing(&self) -> String {
        match self {
            Pending::Quit => "quitting".into(),
            Pending::OpenVolume { path, .. } => format!("opening {}", file_name(path)),
            Pending::OpenLabels(p) => format!("opening {}", file_name(p)),
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// The state of this room, in the app's runtime.
#[derive(Debug, Default)]
pub struct Unsaved {
    /// The question on screen, and what waits for it.
    pub asking: Option<Pending>,
    /// What runs once the save in flight has finished (the user chose Save).
    pub after_save: Option<Pending>,
    /// The user chose "Don't save" for this action: it goes ahead once.
    pub discard_once: bool,
    /// The window may close (the question was answered).
    pub may_close: bool,
    /// When the autosave last ran, and the `labels_rev` it copied.
    last_autosave: Option<(Instant, u64)>,
    /// A restore the next start offers: the autosave file and when it was written.
    pub offer: Option<(PathBuf, String)>,
    /// The autosave is being opened: once it is, its labels count as unsaved.
    pub restoring: bool,
    /// What runs next frame (it waited for a save that has finished).
    pub resume_next: Option<Pending>,
    /// The autosave folder ([`autosave_dir`]); `None`: no autosave (the app keeps no settings,
    /// as under test).
    pub dir: Option<PathBuf>,
}

/// The autosave folder: `SAM3D_AUTOSAVE_DIR`, else `autosave` beside the app's settings when
/// it keeps settings (`has_storage`), else none.
pub fn autosave_dir(has_storage: bool) -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SAM3D_AUTOSAVE_DIR") {
        return Some(PathBuf::from(d));
    }
    has_storage.then(|| eframe::storage_dir("sam3d-studio").map(|d| d.join("autosave"))).flatten()
}

/// The autosave file of a volume: named by a stable hash (FNV-1a) of its canonical path.
pub fn autosave_path(dir: &Path, volume: &Path) -> PathBuf {
    let canon = std::fs::canonicalize(volume).unwrap_or_else(|_| volume.to_path_buf());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canon.to_string_lossy().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    dir.join(format!("labels-{h:016x}.seg.nrrd"))
}

fn meta_path(file: &Path) -> PathBuf {
    file.with_extension("").with_extension("json")
}

/// Writes the autosave of `volume`'s labels (a temporary file, then renamed).
pub fn write_autosave(dir: &Path, volume: &Path, labels: &LabelMap, names: &LabelNames) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("autosave folder {}: {e}", dir.display()))?;
    let file = autosave_path(dir, volume);
    let tmp = file.with_file_name(format!(".{}.tmp.seg.nrrd", std::process::id()));
    crate::volume::save_labels(&tmp, labels, Some(names)).map_err(|e| format!("autosave: {e}"))?;
    std::fs::rename(&tmp, &file).map_err(|e| format!("autosave {}: {e}", file.display()))?;
    let ([y, mo, d], [h, mi, _]) = crate::utc::utc_parts(std::time::SystemTime::now());
    let written = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02} UTC");
    let meta = serde_json::json!({ "volume": volume.display().to_string(), "written": written });
    std::fs::write(meta_path(&file), meta.to_string()).map_err(|e| format!("autosave: {e}"))?;
    Ok(file)
}

/// The autosave of `volume`, if one was left behind: its file and when it was written.
pub fn find_autosave(dir: &Path, volume: &Path) -> Option<(PathBuf, String)> {
    let file = autosave_path(dir, volume);
    if !file.is_file() {
        return None;
    }
    let written = std::fs::read_to_string(meta_path(&file))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v.get("written").and_then(|w| w.as_str()).map(str::to_string))
        .unwrap_or_else(|| "an earlier session".into());
    Some((file, written))
}

/// Removes the autosave of `volume` (saved, or not wanted).
pub fn remove_autosave(dir: &Path, volume: &Path) {
    let file = autosave_path(dir, volume);
    let _ = std::fs::remove_file(meta_path(&file));
    let _ = std::fs::remove_file(file);
}

impl App {
    /// Whether the labels changed since they were opened or saved.
    pub fn unsaved_labels(&self) -> bool {
        self.rt.labels_rev != self.rt.saved_rev && self.rt.scene.as_ref().is_some_and(|s| s.labels.is_some())
    }

    /// `true` when `p` may go ahead now; otherwise the question is asked and `p` waits.
    pub(super) fn may_proceed(&mut self, p: Pending) -> bool {
        if std::mem::take(&mut self.rt.unsaved.discard_once) || !self.unsaved_labels() {
            return true;
        }
        self.rt.unsaved.asking = Some(p);
        false
    }

    /// Runs what waited for the question.
    pub(super) fn resume(&mut self, p: Pending, ctx: &egui::Context) {
        self.rt.unsaved.discard_once = true;
        match p {
            Pending::Quit => {
                self.rt.unsaved.may_close = true;
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                ctx.request_repaint();
            }
            Pending::OpenVolume { path, labels, series } => self.open_volume(path, labels, series),
            Pending::OpenLabels(path) => self.apply(AppCommand::OpenLabels(path), ctx),
        }
    }

    /// After a save finished: the action that waited for it, and no autosave any more.
    pub(super) fn after_save(&mut self) {
        if !self.unsaved_labels()
            && let (Some(dir), Some(s)) = (&self.rt.unsaved.dir, &self.rt.scene)
        {
            remove_autosave(&dir, &s.path);
        }
        if let Some(p) = self.rt.unsaved.after_save.take() {
            self.rt.unsaved.resume_next = Some(p);
        }
    }

    /// The window's close button and Ctrl+Q: ask first when labels are unsaved.
    pub(super) fn guard_close(&mut self, ctx: &egui::Context) {
        if ctx.input(|i| i.viewport().close_requested()) && !self.rt.unsaved.may_close {
            if self.may_proceed(Pending::Quit) {
                self.rt.unsaved.may_close = true;
                self.forget_autosave();
            } else {
                ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            }
        }
    }

    /// The user does not want the changes: no autosave to offer next time.
    fn forget_autosave(&self) {
        if let (Some(dir), Some(s)) = (&self.rt.unsaved.dir, &self.rt.scene) {
            remove_autosave(dir, &s.path);
        }
    }

    /// Copies changed labels to the autosave now and then (each frame; cheap when nothing is due).
    pub(super) fn autosave_tick(&mut self, ctx: &egui::Context) {
        if !self.unsaved_labels() {
            return;
        }
        let rev = self.rt.labels_rev;
        let due = match self.rt.unsaved.last_autosave {
            None => true,
            Some((t, r)) => r != rev && t.elapsed() >= AUTOSAVE_EVERY,
        };
        if !due {
            ctx.request_repaint_after(AUTOSAVE_EVERY);
            return;
        }
        let (Some(dir), Some(scene)) = (self.rt.unsaved.dir.clone(), &self.rt.scene) else { return };
        let Some(layer) = &scene.labels else { return };
        self.rt.unsaved.last_autosave = Some((Instant::now(), rev));
        let (map, names, volume): (Arc<LabelMap>, LabelNames, PathBuf) = (layer.map.clone(), layer.table.names(), scene.path.clone());
        let spawned = std::thread::Builder::new().name("sam3d-autosave".into()).spawn(move || {
            match write_autosave(&dir, &volume, &map, &names) {
                Ok(f) => log::info!("autosaved the labels of {} to {}", volume.display(), f.display()),
                Err(e) => log::warn!("{e}"),
            }
        });
        if let Err(e) = spawned {
            log::warn!("autosave: {e}");
        }
    }

    /// Once a volume is open: offer the autosave an earlier session left for it.
    pub(super) fn check_autosave(&mut self) {
        let (Some(dir), Some(s)) = (&self.rt.unsaved.dir, &self.rt.scene) else { return };
        self.rt.unsaved.offer = find_autosave(dir, &s.path);
        self.rt.unsaved.last_autosave = None;
    }
}

/// The question (and the restore offer), when there is one.
pub fn unsaved_ui(app: &mut App, ctx: &egui::Context) {
    if let Some(p) = app.rt.unsaved.asking.clone() {
        let mut answer = None;
        egui::Modal::new(egui::Id::unique("unsaved_labels")).show(ctx, |ui| {
            ui.set_width(420.0);
            ui.heading("Save the changed labels?");
            ui.add_space(4.0);
            ui.label(format!("The label map has changes that are not saved. Save them before {}?", p.doing()));
            ui.add_space(8.0);
            ui.horizontal(|ui| {
                if ui.button("Save…").clicked() {
                    answer = Some(0);
                }
                if ui.button("Don't save").clicked() {
                    answer = Some(1);
                }
                if ui.button("Cancel").clicked() || ui.input(|i| i.key_pressed(egui::Key::Escape)) {
                    answer = Some(2);
                }
            });
        });
        match answer {
            Some(0) => {
                app.rt.unsaved.asking = None;
                app.rt.unsaved.after_save = Some(p);
                app.send(AppCommand::ShowDialog(super::command::DialogKind::SaveLabels));
            }
            Some(1) => {
                app.rt.unsaved.asking = None;
                app.forget_autosave();
                app.resume(p, ctx);
            }
            Some(2) => app.rt.unsaved.asking = None,
            _ => {}
        }
    }
    if let Some((file, written)) = app.rt.unsaved.offer.clone() {
        let mut answer = None;
        egui::Modal::new(egui::Id::unique("restore_labels")).show(ctx, |ui| {
            ui.set_width(440.0);
            ui.heading("Restore unsaved labels?");
            ui.add_space(4.0);
            ui.label(format!("A session that ended without saving left changed labels for this volume (autosaved {written}). Restore them?"));
            ui.add_space(8.0);
            ui.horizontal(|ui| {
                if ui.button("Restore").clicked() {
                    answer = Some(true);
                }
                if ui.button("Discard").clicked() {
                    answer = Some(false);
                }
            });
        });
        match answer {
            Some(true) => {
                app.rt.unsaved.offer = None;
                app.rt.unsaved.restoring = true;
                app.send(AppCommand::OpenLabels(file));
            }
            Some(false) => {
                app.rt.unsaved.offer = None;
                app.forget_autosave();
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::RasFromVoxel;
    use ndarray::Array3;

    #[test]
    fn an_autosave_round_trips_with_names_and_is_found_by_the_volume() {
        let dir = std::env::temp_dir().join(format!("sam3d-autosave-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let volume = dir.join("scan.nii.gz");
        let data = Array3::from_shape_fn((3, 4, 5), |(k, j, i)| if k == 1 && j > 1 && i < 3 { 7u16 } else { 0 });
        let map = LabelMap::new(data.clone(), RasFromVoxel::identity()).expect("grid");
        let mut names = LabelNames::new();
        names.insert(7, ("tumour 1".to_string(), Some([200, 40, 40])));
        assert!(find_autosave(&dir, &volume).is_none());
        let file = write_autosave(&dir, &volume, &map, &names).expect("written");
        let (found, _) = find_autosave(&dir, &volume).expect("found");
        assert_eq!(found, file);
        assert!(find_autosave(&dir, &dir.join("other.nii.gz")).is_none(), "another volume has none");
        let back = crate::volume::open_labels(&file).expect("reads");
        assert_eq!(back.data, data);
        let (back_names, _) = crate::volume::label_names::names_beside(&file).expect("reads").expect("names");
        assert_eq!(back_names.get(&7).map(|n| n.0.as_str()), Some("tumour 1"));
        remove_autosave(&dir, &volume);
        assert!(find_autosave(&dir, &volume).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
