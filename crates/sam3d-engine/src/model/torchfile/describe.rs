//! What a state dict looks like, read from its names and shapes alone (encoder depth, width,
//! the patch kernel's rank), and the key/shape check against what a network expects.

use crate::model::Mismatch;
use std::collections::{BTreeSet, HashMap};

/// The family a set of names and shapes belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Family {
    /// A 3-D SAM (SAM-Med3D's names, a patch kernel of rank 5).
    Sam3d { depth: usize, width: i64, kernel: Vec<i64> },
    /// A 2-D SAM (segment-anything: a patch kernel of rank 4).
    Sam2d { depth: usize, width: i64, kernel: Vec<i64> },
    /// SAM names without an image encoder's patch embedding.
    SamPartial,
    /// sam3d-studio's own SAM3D network.
    Sam3dStudio,
    Empty,
    Other,
}

/// Reads the family from names and shapes.
pub fn family(shapes: &[(String, Vec<i64>)]) -> Family {
    if shapes.is_empty() {
        return Family::Empty;
    }
    let sam = shapes.iter().any(|(n, _)| n.starts_with("image_encoder.") || n.starts_with("prompt_encoder.") || n.starts_with("mask_decoder."));
    if sam {
        let kernel = shapes.iter().find(|(n, _)| n == "image_encoder.patch_embed.proj.weight").map(|(_, s)| s.clone());
        let blocks: BTreeSet<usize> = shapes
            .iter()
            .filter_map(|(n, _)| n.strip_prefix("image_encoder.blocks.")?.split('.').next()?.parse().ok())
            .collect();
        let depth = blocks.len();
        return match kernel {
            Some(k) if k.len() == 5 => Family::Sam3d { depth, width: k[0], kernel: k },
            Some(k) if k.len() == 4 => Family::Sam2d { depth, width: k[0], kernel: k },
            _ => Family::SamPartial,
        };
    }
    let ours = ["encoder.", "mask_head.", "generator.", "decoder."];
    if shapes.iter().all(|(n, _)| ours.iter().any(|p| n.starts_with(p))) && shapes.iter().any(|(n, _)| n.starts_with("generator.")) {
        return Family::Sam3dStudio;
    }
    Family::Other
}

fn shape_str(s: &[i64]) -> String {
    format!("[{}]", s.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))
}

/// One line saying what the names and shapes look like.
pub fn describe(shapes: &[(String, Vec<i64>)]) -> String {
    match family(shapes) {
        Family::Sam3d { depth, width, kernel } => {
            let k = shape_str(&kernel);
            match depth {
                12 if width == 768 => format!("SAM-Med3D ViT-B (12 encoder blocks, width 768, 3-D patch kernel {k})"),
                12 => format!("SAM-Med3D's architecture at width {width} (12 encoder blocks, 3-D patch kernel {k})"),
                6 => format!("encoder depth 6 — a distilled FastSAM3D student, not SAM-Med3D (width {width}, 3-D patch kernel {k})"),
                d => format!("a 3-D SAM-family model with encoder depth {d}, not SAM-Med3D's 12 (width {width}, 3-D patch kernel {k})"),
            }
        }
        Family::Sam2d { depth, width, kernel } => {
            let size = match (depth, width) {
                (12, 768) => " ViT-B",
                (24, 1024) => " ViT-L",
                (32, 1280) => " ViT-H",
                _ => "",
            };
            format!(
                "a 2-D SAM{size} checkpoint (patch kernel {}, {depth} encoder blocks), for photographs and slices, not a 3-D SAM-Med3D one",
                shape_str(&kernel)
            )
        }
        Family::SamPartial => "SAM-style names without an image encoder's patch embedding (a partial or decoder-only state dict)".into(),
        Family::Sam3dStudio => {
            "the project's own SAM3D network (its checkpoints are .safetensors files; load it as the project's model, not as SAM-Med3D)".into()
        }
        Family::Empty => "an empty state dict (no tensors)".into(),
        Family::Other => {
            let first: Vec<&str> = shapes.iter().take(3).map(|(n, _)| n.as_str()).collect();
            format!("not a segmentation model's state dict ({} tensors; first names: {})", shapes.len(), first.join(", "))
        }
    }
}

/// Compares names and shapes: `Ok` when `found` has exactly the `expected` names with the same
/// shapes; otherwise every missing, unexpected and mis-shaped name, with notes saying what the
/// file looks like and what the model expects. `path` names the file in the message.
#[allow(clippy::result_large_err)] // the model layer's `Mismatch`, returned once per load
pub fn compare(path: &std::path::Path, found: &[(String, Vec<i64>)], expected: &[(String, Vec<i64>)]) -> Result<(), Mismatch> {
    let have: HashMap<&str, &Vec<i64>> = found.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let want: HashMap<&str, &Vec<i64>> = expected.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let dims = |s: &[i64]| s.iter().map(|&x| x.max(0) as usize).collect::<Vec<_>>();
    let mut m = Mismatch { path: path.to_path_buf(), what: "checkpoint", ..Default::default() };
    for (name, shape) in expected {
        match have.get(name.as_str()) {
            None => m.missing.push(name.clone()),
            Some(s) if *s != shape => m.misshaped.push((name.clone(), dims(s), dims(shape))),
            _ => {}
        }
    }
    m.unexpected = found.iter().filter(|(n, _)| !want.contains_key(n.as_str())).map(|(n, _)| n.clone()).collect();
    if m.is_empty() {
        return Ok(());
    }
    let looks = describe(found);
    let model = describe(expected);
    m.notes.push(format!("the file looks like {looks}"));
    if looks != model {
        m.notes.push(format!("the model is {model}"));
    }
    Err(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[(&str, &[i64])]) -> Vec<(String, Vec<i64>)> {
        names.iter().map(|(n, s)| (n.to_string(), s.to_vec())).collect()
    }

    #[test]
    fn families_from_names_and_ranks() {
        let mut v = set(&[("image_encoder.patch_embed.proj.weight", &[768, 1, 16, 16, 16])]);
        for b in 0..12 {
            v.push((format!("image_encoder.blocks.{b}.norm1.weight"), vec![768]));
        }
        assert_eq!(describe(&v), "SAM-Med3D ViT-B (12 encoder blocks, width 768, 3-D patch kernel [768, 1, 16, 16, 16])");
        v.retain(|(n, _)| !n.starts_with("image_encoder.blocks.") || n.split('.').nth(2).is_some_and(|b| b.parse::<usize>().unwrap_or(99) < 6));
        assert!(describe(&v).starts_with("encoder depth 6 — a distilled FastSAM3D student"), "{}", describe(&v));
        let two_d = set(&[("image_encoder.patch_embed.proj.weight", &[768, 3, 16, 16])]);
        assert!(describe(&two_d).starts_with("a 2-D SAM checkpoint (patch kernel [768, 3, 16, 16]"), "{}", describe(&two_d));
        let ours = set(&[("encoder.patch_embed.weight", &[4]), ("generator.blocks.0.to_qkv.weight", &[4])]);
        assert!(describe(&ours).starts_with("the project's own SAM3D"));
        let other = set(&[("fc.weight", &[10, 4])]);
        assert!(describe(&other).starts_with("not a segmentation model's state dict"));
    }

    #[test]
    fn compare_lists_everything() {
        let want = set(&[("a", &[2, 3]), ("b", &[4]), ("c", &[1])]);
        let found = set(&[("a", &[3, 2]), ("c", &[1]), ("d", &[5])]);
        let m = compare(std::path::Path::new("x.pth"), &found, &want).expect_err("mismatch");
        assert_eq!(m.missing, vec!["b"]);
        assert_eq!(m.unexpected, vec!["d"]);
        assert_eq!(m.misshaped, vec![("a".to_string(), vec![3, 2], vec![2, 3])]);
        let text = m.to_string();
        assert!(text.starts_with("x.pth: this checkpoint does not fit the model"), "{text}");
        assert!(text.contains("a (file [3, 2], model [2, 3])"), "{text}");
        assert!(compare(std::path::Path::new("x.pth"), &want, &want).is_ok());
    }
}
