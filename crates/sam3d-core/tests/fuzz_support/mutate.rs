//! Mutations of one file: bit flips, interesting bytes and integers (at random offsets and at
//! the format's header fields), truncation (random and at structural boundaries), chunk
//! duplication and removal, and for text headers the replacement of a field's value by a
//! huge, negative, NaN or otherwise hostile one. Deterministic for a given [`Rng`].

/// splitmix64: small, seedable, good enough to pick mutations.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }
    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> Option<&'a T> {
        if xs.is_empty() { None } else { Some(&xs[self.below(xs.len())]) }
    }
}

/// What is known of a file's structure, to aim mutations where parsers decide things.
#[derive(Clone, Debug, Default)]
pub struct Hints {
    /// Offsets where a structure begins or ends (header end, element starts, …).
    pub boundaries: Vec<usize>,
    /// Integer or float header fields: (offset, width in bytes).
    pub fields: Vec<(usize, usize)>,
    /// Length of a text header at the start of the file (0: not a text format).
    pub text_header: usize,
    /// The whole file is text (a label table).
    pub all_text: bool,
}

const BYTES: [u8; 7] = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE, 0x20];

const INTS: [u64; 18] = [
    0, 1, u64::MAX, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x1_0000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0xFFFF_FFFE,
    0x4000_0000, 0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, 0xFFFF_FFF0,
];

const FLOATS: [f64; 9] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e30, -1e30, 0.0, -0.0, 1e-300, 3.4e38];

/// Values a text field may be replaced by.
const TEXT_VALUES: [&str; 24] = [
    "0", "-1", "-2147483648", "2147483647", "4294967296", "18446744073709551617", "99999999999999999999999", "1e308", "-1e308",
    "nan", "NaN", "inf", "-inf", "1e-320", "", "(nan,nan,nan)", "(1e308,0,0)", "none", "65536", "100000 100000 100000", "-5",
    "0x10", "1.5", "\"",
];

/// Applies one to four mutations to `data`; returns what was done, for the report.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, hints: &Hints) -> String {
    let n = 1 + rng.below(4);
    (0..n).map(|_| mutate_once(rng, data, hints)).collect::<Vec<_>>().join(", ")
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, hints: &Hints) -> String {
    let texty = hints.all_text || hints.text_header > 0;
    let choice = rng.below(if texty { 10 } else { 8 });
    match choice {
        0 => flip_bits(rng, data),
        1 => set_byte(rng, data),
        2 => set_int(rng, data, hints, false),
        3 => set_int(rng, data, hints, true),
        4 => truncate(rng, data, hints),
        5 => duplicate_chunk(rng, data),
        6 => remove_chunk(rng, data),
        7 => set_float(rng, data, hints),
        _ => replace_text_value(rng, data, hints),
    }
}

fn flip_bits(rng: &mut Rng, data: &mut [u8]) -> String {
    if data.is_empty() {
        return "flip (empty)".into();
    }
    let k = 1 + rng.below(8);
    for _ in 0..k {
        let at = rng.below(data.len());
        data[at] ^= 1 << rng.below(8);
    }
    format!("flip {k} bits")
}

fn set_byte(rng: &mut Rng, data: &mut [u8]) -> String {
    if data.is_empty() {
        return "byte (empty)".into();
    }
    let at = rng.below(data.len());
    let v = *rng.pick(&BYTES).unwrap_or(&0);
    data[at] = v;
    format!("byte {v:#x} at {at}")
}

/// Where to write a number: a known header field (with its width) or anywhere.
fn target(rng: &mut Rng, data: &[u8], hints: &Hints) -> (usize, usize) {
    if let Some(&(at, w)) = rng.pick(&hints.fields).filter(|_| !rng.one_in(4)) {
        return (at, w);
    }
    if let Some(&b) = rng.pick(&hints.boundaries).filter(|_| rng.one_in(2)) {
        // Just after an element start: where tags, lengths and sizes sit.
        return (b + rng.below(8), *rng.pick(&[2, 4]).unwrap_or(&4));
    }
    (rng.below(data.len().max(1)), *rng.pick(&[1, 2, 4, 8]).unwrap_or(&4))
}

fn set_int(rng: &mut Rng, data: &mut [u8], hints: &Hints, big_endian: bool) -> String {
    let (at, w) = target(rng, data, hints);
    let v = *rng.pick(&INTS).unwrap_or(&0);
    let bytes = if big_endian { v.to_be_bytes()[8 - w..].to_vec() } else { v.to_le_bytes()[..w].to_vec() };
    write_at(data, at, &bytes);
    format!("int {v:#x} ({w} B, {}) at {at}", if big_endian { "BE" } else { "LE" })
}

fn set_float(rng: &mut Rng, data: &mut [u8], hints: &Hints) -> String {
    let (at, w) = target(rng, data, hints);
    let v = *rng.pick(&FLOATS).unwrap_or(&0.0);
    let bytes = if w >= 8 { v.to_le_bytes().to_vec() } else { (v as f32).to_le_bytes().to_vec() };
    write_at(data, at, &bytes);
    format!("float {v} at {at}")
}

fn write_at(data: &mut [u8], at: usize, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if let Some(d) = data.get_mut(at + i) {
            *d = *b;
        }
    }
}

fn truncate(rng: &mut Rng, data: &mut Vec<u8>, hints: &Hints) -> String {
    let mut cuts: Vec<usize> = hints.boundaries.clone();
    if hints.text_header > 0 {
        cuts.push(hints.text_header);
    }
    cuts.extend([data.len().saturating_sub(1), data.len() / 2]);
    let at = match rng.pick(&cuts).filter(|_| rng.one_in(2)) {
        Some(&b) => (b + rng.below(3)).saturating_sub(1),
        None => rng.below(data.len().max(1)),
    };
    data.truncate(at);
    format!("truncate at {at}")
}

fn chunk(rng: &mut Rng, len: usize) -> (usize, usize) {
    let a = rng.below(len.max(1));
    let max = (len - a.min(len)).min(if rng.one_in(4) { 4096 } else { 64 });
    (a, a + rng.below(max + 1))
}

fn duplicate_chunk(rng: &mut Rng, data: &mut Vec<u8>) -> String {
    let (a, b) = chunk(rng, data.len());
    let piece = data[a..b].to_vec();
    let at = rng.below(data.len() + 1);
    data.splice(at..at, piece);
    format!("duplicate {a}..{b} at {at}")
}

fn remove_chunk(rng: &mut Rng, data: &mut Vec<u8>) -> String {
    let (a, b) = chunk(rng, data.len());
    data.drain(a..b);
    format!("remove {a}..{b}")
}

/// Replaces one whitespace-separated word of one line of the text (the header, or the whole
/// file for a label table) by a hostile value, or duplicates or drops a line.
fn replace_text_value(rng: &mut Rng, data: &mut Vec<u8>, hints: &Hints) -> String {
    let end = if hints.all_text { data.len() } else { hints.text_header.min(data.len()) };
    let text = String::from_utf8_lossy(&data[..end]).into_owned();
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    if lines.is_empty() {
        return "text (empty)".into();
    }
    let li = rng.below(lines.len());
    let what = match rng.below(6) {
        0 => {
            let l = lines[li].clone();
            lines.insert(li, l);
            format!("duplicate line {}", li + 1)
        }
        1 => {
            lines.remove(li);
            format!("drop line {}", li + 1)
        }
        _ => {
            let line = lines[li].clone();
            let words: Vec<(usize, &str)> = line.split_whitespace().map(|w| (w.as_ptr() as usize - line.as_ptr() as usize, w)).collect();
            let value = *rng.pick(&TEXT_VALUES).unwrap_or(&"0");
            let value = if rng.one_in(20) { "9".repeat(400) } else { value.to_string() };
            match rng.pick(&words).filter(|_| words.len() > 1 || rng.one_in(3)) {
                Some(&(at, w)) => {
                    // Keep the field name of `name: value` / `Key = value` lines: skip word 0.
                    let (at, w) = if at == 0 && words.len() > 1 && !hints.all_text { words[1 + rng.below(words.len() - 1)] } else { (at, w) };
                    let new = format!("{}{value}{}", &line[..at], &line[at + w.len()..]);
                    lines[li] = new;
                    format!("line {} word '{w}' → '{}'", li + 1, value.chars().take(24).collect::<String>())
                }
                None => format!("line {} untouched", li + 1),
            }
        }
    };
    let mut out = lines.concat().into_bytes();
    out.extend_from_slice(&data[end..]);
    *data = out;
    what
}
