//! One slice of a volume → an RGBA image: window/level to grey, label overlay blended in
//! (filled or outlined). Only the slice's own voxels are touched, never the whole volume.

use crate::geometry::SliceGeometry;
use crate::volume::intensity::Window;
use crate::volume::{LabelMap, OnGrid, Volume};
use egui::Color32;
use rayon::prelude::*;

/// How labels are drawn over the grey image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OverlayMode {
    /// Label areas tinted with the label colour at the chosen opacity.
    #[default]
    Fill,
    /// Only each label's boundary pixels, opaque.
    Outline,
}

/// A label map to blend over the slice.
#[derive(Clone, Copy, Debug)]
pub struct Overlay<'a> {
    /// On the volume's grid (checked when it was loaded).
    pub labels: &'a LabelMap,
    /// `[r, g, b, a]` by label id, `a = 0` for labels not drawn (see `LabelTable::lut`).
    pub lut: &'a [[u8; 4]],
    /// 0..=1, for [`OverlayMode::Fill`].
    pub opacity: f32,
    pub mode: OverlayMode,
}

/// Slices at least this big are walked by several threads (a sagittal slice of a 512² CT
/// misses the cache at every pixel; more cores keep more misses in flight).
const PARALLEL_PIXELS: usize = 1 << 15;

/// Buffers reused from one slice to the next (no allocation per frame once warm).
#[derive(Default, Debug)]
pub struct SliceScratch {
    labels: Vec<u16>,
}

/// Renders slice `n` of `geom`'s plane: `size = [extent_u, extent_v]` pixels, row 0 at the top
/// (largest v), exactly [`SliceGeometry::voxel_of_pixel`]'s layout. `pixels` is overwritten.
pub fn render_slice<T: crate::volume::Voxel>(
    volume: &Volume<T>,
    geom: &SliceGeometry,
    n: usize,
    window: Window,
    overlay: Option<Overlay<'_>>,
    scratch: &mut SliceScratch,
    pixels: &mut Vec<Color32>,
) -> [usize; 2] {
    let [w, h] = [geom.extent[0], geom.extent[1]];
    pixels.clear();
    pixels.resize(w * h, Color32::BLACK);
    if w == 0 || h == 0 || n >= geom.extent[2] {
        return [w, h];
    }
    let shape = volume.shape();
    let walk = geom.pixel_walk(n);
    // C-order [k, j, i] element strides for i, j, k.
    let stride = [1isize, shape.ni as isize, (shape.ni * shape.nj) as isize];
    let offset = |ijk: [isize; 3]| ijk[0] * stride[0] + ijk[1] * stride[1] + ijk[2] * stride[2];
    let start = offset(walk.start.map(|x| x as isize));
    let d_col = offset(walk.per_col);
    let d_row = offset(walk.per_row);

    let low = window.low();
    let inv_w = 1.0 / window.width.max(1e-6);
    let grey = |x: T| Color32::from_gray((((x.to_f32() - low) * inv_w).clamp(0.0, 1.0) * 255.0 + 0.5) as u8);
    let label_data = overlay.filter(|ov| ov.labels.shape() == shape).map(|ov| ov.labels.data.as_slice());
    let labels = &mut scratch.labels;
    labels.clear();
    if label_data.is_some() {
        labels.resize(w * h, 0);
    }
    // One walk over the slice reads both the intensity and the label of each voxel, so their
    // cache misses overlap (a sagittal slice touches a new cache line at every pixel).
    match (volume.data.as_slice(), label_data) {
        (Some(data), None) => {
            let fill_row = |(r, row): (usize, &mut [Color32])| {
                let mut off = start + r as isize * d_row;
                for px in row {
                    *px = grey(data[off as usize]);
                    off += d_col;
                }
            };
            if w * h >= PARALLEL_PIXELS {
                pixels.par_chunks_exact_mut(w).enumerate().for_each(fill_row);
            } else {
                pixels.chunks_exact_mut(w).enumerate().for_each(fill_row);
            }
        }
        (Some(data), Some(Some(ld))) => {
            let fill_row = |(r, (row, lrow)): (usize, (&mut [Color32], &mut [u16]))| {
                let mut off = start + r as isize * d_row;
                for (px, l) in row.iter_mut().zip(lrow.iter_mut()) {
                    *px = grey(data[off as usize]);
                    *l = ld[off as usize];
                    off += d_col;
                }
            };
            if w * h >= PARALLEL_PIXELS {
                pixels.par_chunks_exact_mut(w).zip(labels.par_chunks_exact_mut(w)).enumerate().for_each(fill_row);
            } else {
                pixels.chunks_exact_mut(w).zip(labels.chunks_exact_mut(w)).enumerate().for_each(fill_row);
            }
        }
        _ => {
            // Not in standard layout (the loader converts, so only for computed volumes).
            for r in 0..h {
                for c in 0..w {
                    let [i, j, k] = geom.voxel_of_pixel(c, r, n);
                    pixels[r * w + c] = grey(volume.data[[k, j, i]]);
                    if let Some(ov) = overlay.filter(|_| label_data.is_some()) {
                        labels[r * w + c] = ov.labels.data[[k, j, i]];
                    }
                }
            }
        }
    }
    let Some(ov) = overlay else { return [w, h] };
    if label_data.is_none() {
        return [w, h]; // never happens: label maps are checked against the volume on load
    }
    let colour_of = |l: u16| -> Option<[u8; 4]> { ov.lut.get(l as usize).copied().filter(|c| c[3] != 0) };
    match ov.mode {
        OverlayMode::Fill => {
            let a = (ov.opacity.clamp(0.0, 1.0) * 256.0) as u32;
            if a == 0 {
                return [w, h];
            }
            for (px, &l) in pixels.iter_mut().zip(labels.iter()) {
                if l == 0 {
                    continue;
                }
                if let Some([cr, cg, cb, _]) = colour_of(l) {
                    *px = blend(*px, [cr, cg, cb], a);
                }
            }
        }
        OverlayMode::Outline => {
            for r in 0..h {
                for c in 0..w {
                    let l = labels[r * w + c];
                    if l == 0 {
                        continue;
                    }
                    let Some([cr, cg, cb, _]) = colour_of(l) else { continue };
                    let edge = (c > 0 && labels[r * w + c - 1] != l)
                        || (c + 1 < w && labels[r * w + c + 1] != l)
                        || (r > 0 && labels[(r - 1) * w + c] != l)
                        || (r + 1 < h && labels[(r + 1) * w + c] != l);
                    if edge {
                        pixels[r * w + c] = Color32::from_rgb(cr, cg, cb);
                    }
                }
            }
        }
    }
    [w, h]
}

/// `base·(1−a) + colour·a` with `a` in 1/256ths.
#[inline]
fn blend(base: Color32, colour: [u8; 3], a: u32) -> Color32 {
    let mix = |b: u8, c: u8| ((b as u32 * (256 - a) + c as u32 * a) >> 8) as u8;
    Color32::from_rgb(mix(base.r(), colour[0]), mix(base.g(), colour[1]), mix(base.b(), colour[2]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{DisplayConvention, GridShape, RasFromVoxel, ViewPlane};
    use ndarray::Array3;

    fn vol(affine: RasFromVoxel) -> (Volume, LabelMap) {
        let shape = GridShape::new(4, 3, 2);
        let data = Array3::from_shape_fn(shape.array_shape(), |(k, j, i)| (100 * k + 10 * j + i) as f32);
        let labels = Array3::from_shape_fn(shape.array_shape(), |(k, j, i)| if i == 1 && j == 1 { 2 + k as u16 } else { 0 });
        (Volume::new(data, affine).expect("ok"), LabelMap::new(labels, affine).expect("ok"))
    }

    #[test]
    fn every_pixel_is_its_voxel() {
        // Identity window over 0..255 so grey == intensity for the values used here.
        let win = Window { level: 127.5, width: 255.0 };
        for affine in [RasFromVoxel::identity(), RasFromVoxel::scale_translate([-1.0, -2.0, 3.0], [0.0; 3])] {
            let (v, _) = vol(affine);
            for plane in ViewPlane::ALL {
                let g = SliceGeometry::new(plane, &affine, v.shape(), DisplayConvention::Radiological);
                for n in 0..g.extent[2] {
                    let mut px = Vec::new();
                    let size = render_slice(&v, &g, n, win, None, &mut SliceScratch::default(), &mut px);
                    assert_eq!(size, [g.extent[0], g.extent[1]]);
                    for r in 0..size[1] {
                        for c in 0..size[0] {
                            let [i, j, k] = g.voxel_of_pixel(c, r, n);
                            let want = (100 * k + 10 * j + i) as u8;
                            assert_eq!(px[r * size[0] + c].r(), want, "{plane:?} n={n} c={c} r={r}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn fill_and_outline() {
        let a = RasFromVoxel::identity();
        let (v, l) = vol(a);
        let g = SliceGeometry::new(ViewPlane::Axial, &a, v.shape(), DisplayConvention::Neurological);
        let mut lut = vec![[0u8; 4]; 4];
        lut[2] = [255, 0, 0, 255];
        let win = Window { level: 0.0, width: 1.0 }; // every voxel > 0.5 → white
        let mut px = Vec::new();
        let ov = Overlay { labels: &l, lut: &lut, opacity: 0.5, mode: OverlayMode::Fill };
        render_slice(&v, &g, 0, win, Some(ov), &mut SliceScratch::default(), &mut px);
        // Neurological, RAS: column = i, row 0 = top = largest j.
        let at = |px: &Vec<Color32>, i: usize, j: usize| px[(2 - j) * 4 + i];
        assert_eq!(at(&px, 1, 1), Color32::from_rgb(255, 127, 127));
        assert_eq!(at(&px, 2, 1), Color32::from_gray(255));
        // Slice k=1 holds label 3, which the LUT does not draw.
        render_slice(&v, &g, 1, win, Some(ov), &mut SliceScratch::default(), &mut px);
        assert_eq!(at(&px, 1, 1), Color32::from_gray(255));
        let ov = Overlay { mode: OverlayMode::Outline, ..ov };
        render_slice(&v, &g, 0, win, Some(ov), &mut SliceScratch::default(), &mut px);
        assert_eq!(at(&px, 1, 1), Color32::from_rgb(255, 0, 0), "a one-voxel label is all boundary");
    }
}
