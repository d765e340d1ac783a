//! The case browser (File → Open evaluation report…): the clicks of an `eval` report
//! (`REPORT.csv`, with its summary `REPORT.json` beside it naming the data folder), worst Dice
//! first, sortable by Dice, HD95, volume ratio, case or label, filtered by method, with the
//! Dice of every click drawn as a strip. Opening a click opens its case's scan and label map,
//! puts the crosshair on the click and runs "3D from click" there on the click's plane with the
//! row's method (the model, or region growing for the baseline's rows): the result is seen over
//! the reference in the three views and the 3D view, and measured against it in the toolbar.

use crate::data::preprocess::{CasePair, find_pairs};
use crate::geometry::{RasMm, ViewPlane};
use crossbeam_channel::{Receiver, bounded};
use egui::{Color32, RichText};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One click of a report.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportRow {
    pub case: String,
    pub label: u16,
    pub plane: ViewPlane,
    pub method: String,
    pub click: RasMm,
    pub dice: f64,
    pub iou: f64,
    pub hd95_mm: Option<f64>,
    pub assd_mm: Option<f64>,
    pub pred_voxels: u64,
    pub gt_voxels: u64,
}

impl ReportRow {
    /// Predicted / reference voxels (below 1: too small).
    pub fn volume_ratio(&self) -> f64 {
        self.pred_voxels as f64 / self.gt_voxels.max(1) as f64
    }
}

/// An `eval` report as the browser shows it.
#[derive(Clone, Debug)]
pub struct Report {
    pub path: PathBuf,
    /// The data folder the summary names (cases are looked up there).
    pub data: Option<PathBuf>,
    pub rows: Vec<ReportRow>,
    /// Each case's scan and label map.
    pub pairs: Vec<CasePair>,
    /// Label names, from the names file beside the label maps.
    pub names: BTreeMap<u16, String>,
}

impl Report {
    pub fn pair(&self, case: &str) -> Option<&CasePair> {
        self.pairs.iter().find(|p| p.name == case)
    }

    pub fn methods(&self) -> BTreeSet<&str> {
        self.rows.iter().map(|r| r.method.as_str()).collect()
    }
}

/// Parses the CSV an `eval` writes (the columns of the engine's `eval::CSV_HEADER`, found by name).
pub fn parse_report_csv(text: &str, path: &Path) -> Result<Vec<ReportRow>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or_else(|| format!("{}: empty file", path.display()))?.split(',').collect();
    let col = |name: &str| header.iter().position(|h| h.trim() == name).ok_or_else(|| format!("{}: not an eval report (no column '{name}')", path.display()));
    let c = [
        col("case")?,
        col("label")?,
        col("plane")?,
        col("method")?,
        col("click_r")?,
        col("click_a")?,
        col("click_s")?,
        col("dice")?,
        col("iou")?,
        col("hd95_mm")?,
        col("assd_mm")?,
        col("pred_voxels")?,
        col("gt_voxels")?,
    ];
    let mut rows = Vec::new();
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let bad = |what: &str| format!("{}: line {}: {what}", path.display(), n + 2);
        let get = |i: usize| f.get(c[i]).map(|s| s.trim()).ok_or_else(|| bad("too few columns"));
        let num = |i: usize| -> Result<f64, String> { get(i)?.parse::<f64>().map_err(|_| bad(&format!("'{}' is not a number", get(i).unwrap_or("")))) };
        let opt = |i: usize| -> Result<Option<f64>, String> { if get(i)?.is_empty() { Ok(None) } else { num(i).map(Some) } };
        rows.push(ReportRow {
            case: get(0)?.to_string(),
            label: get(1)?.parse().map_err(|_| bad("the label is not an id"))?,
            plane: get(2)?.parse().map_err(|e: String| bad(&e))?,
            method: get(3)?.to_string(),
            click: RasMm::new(num(4)?, num(5)?, num(6)?),
            dice: num(7)?,
            iou: num(8)?,
            hd95_mm: opt(9)?,
            assd_mm: opt(10)?,
            pred_voxels: num(11)? as u64,
            gt_voxels: num(12)? as u64,
        });
    }
    Ok(rows)
}

/// Reads a report, its summary's data folder, the cases' files and the label names.
pub fn read_report(path: &Path) -> Result<Report, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let rows = parse_report_csv(&text, path)?;
    let summary = path.with_extension("json");
    let data = std::fs::read_to_string(&summary)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("data").and_then(|d| d.as_str()).map(PathBuf::from))
        // A relative folder is eval's working directory's: tried from here, then beside the report.
        .map(|d| match (d.is_relative() && !d.is_dir(), path.parent()) {
            (true, Some(parent)) if parent.join(&d).is_dir() => parent.join(d),
            _ => d,
        });
    let pairs = match &data {
        Some(d) => find_pairs(d).map_err(|e| format!("{} names the data folder {}: {e}", summary.display(), d.display()))?,
        None => Vec::new(),
    };
    let mut names = BTreeMap::new();
    for p in &pairs {
        if let Ok(Some((n, _))) = crate::volume::label_names::names_beside(&p.labels) {
            for (id, (name, _)) in n {
                names.entry(id).or_insert(name);
            }
        }
    }
    Ok(Report { path: path.to_path_buf(), data, rows, pairs, names })
}

/// A column the table sorts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    Dice,
    Hd95,
    VolumeRatio,
    Case,
    Label,
}

/// What the user asked to open: a case's files and a click on it.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenCase {
    pub image: PathBuf,
    pub labels: PathBuf,
    pub click: RasMm,
    pub plane: ViewPlane,
    /// The row's method: the model's rows run the model, the others region growing.
    pub model: bool,
}

/// The browser's runtime state.
pub struct CaseBrowser {
    pub open: bool,
    pub report: Option<Report>,
    /// Only this method's rows (`None`: all).
    pub method: Option<String>,
    pub sort: SortBy,
    pub ascending: bool,
    /// The row opened last (index into the report's rows).
    pub selected: Option<usize>,
    loading: Option<Receiver<Result<Report, String>>>,
}

impl Default for CaseBrowser {
    fn default() -> Self {
        Self { open: false, report: None, method: None, sort: SortBy::Dice, ascending: true, selected: None, loading: None }
    }
}

impl std::fmt::Debug for CaseBrowser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseBrowser").field("open", &self.open).field("rows", &self.report.as_ref().map(|r| r.rows.len())).finish_non_exhaustive()
    }
}

impl CaseBrowser {
    /// Reads `path` on a thread of its own; the browser shows it when it is read.
    pub fn load(&mut self, path: PathBuf, wake: egui::Context) -> Result<(), String> {
        let (tx, rx) = bounded(1);
        std::thread::Builder::new()
            .name("sam3d-read-report".into())
            .spawn(move || {
                let _ = tx.send(read_report(&path));
                wake.request_repaint();
            })
            .map_err(|e| format!("could not start the report reader: {e}"))?;
        self.loading = Some(rx);
        self.open = true;
        Ok(())
    }

    pub fn is_loading(&self) -> bool {
        self.loading.is_some()
    }

    /// A report that has been read (or the reason it could not be).
    pub fn drain(&mut self) -> Option<Result<(), String>> {
        let r = self.loading.as_ref()?.try_recv().ok()?;
        self.loading = None;
        Some(r.map(|report| {
            // The model's rows first when there are both: that is what a failure case is about.
            self.method = report.methods().iter().find(|m| m.starts_with("model")).map(|m| m.to_string());
            self.selected = None;
            self.report = Some(report);
        }))
    }

    /// Indices of the rows shown, in the table's order.
    pub fn order(&self) -> Vec<usize> {
        let Some(r) = &self.report else { return Vec::new() };
        let mut idx: Vec<usize> = (0..r.rows.len()).filter(|&i| self.method.as_ref().is_none_or(|m| &r.rows[i].method == m)).collect();
        let key = |i: &usize| -> f64 {
            let row = &r.rows[*i];
            match self.sort {
                SortBy::Dice => row.dice,
                // An undefined distance (an empty mask) sorts as the worst.
                SortBy::Hd95 => row.hd95_mm.unwrap_or(f64::INFINITY),
                SortBy::VolumeRatio => row.volume_ratio(),
                SortBy::Case | SortBy::Label => 0.0,
            }
        };
        idx.sort_by(|a, b| {
            let o = match self.sort {
                SortBy::Case => r.rows[*a].case.cmp(&r.rows[*b].case).then(r.rows[*a].label.cmp(&r.rows[*b].label)),
                SortBy::Label => r.rows[*a].label.cmp(&r.rows[*b].label).then(r.rows[*a].case.cmp(&r.rows[*b].case)),
                _ => key(a).total_cmp(&key(b)),
            };
            if self.ascending { o } else { o.reverse() }
        });
        idx
    }

    /// The row `delta` places after the one opened last, in the table's order (the first row
    /// when none was opened; `None` past either end or without a report).
    pub fn step(&self, delta: isize) -> Option<usize> {
        let order = self.order();
        let at = match self.selected.and_then(|s| order.iter().position(|&i| i == s)) {
            Some(p) => p.checked_add_signed(delta)?,
            None => 0,
        };
        order.get(at).copied()
    }

    /// The files and click of row `i`, or why it cannot be opened.
    pub fn open_row(&mut self, i: usize) -> Result<OpenCase, String> {
        let r = self.report.as_ref().ok_or("no report is open")?;
        let row = r.rows.get(i).ok_or("no such row")?;
        let pair = r.pair(&row.case).ok_or_else(|| match &r.data {
            Some(d) => format!("case '{}' is not in {} any more", row.case, d.display()),
            None => format!("{} has no summary (.json) beside it naming the data folder", r.path.display()),
        })?;
        self.selected = Some(i);
        Ok(OpenCase { image: pair.image.clone(), labels: pair.labels.clone(), click: row.click, plane: row.plane, model: row.method.starts_with("model") })
    }
}

/// Green from Dice 0.8, amber from 0.5, red below (as the toolbar's comparison).
fn dice_colour(d: f64) -> Color32 {
    if d >= 0.8 {
        Color32::from_rgb(90, 190, 110)
    } else if d >= 0.5 {
        Color32::from_rgb(230, 170, 60)
    } else {
        Color32::from_rgb(220, 80, 70)
    }
}

/// The browser window; returns the row the user asked to open.
pub fn window_ui(ctx: &egui::Context, b: &mut CaseBrowser) -> Option<usize> {
    let mut open = b.open;
    let mut chosen = None;
    let title = b.report.as_ref().and_then(|r| r.path.file_name()).map_or_else(|| "Cases".to_string(), |n| format!("Cases: {}", n.to_string_lossy()));
    egui::Window::new(title).id(egui::Id::unique("case_browser")).open(&mut open).default_width(620.0).default_height(520.0).resizable(true).show(ctx, |ui| {
        if b.is_loading() {
            ui.horizontal(|ui| {
                super::spinner::spinner(ui);
                ui.label("reading the report…");
            });
            return;
        }
        let Some(report) = &b.report else {
            ui.label("File > Open evaluation report… opens the REPORT.csv of `sam3d-studio eval`.");
            return;
        };
        let cases = report.rows.iter().map(|r| &r.case).collect::<BTreeSet<_>>().len();
        ui.label(format!(
            "{} clicks on {cases} case{}{}",
            report.rows.len(),
            if cases == 1 { "" } else { "s" },
            report.data.as_ref().map(|d| format!(" · data {}", d.display())).unwrap_or_default()
        ));
        let methods: Vec<String> = report.methods().into_iter().map(str::to_string).collect();
        ui.horizontal(|ui| {
            egui::ComboBox::from_label("method").selected_text(b.method.clone().unwrap_or_else(|| "all".into())).show_ui(ui, |ui| {
                ui.selectable_value(&mut b.method, None, "all");
                for m in &methods {
                    ui.selectable_value(&mut b.method, Some(m.clone()), m);
                }
            });
            ui.label(RichText::new("Open a click: its scan and labels, the crosshair on it, and 3D from click there").weak());
        });
        let order = b.order();
        if let Some(i) = dice_strip(ui, b, &order) {
            chosen = Some(i);
        }
        let Some(report) = &b.report else { return };
        let header = |ui: &mut egui::Ui, b_sort: &mut SortBy, asc: &mut bool, name: &str, s: Option<SortBy>| {
            let Some(s) = s else {
                ui.label(RichText::new(name).strong());
                return;
            };
            let arrow = if *b_sort == s { if *asc { " ^" } else { " v" } } else { "" };
            if ui.add(egui::Button::new(RichText::new(format!("{name}{arrow}")).strong()).frame(false)).on_hover_text("Sort by this column").clicked() {
                if *b_sort == s {
                    *asc = !*asc;
                } else {
                    *b_sort = s;
                    *asc = true;
                }
            }
        };
        let (mut sort, mut asc) = (b.sort, b.ascending);
        let row_h = 20.0;
        egui::Grid::new("case_header").num_columns(8).min_col_width(60.0).show(ui, |ui| {
            header(ui, &mut sort, &mut asc, "", None);
            header(ui, &mut sort, &mut asc, "Dice", Some(SortBy::Dice));
            header(ui, &mut sort, &mut asc, "HD95 mm", Some(SortBy::Hd95));
            header(ui, &mut sort, &mut asc, "pred/true", Some(SortBy::VolumeRatio));
            header(ui, &mut sort, &mut asc, "case", Some(SortBy::Case));
            header(ui, &mut sort, &mut asc, "label", Some(SortBy::Label));
            header(ui, &mut sort, &mut asc, "plane", None);
            header(ui, &mut sort, &mut asc, "method", None);
            ui.end_row();
        });
        egui::ScrollArea::vertical().id_salt("case_rows").auto_shrink([false, false]).show_rows(ui, row_h, order.len(), |ui, range| {
            egui::Grid::new("case_rows_grid").num_columns(8).min_col_width(60.0).striped(true).show(ui, |ui| {
                for &i in &order[range] {
                    let r = &report.rows[i];
                    let selected = b.selected == Some(i);
                    if ui.add(egui::Button::new(if selected { "Opened" } else { "Open" }).small().selected(selected)).clicked() {
                        chosen = Some(i);
                    }
                    ui.label(RichText::new(format!("{:.3}", r.dice)).color(dice_colour(r.dice)).monospace());
                    ui.label(RichText::new(r.hd95_mm.map_or("–".into(), |h| format!("{h:.1}"))).monospace());
                    ui.label(RichText::new(format!("{:.2}", r.volume_ratio())).monospace());
                    ui.label(&r.case);
                    ui.label(format!("{} {}", r.label, report.names.get(&r.label).map_or("", String::as_str)));
                    ui.label(r.plane.name());
                    ui.label(&r.method);
                    ui.end_row();
                }
            });
        });
        b.sort = sort;
        b.ascending = asc;
    });
    b.open = open;
    chosen
}

/// Every shown click's Dice as a bar, in the table's order (hover names it, a click opens it).
fn dice_strip(ui: &mut egui::Ui, b: &CaseBrowser, order: &[usize]) -> Option<usize> {
    let report = b.report.as_ref()?;
    let (rect, resp) = ui.allocate_exact_size(egui::vec2(ui.available_width().max(200.0), 64.0), egui::Sense::click());
    let p = ui.painter_at(rect);
    p.rect_filled(rect, 2.0, Color32::from_gray(22));
    if order.is_empty() {
        return None;
    }
    let w = rect.width() / order.len() as f32;
    for (k, &i) in order.iter().enumerate() {
        let d = report.rows[i].dice;
        let x = rect.left() + k as f32 * w;
        let bar = egui::Rect::from_min_max(egui::pos2(x, rect.bottom() - d as f32 * rect.height()), egui::pos2(x + (w - 1.0).max(1.0), rect.bottom()));
        p.rect_filled(bar, 0.0, dice_colour(d));
        if b.selected == Some(i) {
            p.rect_stroke(bar.expand(1.0), 0.0, egui::Stroke::new(1.0, Color32::WHITE), egui::StrokeKind::Outside);
        }
    }
    for goal in [0.5, 0.8] {
        let y = rect.bottom() - goal * rect.height();
        p.line_segment([egui::pos2(rect.left(), y), egui::pos2(rect.right(), y)], egui::Stroke::new(1.0, Color32::from_white_alpha(40)));
    }
    let pos = resp.hover_pos()?;
    let k = (((pos.x - rect.left()) / w) as usize).min(order.len() - 1);
    let r = &report.rows[order[k]];
    let clicked = resp.clicked();
    resp.on_hover_text(format!(
        "{} · {} {} · {} · {}: Dice {:.3}",
        r.case,
        r.label,
        report.names.get(&r.label).map_or("", String::as_str),
        r.plane.name(),
        r.method,
        r.dice
    ));
    clicked.then_some(order[k])
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "case,label,plane,method,click_r,click_a,click_s,dice,iou,hd95_mm,assd_mm,pred_voxels,gt_voxels,secs,dice_2d
c1,5,axial,model,-10.50,20.00,3.25,0.91000,0.83000,4.1000,1.2000,900,1000,0.500,0.95000
c1,5,coronal,baseline,-10.50,20.00,3.25,0.40000,0.25000,,,0,1000,0.100,
c2,1,sagittal,model,1.00,2.00,3.00,0.60000,0.43000,12.0000,3.0000,1500,1000,0.400,0.70000
";

    fn browser() -> CaseBrowser {
        let rows = parse_report_csv(CSV, Path::new("r.csv")).expect("rows");
        CaseBrowser { report: Some(Report { path: "r.csv".into(), data: None, rows, pairs: Vec::new(), names: BTreeMap::new() }), ..Default::default() }
    }

    #[test]
    fn an_eval_csv_reads_back_with_empty_distances() {
        let b = browser();
        let rows = &b.report.as_ref().expect("report").rows;
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].case.as_str(), rows[0].label, rows[0].plane, rows[0].method.as_str()), ("c1", 5, ViewPlane::Axial, "model"));
        assert_eq!(rows[0].click, RasMm::new(-10.5, 20.0, 3.25));
        assert_eq!((rows[0].dice, rows[0].hd95_mm, rows[0].volume_ratio()), (0.91, Some(4.1), 0.9));
        assert_eq!((rows[1].hd95_mm, rows[1].assd_mm, rows[1].plane), (None, None, ViewPlane::Coronal));
        let e = parse_report_csv("case,label\nc1,5\n", Path::new("x.csv")).expect_err("not a report");
        assert!(e.contains("x.csv") && e.contains("plane"), "{e}");
        let e = parse_report_csv(&CSV.replace("0.60000", "sixty"), Path::new("x.csv")).expect_err("bad number");
        assert!(e.contains("line 4") && e.contains("sixty"), "{e}");
    }

    #[test]
    fn rows_sort_worst_first_and_filter_by_method() {
        let mut b = browser();
        assert_eq!(b.order(), vec![1, 2, 0], "worst Dice first");
        b.method = Some("model".into());
        assert_eq!(b.order(), vec![2, 0]);
        b.method = None;
        b.sort = SortBy::Hd95;
        assert_eq!(b.order(), vec![0, 2, 1], "an undefined HD95 sorts as the worst");
        b.ascending = false;
        assert_eq!(b.order(), vec![1, 2, 0]);
        b.sort = SortBy::Case;
        b.ascending = true;
        assert_eq!(b.order(), vec![0, 1, 2]);
        // ] and [ walk the table's order from the first row.
        b.selected = None;
        assert_eq!(b.step(1), Some(0));
        b.selected = Some(1);
        assert_eq!((b.step(1), b.step(-1), b.step(2)), (Some(2), Some(0), None));
        let e = b.open_row(0).expect_err("no summary");
        assert!(e.contains("no summary"), "{e}");
    }
}
