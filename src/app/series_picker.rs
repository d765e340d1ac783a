//! The series picker: a DICOM folder (or file) that holds several image series opens this
//! window instead of guessing. Each series is one row (number, description, modality, size,
//! spacing, orientation, patient and date); localisers, secondary captures and non-image
//! objects are listed but marked and cannot be opened; a series that cannot be opened says why.

use super::AppCommand;
use crate::volume::dicom::{SeriesChoice, SeriesInfo, SeriesKind};
use egui::RichText;
use std::path::PathBuf;

/// A folder waiting for the user's choice.
#[derive(Debug, Clone)]
pub struct SeriesPicker {
    pub path: PathBuf,
    /// The label map asked for with the folder, opened over the chosen series.
    pub labels: Option<PathBuf>,
    pub series: Vec<SeriesInfo>,
}

impl SeriesPicker {
    /// The command that opens listing entry `index` (1-based, as `--series '#INDEX'`).
    pub fn open(&self, index: usize) -> AppCommand {
        AppCommand::OpenSeries { path: self.path.clone(), labels: self.labels.clone(), series: SeriesChoice::Index(index) }
    }
}

/// Can this entry be opened as a volume?
pub fn openable(s: &SeriesInfo) -> bool {
    s.kind == SeriesKind::Image && s.problem.is_none()
}

/// The picker window; returns the command for the series chosen, and whether it stays open.
pub fn window_ui(ctx: &egui::Context, p: &SeriesPicker) -> (Option<AppCommand>, bool) {
    let mut chosen = None;
    let mut open = true;
    egui::Window::new("Choose a DICOM series").collapsible(false).resizable(true).default_width(760.0).anchor(egui::Align2::CENTER_TOP, [0.0, 80.0]).open(&mut open).show(ctx, |ui| {
        let images = p.series.iter().filter(|s| openable(s)).count();
        ui.label(format!("{} holds {} series, {images} of them image series. Open one:", p.path.display(), p.series.len()));
        if let Some(s) = p.series.first() {
            ui.label(RichText::new(format!("Patient {} ({}), study date {}", s.patient_name, s.patient_id, s.study_date)).weak());
        }
        ui.separator();
        egui::ScrollArea::vertical().max_height(420.0).show(ui, |ui| {
            egui::Grid::new("series_grid").num_columns(8).striped(true).spacing([10.0, 4.0]).show(ui, |ui| {
                for h in ["", "Series", "Description", "Modality", "Size", "Spacing (mm)", "Orientation", "Note"] {
                    ui.label(RichText::new(h).strong());
                }
                ui.end_row();
                for s in &p.series {
                    let ok = openable(s);
                    let button = ui.add_enabled(ok, egui::Button::new("Open"));
                    if button.clicked() {
                        chosen = Some(p.open(s.index));
                    }
                    ui.label(s.series_number.map_or_else(|| "–".to_string(), |n| n.to_string()));
                    ui.label(&s.description);
                    ui.label(&s.modality);
                    ui.label(if !s.kind.is_scan() { "–".to_string() } else { format!("{}×{}×{}", s.cols, s.rows, s.slices) });
                    ui.label(s.spacing.map_or_else(|| "–".to_string(), |sp| format!("{:.2} × {:.2} × {:.2}", sp[0], sp[1], sp[2])));
                    ui.label(s.axcodes.clone().unwrap_or_else(|| "–".into()));
                    let note = match (&s.problem, s.kind) {
                        (Some(why), _) => format!("cannot open: {why}"),
                        (None, SeriesKind::Image) if !s.warnings.is_empty() => s.warnings.join("; "),
                        (None, SeriesKind::Image) => String::new(),
                        (None, k) => k.name().to_string(),
                    };
                    ui.label(RichText::new(note).weak());
                    ui.end_row();
                }
            });
        });
    });
    (chosen, open && ctx.input(|i| !i.key_pressed(egui::Key::Escape)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_image_series_that_can_be_opened_get_a_button_and_it_opens_by_listing_index() {
        let image = SeriesInfo { index: 2, kind: SeriesKind::Image, ..Default::default() };
        let scout = SeriesInfo { index: 1, kind: SeriesKind::Localizer, ..Default::default() };
        let broken = SeriesInfo { index: 3, kind: SeriesKind::Image, problem: Some("missing slice".into()), ..Default::default() };
        assert!(openable(&image) && !openable(&scout) && !openable(&broken));
        let p = SeriesPicker { path: "/d".into(), labels: None, series: vec![scout, image, broken] };
        match p.open(2) {
            AppCommand::OpenSeries { path, series: SeriesChoice::Index(2), labels: None } => assert_eq!(path, PathBuf::from("/d")),
            other => panic!("{other:?}"),
        }
    }
}
