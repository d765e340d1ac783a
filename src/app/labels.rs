//! Label names and colours: a `.tsv` beside the label file (`id<TAB>name[<TAB>r g b]`), or a
//! default table; per-label visibility; the colour look-up table the slice renderer uses.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// One label's display settings.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelEntry {
    pub name: String,
    /// sRGB colour.
    pub colour: [u8; 3],
    pub visible: bool,
    /// Voxels carrying this label in the loaded map.
    pub voxels: usize,
}

/// The labels present in a label map, with names and colours.
#[derive(Clone, Debug, Default)]
pub struct LabelTable {
    pub entries: BTreeMap<u16, LabelEntry>,
    /// Where the names came from (a `.tsv`), if anywhere.
    pub names_from: Option<PathBuf>,
    /// Rows taken away by an undo, kept for a redo (name and colour).
    pub retired: BTreeMap<u16, LabelEntry>,
}

use crate::volume::label_names::LabelNames;

/// Qualitative palette (distinct on a grey CT background) for ids without a known organ colour.
const PALETTE: [[u8; 3]; 16] = [
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [250, 190, 212],
    [0, 128, 128],
    [220, 190, 255],
    [170, 110, 40],
    [255, 250, 200],
    [128, 0, 0],
    [170, 255, 195],
];

/// Colours close to the ones anatomy tools use (Slicer's GenericAnatomyColors family), by name.
fn organ_colour(name: &str) -> Option<[u8; 3]> {
    let n = name.to_ascii_lowercase();
    let table: [(&str, [u8; 3]); 17] = [
        ("liver", [221, 130, 101]),
        ("spleen", [157, 108, 162]),
        ("kidney_cyst", [255, 255, 180]),
        ("kidney", [185, 102, 83]),
        ("gallbladder", [139, 150, 98]),
        ("stomach", [216, 132, 105]),
        ("pancreas", [249, 180, 111]),
        ("aorta", [224, 97, 76]),
        ("vena_cava", [0, 151, 206]),
        ("portal_vein", [0, 110, 180]),
        ("heart", [206, 110, 84]),
        ("lung", [197, 165, 145]),
        ("colon", [204, 168, 143]),
        ("bowel", [255, 187, 150]),
        ("duodenum", [255, 210, 170]),
        ("bladder", [222, 154, 132]),
        ("adrenal", [244, 214, 49]),
    ];
    if let Some((_, c)) = table.iter().find(|(k, _)| n.contains(k)) {
        return Some(*c);
    }
    if ["vertebra", "rib", "sacrum", "femur", "hip", "skull", "sternum", "humerus", "scapula", "clavicula"].iter().any(|k| n.contains(k)) {
        return Some([241, 214, 145]);
    }
    None
}

/// Default colour of a label id (no names file, or no colour in it).
pub fn default_colour(id: u16, name: Option<&str>) -> [u8; 3] {
    name.and_then(organ_colour).unwrap_or(PALETTE[(id as usize + PALETTE.len() - 1) % PALETTE.len()])
}

impl LabelTable {
    /// Names and colours by id, as a names file holds them (what a saved label map carries).
    pub fn names(&self) -> LabelNames {
        self.entries.iter().filter(|(id, _)| **id != 0).map(|(id, e)| (*id, (e.name.clone(), Some(e.colour)))).collect()
    }

    /// The table for the labels present in a map (`counts`: id → voxels), named from `names`.
    pub fn new(counts: &[(u16, usize)], names: Option<(&LabelNames, PathBuf)>) -> Self {
        let mut entries = BTreeMap::new();
        for &(id, voxels) in counts {
            let known = names.as_ref().and_then(|(n, _)| n.get(&id));
            let name = known.map(|(n, _)| n.clone()).unwrap_or_else(|| format!("label {id}"));
            let colour = known.and_then(|(_, c)| *c).unwrap_or_else(|| default_colour(id, known.map(|(n, _)| n.as_str())));
            entries.insert(id, LabelEntry { name, colour, visible: true, voxels });
        }
        Self { entries, names_from: names.map(|(_, p)| p), retired: BTreeMap::new() }
    }

    pub fn name_of(&self, id: u16) -> Option<&str> {
        self.entries.get(&id).map(|e| e.name.as_str())
    }

    /// Colour look-up table by id for the renderer: `[r, g, b, a]`, `a = 0` for background,
    /// hidden or absent labels, 255 otherwise. Its length is one more than the largest id.
    pub fn lut(&self) -> Vec<[u8; 4]> {
        let len = self.entries.keys().next_back().map_or(1, |&m| m as usize + 1);
        let mut lut = vec![[0u8; 4]; len];
        for (&id, e) in &self.entries {
            if id != 0 && e.visible {
                let [r, g, b] = e.colour;
                lut[id as usize] = [r, g, b, 255];
            }
        }
        lut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::label_names::parse_label_tsv;
    use std::path::Path;

    #[test]
    fn table_and_lut() {
        let names = parse_label_tsv("1\tspleen\n5\tliver\n", Path::new("l.tsv")).expect("parses");
        let mut t = LabelTable::new(&[(1, 10), (5, 20), (9, 1)], Some((&names, PathBuf::from("l.tsv"))));
        assert_eq!(t.name_of(5), Some("liver"));
        assert_eq!(t.name_of(9), Some("label 9"));
        assert_eq!(t.entries[&5].colour, [221, 130, 101]);
        t.entries.get_mut(&5).expect("present").visible = false;
        let lut = t.lut();
        assert_eq!(lut.len(), 10);
        assert_eq!(lut[0][3], 0);
        assert_eq!(lut[1][3], 255);
        assert_eq!(lut[5][3], 0, "hidden");
        assert_eq!(lut[3][3], 0, "absent");
    }
}
