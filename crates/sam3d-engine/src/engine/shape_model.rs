//! The seam between a click's pipeline and a network. [`super::Session`] runs one click as:
//! cut the click's slice and output cube ([`crate::data::click`]), a 2D mask, a signed distance
//! on the cube, then everything after the network (the three planes fused, test views, the
//! component on the scan's grid, refinement by the image, continuation past the cube's faces,
//! the join of region growing). Only the two network steps differ between model families; they
//! are this trait, so a second family (SAM-Med3D) implements [`ShapeModel`] and reuses the rest.

use super::EngineError;
use crate::data::click::{self, ClickParams, ClickSample};
use crate::model::convert::{array_from, inputs_for};
use crate::model::{Model, NetInputs};
use ndarray::{Array2, Array3, Ix3};

/// A network that turns a click's sample into a 2D mask and a 3D signed distance.
pub trait ShapeModel {
    /// How a click's sample is cut: slice size and step, the output cube, context cubes.
    fn click_params(&self) -> ClickParams;
    /// The 2D mask on each sample's slice (`[S, S]`), given only the click at its centre. One
    /// batch; a single sample is a batch of one.
    fn masks2d(&self, samples: &[&ClickSample]) -> Result<Vec<Array2<bool>>, EngineError>;
    /// For each sample and its 2D mask: the output channel the click selects and the signed
    /// distance on the sample's output cube (`[gk, gj, gi]`, mm, negative inside).
    fn sdfs(&self, samples: &[&ClickSample], masks: &[&Array2<bool>]) -> Result<Vec<(usize, Array3<f32>)>, EngineError>;
}

impl ShapeModel for Model {
    fn click_params(&self) -> ClickParams {
        self.config().click_params()
    }

    /// The 2D head's mask for each click: prompt = disc around the click; threshold 0.5; the
    /// 4-connected component through the click (the disc itself when the head finds nothing
    /// there).
    fn masks2d(&self, samples: &[&ClickSample]) -> Result<Vec<Array2<bool>>, EngineError> {
        let Some(first) = samples.first() else { return Ok(Vec::new()) };
        let s = first.image.nrows();
        let _inference = tch::no_grad_guard();
        let device = self.device();
        let prior = click::click_prior_mask(s, self.config().input.prior_radius_px);
        let inputs: Vec<NetInputs> = samples.iter().map(|x| inputs_for(x, &prior, device)).collect();
        let logits = self.forward_mask(&batch_inputs(inputs), false);
        let c = s / 2;
        (0..samples.len())
            .map(|b| {
                let l = array_from(&logits.get(b as i64).get(0))?.into_dimensionality::<ndarray::Ix2>().map_err(|e| tch::TchError::Shape(e.to_string()))?;
                let mut m = l.mapv(|x| x > 0.0);
                if !m[[c, c]] {
                    m.zip_mut_with(&prior, |a, &b| *a |= b);
                }
                Ok(component_2d(&m, [c, c]))
            })
            .collect()
    }

    /// The 3D stage in one batch; of a multi-class model's channels, the one most inside at the
    /// cube's centre.
    fn sdfs(&self, samples: &[&ClickSample], masks: &[&Array2<bool>]) -> Result<Vec<(usize, Array3<f32>)>, EngineError> {
        let _inference = tch::no_grad_guard();
        let device = self.device();
        let inputs: Vec<NetInputs> = samples.iter().zip(masks).map(|(x, m)| inputs_for(x, m, device)).collect();
        let out = self.forward_t(&batch_inputs(inputs), false);
        (0..samples.len())
            .map(|b| {
                let sdf_all = array_from(&out.sdf.get(b as i64))?.into_dimensionality::<ndarray::Ix4>().map_err(|e| tch::TchError::Shape(e.to_string()))?;
                let class = choose_class(&sdf_all);
                let sdf = sdf_all.index_axis(ndarray::Axis(0), class).to_owned().into_dimensionality::<Ix3>().map_err(|e| tch::TchError::Shape(e.to_string()))?;
                Ok((class, sdf))
            })
            .collect()
    }
}

/// Inputs of single clicks stacked into one batch (a single one passes through).
fn batch_inputs(mut v: Vec<NetInputs>) -> NetInputs {
    if v.len() == 1 {
        return v.remove(0);
    }
    let cat = |f: &dyn Fn(&NetInputs) -> &tch::Tensor| tch::Tensor::cat(&v.iter().map(f).collect::<Vec<_>>(), 0);
    let cat_opt = |f: &dyn Fn(&NetInputs) -> Option<&tch::Tensor>| {
        let parts: Option<Vec<&tch::Tensor>> = v.iter().map(f).collect();
        parts.map(|p| tch::Tensor::cat(&p, 0))
    };
    NetInputs {
        image: cat(&|x| &x.image),
        mask: cat(&|x| &x.mask),
        pointmap: cat(&|x| &x.pointmap),
        context: cat_opt(&|x| x.context.as_ref()),
        guide: cat_opt(&|x| x.guide.as_ref()),
    }
}

/// 4-connected component of `seed` in a 2D mask.
pub(crate) fn component_2d(m: &Array2<bool>, seed: [usize; 2]) -> Array2<bool> {
    let (h, w) = m.dim();
    let mut out = Array2::from_elem((h, w), false);
    if !m[seed] {
        return out;
    }
    let mut stack = vec![seed];
    out[seed] = true;
    while let Some([r, c]) = stack.pop() {
        let nb = [(r.wrapping_sub(1), c), (r + 1, c), (r, c.wrapping_sub(1)), (r, c + 1)];
        for (rr, cc) in nb {
            if rr < h && cc < w && m[[rr, cc]] && !out[[rr, cc]] {
                out[[rr, cc]] = true;
                stack.push([rr, cc]);
            }
        }
    }
    out
}

/// The SDF channel most inside at the cube's centre (where the click is).
fn choose_class(sdf: &ndarray::Array4<f32>) -> usize {
    let g = sdf.shape()[1];
    let (lo, hi) = ((g - 1) / 2, g / 2);
    let mut best = (0, f32::INFINITY);
    for c in 0..sdf.shape()[0] {
        let mut v = 0.0;
        for k in lo..=hi {
            for j in lo..=hi {
                for i in lo..=hi {
                    v += sdf[[c, k, j, i]];
                }
            }
        }
        if v < best.1 {
            best = (c, v);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::click::PreparedVolume;
    use crate::geometry::{RasFromVoxel, RasMm, ViewPlane};
    use crate::volume::Volume;
    use std::sync::Arc;
    use tch::Device;

    /// One batch of the three planes' clicks gives what three single runs give: the batch
    /// keeps each click's inputs (slice, mask, context, guide) to itself.
    #[test]
    fn batched_planes_match_single_runs() {
        let model = Model::new(crate::model::Config::tiny(), Device::Cpu);
        let p = model.config().click_params();
        // A bright ellipsoid in a darker body on a 3 mm grid, with a gradient so planes differ.
        let data = Array3::from_shape_fn((40, 44, 48), |(k, j, i)| {
            let (x, y, z) = ((i as f32 - 22.0) / 12.0, (j as f32 - 20.0) / 8.0, (k as f32 - 21.0) / 10.0);
            if x * x + y * y + z * z < 1.0 { 60.0 + i as f32 } else { -20.0 + 2.0 * k as f32 }
        });
        let vol = Volume::new(data, RasFromVoxel::scale_translate([3.0; 3], [-70.0, -60.0, -50.0])).expect("volume");
        let pv = PreparedVolume::new(Arc::new(vol), Some(crate::volume::Modality::Ct), p.ct_window_hu).expect("prepared");
        let click = RasMm::new(-5.0, 0.0, 12.0);
        let samples: Vec<ClickSample> = ViewPlane::ALL.into_iter().map(|q| click::prepare_click(&pv, click, q, &p).expect("click")).collect();
        let refs: Vec<&ClickSample> = samples.iter().collect();
        let masks = model.masks2d(&refs).expect("masks");
        let mask_refs: Vec<&Array2<bool>> = masks.iter().collect();
        let sdfs = model.sdfs(&refs, &mask_refs).expect("sdfs");
        assert_eq!(sdfs.len(), 3);
        for (b, s) in samples.iter().enumerate() {
            let single_mask = model.masks2d(&[s]).expect("mask").remove(0);
            let differ = single_mask.iter().zip(masks[b].iter()).filter(|(a, c)| a != c).count();
            assert!(differ * 100 <= single_mask.len(), "plane {b}: {differ} pixels differ");
            let (class, single) = model.sdfs(&[s], &[&masks[b]]).expect("sdf").remove(0);
            assert_eq!(class, sdfs[b].0);
            let worst = single.iter().zip(sdfs[b].1.iter()).map(|(a, c)| (a - c).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-3, "plane {b}: batched SDF differs by {worst}");
        }
        // The planes see different slices, so their shapes differ: a mix-up would show.
        let spread = sdfs[0].1.iter().zip(sdfs[1].1.iter()).map(|(a, c)| (a - c).abs()).fold(0.0f32, f32::max);
        assert!(spread > 1e-3, "axial and coronal SDFs identical");
    }

    #[test]
    fn component_2d_is_4_connected() {
        let mut m = Array2::from_elem((4, 4), false);
        m[[1, 1]] = true;
        m[[1, 2]] = true;
        m[[2, 3]] = true; // diagonal only: not connected
        let c = component_2d(&m, [1, 1]);
        assert_eq!(c.iter().filter(|&&x| x).count(), 2);
    }
}
