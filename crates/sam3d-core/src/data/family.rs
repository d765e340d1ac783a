//! Structure families (issue 22's model card reports each): which family a labelled structure
//! belongs to, from its name as TotalSegmentator and the project's phantoms ([`super::scenes`])
//! spell it, and a lesion's size class.

use serde::Serialize;

/// What kind of structure a label is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Solid organs and hollow viscera: liver, spleen, kidneys, heart, brain, stomach, …
    Organ,
    /// Tumours, nodules, metastases, cysts.
    Lesion,
    /// Arteries and veins.
    Vessel,
    /// Lungs, their lobes and the airways.
    Lung,
    /// Vertebrae, ribs, the skull and other bones.
    Bone,
    /// Muscles and what none of the others names.
    Other,
}

impl Family {
    pub const ALL: [Family; 6] = [Family::Organ, Family::Lesion, Family::Vessel, Family::Lung, Family::Bone, Family::Other];

    pub fn name(self) -> &'static str {
        match self {
            Family::Organ => "organs",
            Family::Lesion => "lesions",
            Family::Vessel => "vessels",
            Family::Lung => "lungs and airways",
            Family::Bone => "bone",
            Family::Other => "other",
        }
    }

    /// The family of a structure named `name` (case and separators ignored); `Other` when the
    /// name says nothing known.
    pub fn of(name: &str) -> Family {
        let n = name.to_ascii_lowercase().replace(['-', ' '], "_");
        let has = |words: &[&str]| words.iter().any(|w| n.contains(w));
        if has(&["lesion", "nodule", "tumour", "tumor", "metasta", "cyst", "cancer", "carcinoma", "mass", "neoplasm"]) {
            Family::Lesion
        } else if has(&["lung", "trachea", "bronch", "airway"]) {
            Family::Lung
        } else if has(&[
            "aorta", "artery", "arteries", "vein", "vena", "vessel", "trunk", "iliac_a", "portal", "carotid", "subclavian", "atrial_appendage",
        ]) {
            Family::Vessel
        } else if has(&[
            "vertebra", "rib_", "ribs", "skull", "sacrum", "femur", "hip", "humerus", "scapula", "clavic", "sternum", "costal", "bone", "pelvi", "spine",
        ]) {
            Family::Bone
        } else if has(&[
            "liver", "spleen", "kidney", "pancrea", "stomach", "gallbladder", "heart", "brain", "bladder", "prostate", "adrenal", "thyroid", "duoden",
            "bowel", "colon", "esophag", "oesophag", "uterus",
        ]) {
            Family::Organ
        } else {
            Family::Other
        }
    }
}

/// A lesion's size class by its reference volume (ml): `< 5 ml`, `5–50 ml`, `≥ 50 ml`.
pub fn lesion_size_class(ml: f64) -> &'static str {
    if ml < 5.0 {
        "< 5 ml"
    } else if ml < 50.0 {
        "5-50 ml"
    } else {
        ">= 50 ml"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_totalsegmentator_and_the_scenes_fall_in_their_families() {
        let cases = [
            ("liver", Family::Organ),
            ("kidney_left", Family::Organ),
            ("Heart", Family::Organ),
            ("urinary_bladder", Family::Organ),
            ("brain", Family::Organ),
            ("kidney_cyst_left", Family::Lesion),
            ("lung_nodule_2", Family::Lesion),
            ("brain_tumour", Family::Lesion),
            ("liver lesion 1", Family::Lesion),
            ("lung_upper_lobe_left", Family::Lung),
            ("trachea", Family::Lung),
            ("aorta", Family::Vessel),
            ("inferior_vena_cava", Family::Vessel),
            ("portal_vein_and_splenic_vein", Family::Vessel),
            ("brachiocephalic_trunk", Family::Vessel),
            ("iliac_artery_left", Family::Vessel),
            ("pulmonary_artery", Family::Vessel),
            ("vertebrae_L3", Family::Bone),
            ("rib_left_7", Family::Bone),
            ("skull", Family::Bone),
            ("hip_right", Family::Bone),
            ("iliopsoas_left", Family::Other),
            ("gluteus_maximus_right", Family::Other),
        ];
        for (name, want) in cases {
            assert_eq!(Family::of(name), want, "{name}");
        }
    }

    #[test]
    fn size_classes_split_at_5_and_50_ml() {
        assert_eq!(lesion_size_class(0.5), "< 5 ml");
        assert_eq!(lesion_size_class(4.99), "< 5 ml");
        assert_eq!(lesion_size_class(5.0), "5-50 ml");
        assert_eq!(lesion_size_class(49.9), "5-50 ml");
        assert_eq!(lesion_size_class(50.0), ">= 50 ml");
    }
}
