//! 3D Slicer segmentations (`.seg.nrrd`): a NRRD whose `Segment{N}_*` key/value pairs name the
//! segments, and whose samples hold each segment's `LabelValue` in its `Layer`.
//!
//! **Reading.** A segment exists for every `Segment{N}_ID` (N = 0, 1, … until one is missing),
//! as Slicer reads them; `Name` (else the ID), `Color` (three 0–1 floats), `LabelValue`
//! (default 1), `Layer` (default N: old one-segment-per-layer files) and `Extent` are read,
//! `Tags` and the `Segmentation_*` keys are ignored. A 3D file is one layer; a 4D file has a
//! leading list axis of layers. sam3d-studio holds one label per voxel, so layers are
//! flattened: a voxel claimed by segments of two layers is refused, naming both and how many
//! voxels they share (the caller can re-export the segmentation from Slicer as a label map,
//! which resolves overlaps). Labels keep their `LabelValue` when every segment's is distinct,
//! else segments are numbered 1, 2, … in file order. A voxel outside its segment's `Extent`
//! is background (Slicer writes zeros there and clips to it on reading).
//! `Segmentation_ReferenceImageExtentOffset` only tells Slicer where the file sits in its
//! reference grid; `space origin` already places voxel 0, so it is not needed.
//!
//! **Writing** ([`write_segmentation`]): one layer, gzip, LPS, with the keys Slicer writes, so
//! Slicer opens it with the names and colours of the label table.

use super::{NrrdInfo, NrrdWriteOptions, read_info, write_nrrd};
use crate::volume::label_names::LabelNames;
use crate::volume::{DataType, LabelMap, VolumeError};
use ndarray::Array3;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// One segment as the file describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// The `N` of `Segment{N}_…`.
    pub index: usize,
    pub id: String,
    pub name: String,
    /// RGB, 0–1, when the file gives one.
    pub colour: Option<[f64; 3]>,
    /// Its value in its layer.
    pub label_value: u16,
    pub layer: usize,
    /// `i0 i1 j0 j1 k0 k1` (inclusive) in the file's grid, when given.
    pub extent: Option<[i64; 6]>,
    /// Its label in the flattened label map.
    pub label: u16,
}

/// A segmentation flattened to one label map, with its label table.
#[derive(Clone, Debug)]
pub struct Segmentation {
    pub labels: LabelMap,
    pub names: LabelNames,
    pub segments: Vec<Segment>,
}

/// Does this header describe Slicer segments?
pub fn is_segmentation(h: &super::NrrdHeader) -> bool {
    h.key("Segment0_ID").is_some()
}

/// The segments a header describes, checked against its number of layers.
pub fn segments(info: &NrrdInfo) -> Result<Vec<Segment>, VolumeError> {
    let h = &info.header;
    let mut segs: Vec<Segment> = Vec::new();
    while let Some(id) = h.key(&format!("Segment{}_ID", segs.len())) {
        let n = segs.len();
        let key = |k: &str| h.key(&format!("Segment{n}_{k}")).map(str::trim).filter(|v| !v.is_empty());
        let name = key("Name").unwrap_or(id).to_string();
        let colour = key("Color")
            .map(|c| {
                let v: Vec<f64> = c.split_whitespace().filter_map(|x| x.parse().ok()).collect();
                match v.as_slice() {
                    [r, g, b] if [r, g, b].iter().all(|x| x.is_finite()) => Ok([*r, *g, *b]),
                    _ => Err(h.err(format!("Segment{n}_Color '{c}' is not three numbers"))),
                }
            })
            .transpose()?;
        let label_value = match key("LabelValue") {
            None => 1,
            Some(v) => v.parse::<u16>().ok().filter(|&x| x > 0).ok_or_else(|| h.err(format!("Segment{n}_LabelValue '{v}' is not a label value 1..65535")))?,
        };
        let layer = match key("Layer") {
            None => n,
            Some(v) => v.parse::<usize>().map_err(|_| h.err(format!("Segment{n}_Layer '{v}' is not a layer number")))?,
        };
        if layer >= info.layers {
            return Err(h.err(format!("segment '{name}' is in layer {layer}, but the file has {} layer(s)", info.layers)));
        }
        let extent = key("Extent")
            .map(|e| {
                let v: Vec<i64> = e.split_whitespace().filter_map(|x| x.parse().ok()).collect();
                <[i64; 6]>::try_from(v).map_err(|_| h.err(format!("Segment{n}_Extent '{e}' is not six whole numbers")))
            })
            .transpose()?;
        if let Some(o) = segs.iter().find(|s| s.layer == layer && s.label_value == label_value) {
            return Err(h.err(format!("segments '{}' and '{name}' both have value {label_value} in layer {layer}", o.name)));
        }
        segs.push(Segment { index: n, id: id.to_string(), name, colour, label_value, layer, extent, label: 0 });
        if segs.len() > u16::MAX as usize {
            return Err(h.err("more than 65535 segments"));
        }
    }
    let distinct = segs.iter().map(|s| s.label_value).collect::<BTreeSet<_>>().len() == segs.len();
    for s in &mut segs {
        s.label = if distinct { s.label_value } else { (s.index + 1) as u16 };
    }
    if !distinct {
        log::info!("{}: segments share label values across layers; numbering them 1..{} in file order", h.path.display(), segs.len());
    }
    Ok(segs)
}

fn names_of(segs: &[Segment]) -> LabelNames {
    let to_u8 = |x: f64| (x.clamp(0.0, 1.0) * 255.0).round() as u8;
    segs.iter().map(|s| (s.label, (s.name.clone(), s.colour.map(|c| [to_u8(c[0]), to_u8(c[1]), to_u8(c[2])])))).collect()
}

/// The label table of a segmentation file, from its header alone (`None` for a NRRD that
/// is not a segmentation).
pub fn segment_names(path: &Path) -> Result<Option<LabelNames>, VolumeError> {
    let info = read_info(path)?;
    if !is_segmentation(&info.header) {
        return Ok(None);
    }
    Ok(Some(names_of(&segments(&info)?)))
}

/// Reads a `.seg.nrrd` (or any NRRD) as one label map and its label table.
pub fn read_segmentation(path: &Path) -> Result<Segmentation, VolumeError> {
    from_info(read_info(path)?)
}

/// Flattens the layers of an already-read header (see the module doc).
pub fn from_info(info: NrrdInfo) -> Result<Segmentation, VolumeError> {
    let segs = segments(&info)?;
    let samples = info.read_samples::<u16>()?;
    let (layers, shape) = (info.layers, info.shape);
    let lut: HashMap<(usize, u16), usize> = segs.iter().enumerate().map(|(n, s)| ((s.layer, s.label_value), n)).collect();
    let by_label: HashMap<u16, usize> = segs.iter().enumerate().map(|(n, s)| (s.label, n)).collect();
    let strict = layers > 1 || segs.iter().any(|s| s.label != s.label_value);
    let inside = |s: &Segment, v: usize| {
        let Some(e) = s.extent else { return true };
        let (i, j, k) = ((v % shape.ni) as i64, ((v / shape.ni) % shape.nj) as i64, (v / (shape.ni * shape.nj)) as i64);
        (e[0]..=e[1]).contains(&i) && (e[2]..=e[3]).contains(&j) && (e[4]..=e[5]).contains(&k)
    };
    let mut out = vec![0u16; shape.len()];
    let mut overlap: Option<(usize, usize)> = None;
    let mut overlaps = 0usize;
    for (v, o) in out.iter_mut().enumerate() {
        for l in 0..layers {
            let x = samples[v * layers + l];
            if x == 0 {
                continue;
            }
            let (label, seg) = match lut.get(&(l, x)) {
                Some(&n) if inside(&segs[n], v) => (segs[n].label, Some(n)),
                Some(_) => continue,
                None if !strict => (x, None),
                None => return Err(info.header.err(format!("layer {l} holds value {x}, which no segment describes"))),
            };
            if *o == 0 {
                *o = label;
            } else {
                overlaps += 1;
                if let (None, Some(b), Some(&a)) = (overlap, seg, by_label.get(o)) {
                    overlap = Some((a, b));
                }
            }
        }
    }
    if overlaps > 0 {
        let what = overlap
            .map(|(a, b)| format!("segments '{}' (layer {}) and '{}' (layer {}) overlap", segs[a].name, segs[a].layer, segs[b].name, segs[b].layer))
            .unwrap_or_else(|| "segments overlap".into());
        return Err(info.header.err(format!(
            "{what} in {overlaps} voxel(s); sam3d-studio holds one label per voxel: remove the overlap in Slicer, or export the segmentation as a label map"
        )));
    }
    let data = Array3::from_shape_vec(shape.array_shape(), out).map_err(|e| info.header.err(format!("internal shape error: {e}")))?;
    let mut meta = info.meta();
    meta.description = format!("Slicer segmentation, {} segment(s) in {} layer(s)", segs.len(), layers);
    let labels = LabelMap { data, ras_from_voxel: info.ras_from_voxel, meta };
    Ok(Segmentation { names: names_of(&segs), labels, segments: segs })
}

/// Colours for segments the table gives none (Slicer marks them `ColorAutoGenerated`).
const PALETTE: [[u8; 3]; 8] =
    [[128, 174, 128], [241, 214, 145], [177, 122, 101], [111, 184, 210], [216, 101, 79], [221, 130, 101], [144, 238, 144], [192, 104, 88]];

/// Writes a label map as a Slicer segmentation: one segment per label present in the data
/// (ascending), named and coloured from `names` (else `Segment_<label>` and a palette colour,
/// marked auto-generated), all in layer 0 with their label as `LabelValue`; gzip, LPS,
/// unsigned char when every label fits, atomically.
pub fn write_segmentation(path: &Path, labels: &LabelMap, names: &LabelNames) -> Result<(), VolumeError> {
    let present: BTreeSet<u16> = labels.data.iter().copied().filter(|&x| x != 0).collect();
    let s = labels.data.shape();
    let extent = format!("0 {} 0 {} 0 {}", s[2].saturating_sub(1), s[1].saturating_sub(1), s[0].saturating_sub(1));
    let mut kv: Vec<(String, String)> = Vec::new();
    for (n, &label) in present.iter().enumerate() {
        let (name, colour) = names.get(&label).cloned().unwrap_or_else(|| (String::new(), None));
        let auto_name = name.trim().is_empty();
        let name = if auto_name { format!("Segment_{label}") } else { name };
        let rgb = colour.unwrap_or(PALETTE[label as usize % PALETTE.len()]);
        let seg = |k: &str, v: String| (format!("Segment{n}_{k}"), v);
        kv.push(seg("ID", format!("Segment_{label}")));
        kv.push(seg("Name", name));
        kv.push(seg("NameAutoGenerated", if auto_name { "1" } else { "0" }.into()));
        kv.push(seg("Color", format!("{:.6} {:.6} {:.6}", rgb[0] as f64 / 255.0, rgb[1] as f64 / 255.0, rgb[2] as f64 / 255.0)));
        kv.push(seg("ColorAutoGenerated", if colour.is_none() { "1" } else { "0" }.into()));
        kv.push(seg("Extent", extent.clone()));
        kv.push(seg("LabelValue", label.to_string()));
        kv.push(seg("Layer", "0".into()));
        kv.push(seg("Tags", String::new()));
    }
    kv.push(("Segmentation_ContainedRepresentationNames".into(), "Binary labelmap|".into()));
    kv.push(("Segmentation_MasterRepresentation".into(), "Binary labelmap".into()));
    kv.push(("Segmentation_ReferenceImageExtentOffset".into(), "0 0 0".into()));
    let dtype = if present.last().copied().unwrap_or(0) <= 255 { DataType::Uint8 } else { DataType::Uint16 };
    write_nrrd(path, labels.data.view(), &labels.ras_from_voxel, &NrrdWriteOptions { dtype, ..Default::default() }, &kv)
}
