//! ndarray ↔ tensor conversion, and the network's inputs from a preprocessed click.

use super::net::NetInputs;
use crate::data::click::{ClickSample, masked_pointmap};
use ndarray::{Array2, Array3, ArrayD, IxDyn};
use tch::{Device, Kind, Tensor};

/// A float array as a tensor of the same shape on `device`.
pub fn tensor_from<D: ndarray::Dimension>(a: &ndarray::Array<f32, D>, device: Device) -> Tensor {
    let shape: Vec<i64> = a.shape().iter().map(|&x| x as i64).collect();
    let t = match a.as_slice() {
        Some(s) => Tensor::from_slice(s),
        None => Tensor::from_slice(&a.iter().copied().collect::<Vec<_>>()),
    };
    t.reshape(&shape).to_device(device)
}

/// A tensor (any device, any float kind) as an `f32` array of the same shape.
pub fn array_from(t: &Tensor) -> Result<ArrayD<f32>, tch::TchError> {
    let t = t.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let shape: Vec<usize> = t.size().iter().map(|&x| x as usize).collect();
    let v = Vec::<f32>::try_from(&t.reshape([-1]))?;
    ArrayD::from_shape_vec(IxDyn(&shape), v).map_err(|e| tch::TchError::Shape(e.to_string()))
}

/// One click's network inputs (batch of 1) given the 2D mask to condition on.
pub fn inputs_for(sample: &ClickSample, mask: &Array2<bool>, device: Device) -> NetInputs {
    let s = sample.image.nrows() as i64;
    let image = tensor_from(&sample.image, device).reshape([1, 1, s, s]);
    let mask_f: Array2<f32> = mask.mapv(|m| if m { 1.0 } else { 0.0 });
    let mask_t = tensor_from(&mask_f, device).reshape([1, 1, s, s]);
    let pm: Array3<f32> = masked_pointmap(&sample.pointmap_full, mask);
    let pointmap = tensor_from(&pm, device).reshape([1, 3, s, s]);
    let context = sample.context.as_ref().map(|c| {
        let n = c.shape()[0] as i64;
        tensor_from(c, device).reshape([1, 1, n, n, n])
    });
    let guide = sample.guide.as_ref().map(|g| {
        let n = g.shape()[0] as i64;
        tensor_from(g, device).reshape([1, 1, n, n, n])
    });
    NetInputs { image, mask: mask_t, pointmap, context, guide }
}
