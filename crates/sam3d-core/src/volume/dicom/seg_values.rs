//! Values a DICOM SEG writer needs that have rules of their own: decimal strings (DS, at most
//! 16 characters), the scaled CIELab of a display colour, today's date and time (DA, TM), and
//! text that fits a LO (64 characters, no backslash).

/// `x` as a DS: at most 16 characters, as many decimals as fit (trailing zeros dropped),
/// exponent form only for magnitudes that need it.
pub(crate) fn ds(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return "0".into();
    }
    for decimals in (0..=10).rev() {
        let s = format!("{x:.decimals$}");
        let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
        if s.len() <= 16 && s != "-0" && (s != "0" || x.abs() < 5e-11) {
            return s;
        }
    }
    for digits in (0..=9).rev() {
        let s = format!("{x:.digits$e}");
        let s = match s.split_once('e') {
            Some((m, e)) if m.contains('.') => format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.')),
            _ => s,
        };
        if s.len() <= 16 {
            return s;
        }
    }
    "0".into()
}

/// An sRGB colour (0–255) as RecommendedDisplayCIELabValue: CIELab (D65 white, as PixelMed,
/// highdicom and dcmqi convert it) scaled to 0–65535: L* over 0–100, a* and b* over −128–127.
pub(crate) fn cielab_value(rgb: [u8; 3]) -> [u16; 3] {
    let lin = |c: u8| {
        let c = c as f64 / 255.0;
        100.0 * if c > 0.04045 { ((c + 0.055) / 1.055).powf(2.4) } else { c / 12.92 }
    };
    let [r, g, b] = rgb.map(lin);
    let x = (r * 0.4124 + g * 0.3576 + b * 0.1805) / 95.047;
    let y = (r * 0.2126 + g * 0.7152 + b * 0.0722) / 100.0;
    let z = (r * 0.0193 + g * 0.1192 + b * 0.9505) / 108.883;
    let f = |t: f64| if t >= 8.856_451_679_035_631e-3 { t.cbrt() } else { 841.0 / 108.0 * t + 4.0 / 29.0 };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    let (l, a, bb) = (116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz));
    let scale = |v: f64, lo: f64, span: f64| ((v.clamp(lo, lo + span) - lo) * 65535.0 / span).round() as u16;
    [scale(l, 0.0, 100.0), scale(a, -128.0, 255.0), scale(bb, -128.0, 255.0)]
}

/// RecommendedDisplayCIELabValue back to an sRGB colour (0–255): the inverse of
/// [`cielab_value`] (D65 white), out-of-gamut values clamped.
pub(crate) fn rgb_of_cielab(value: [u16; 3]) -> [u8; 3] {
    let unscale = |v: u16, lo: f64, span: f64| v as f64 * span / 65535.0 + lo;
    let (l, a, b) = (unscale(value[0], 0.0, 100.0), unscale(value[1], -128.0, 255.0), unscale(value[2], -128.0, 255.0));
    let fy = (l + 16.0) / 116.0;
    let (fx, fz) = (fy + a / 500.0, fy - b / 200.0);
    let finv = |t: f64| if t > 6.0 / 29.0 { t * t * t } else { (t - 4.0 / 29.0) * 108.0 / 841.0 };
    let (x, y, z) = (finv(fx) * 0.95047, finv(fy), finv(fz) * 1.08883);
    let r = 3.2404542 * x - 1.5371385 * y - 0.4985314 * z;
    let g = -0.9692660 * x + 1.8760108 * y + 0.0415560 * z;
    let bl = 0.0556434 * x - 0.2040259 * y + 1.0572252 * z;
    let gamma = |c: f64| {
        let c = c.clamp(0.0, 1.0);
        let s = if c <= 0.0031308 { 12.92 * c } else { 1.055 * c.powf(1.0 / 2.4) - 0.055 };
        (s * 255.0).round().clamp(0.0, 255.0) as u8
    };
    [gamma(r), gamma(g), gamma(bl)]
}

/// The current UTC date and time as DA (`YYYYMMDD`) and TM (`HHMMSS`).
pub(crate) fn now_da_tm() -> (String, String) {
    let ([y, m, d], [hh, mm, ss]) = crate::utc::utc_parts(std::time::SystemTime::now());
    (format!("{y:04}{m:02}{d:02}"), format!("{hh:02}{mm:02}{ss:02}"))
}

/// Text as a LO value: control characters and backslashes (the value separator) become
/// spaces, at most 64 characters.
pub(crate) fn lo(text: &str) -> String {
    text.chars().map(|c| if c == '\\' || c.is_control() { ' ' } else { c }).take(64).collect::<String>().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_fit_sixteen_characters_and_keep_precision() {
        assert_eq!(ds(1.5), "1.5");
        assert_eq!(ds(-0.0), "0");
        assert_eq!(ds(-123.456789012345), "-123.4567890123");
        assert_eq!(ds(std::f64::consts::FRAC_1_SQRT_2), "0.7071067812");
        assert_eq!(ds(1e-12), "0"); // below a tenth of a nanometre or a cosine of 1e-11: zero
        assert_eq!(ds(-2.5e17), "-2.5e17");
        for x in [1.0 / 3.0, -98765.4321, 1e20, -2.5e-7, 123456789012.5] {
            let s = ds(x);
            assert!(s.len() <= 16, "{s}");
            let back: f64 = s.parse().expect("number");
            assert!((back - x).abs() <= 1e-9 * x.abs().max(1.0), "{x} → {s}");
        }
    }

    #[test]
    fn cielab_matches_the_pixelmed_conversion() {
        // highdicom: CIELabColor.from_rgb(...).value
        assert_eq!(cielab_value([255, 255, 255]), [65535, 32897, 32893]);
        assert_eq!(cielab_value([0, 255, 0]), [57498, 10747, 54274]);
        assert_eq!(cielab_value([0, 0, 0]), [0, 32896, 32896]);
        assert_eq!(cielab_value([255, 165, 0]), [49107, 39048, 53188]);
    }

    #[test]
    fn cielab_turns_back_into_the_same_rgb() {
        for rgb in [[255, 255, 255], [0, 0, 0], [0, 255, 0], [255, 165, 0], [128, 174, 128], [241, 214, 145], [12, 200, 255], [1, 2, 3]] {
            assert_eq!(rgb_of_cielab(cielab_value(rgb)), rgb, "{rgb:?}");
        }
    }

    #[test]
    fn dates_and_long_strings() {
        let (d, t) = now_da_tm();
        assert!(d.len() == 8 && d.starts_with("20") && t.len() == 6, "{d} {t}");
        assert_eq!(lo("a\\b\tc"), "a b c");
        assert_eq!(lo(&"x".repeat(100)).len(), 64);
    }
}
