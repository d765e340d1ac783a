//! The prompt encoder (`prompt_encoder.*`): medim's `PromptEncoder3D` and
//! `PositionEmbeddingRandom3D`.
//!
//! Positional encoding of a point `u ∈ [0, 1]³`: `v = 2π (2u − 1) · G` with the random Gaussian
//! matrix `G` `[3, prompt_dim/3]` (`pe_layer.positional_encoding_gaussian_matrix`, a buffer),
//! then `[sin v, cos v, sin v]` (the reference repeats `sin`; kept).
//!
//! The dense encoding of the `g³` token grid puts, at grid index `(i0, i1, i2)`, the point
//! `((i1 + ½)/g, (i0 + ½)/g, (i2 + ½)/g)`: the first coordinate runs along the grid's *second*
//! axis (the reference's `x_embed = cumsum(dim=1)`). A click `(c0, c1, c2)` is encoded as
//! `u = (c + ½) / img_size`; see [`super::SamMed3d::decode`] for the order clicks are given in.

use super::{LayerNorm3d, SamMed3dConfig};
use std::f64::consts::PI;
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

#[derive(Debug)]
pub struct PromptEncoder {
    /// `[3, prompt_dim / 3]`, not trainable.
    pub gaussian: Tensor,
    /// `point_embeddings.0` (negative, label 0) and `.1` (positive, label 1), each `[1, C]`.
    pub point_embeddings: [Tensor; 2],
    pub not_a_point_embed: Tensor,
    pub no_mask_embed: Tensor,
    pub down0: nn::Conv3D,
    pub down1: LayerNorm3d,
    pub down3: nn::Conv3D,
    pub down4: LayerNorm3d,
    pub down6: nn::Conv3D,
    dim: i64,
    grid: i64,
    img_size: i64,
}

impl PromptEncoder {
    pub fn new(p: &nn::Path, cfg: &SamMed3dConfig) -> Self {
        let c = cfg.prompt_dim;
        let gaussian = (p / "pe_layer").zeros_no_train("positional_encoding_gaussian_matrix", &[3, c / 3]);
        tch::no_grad(|| {
            let mut g = gaussian.shallow_clone();
            g.copy_(&Tensor::randn([3, c / 3], (Kind::Float, g.device())));
        });
        let emb = |p: nn::Path| p.var("weight", &[1, c], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        let conv = |stride: i64| nn::ConvConfig { stride, ..Default::default() };
        let m = cfg.mask_in_chans;
        let down = p / "mask_downscaling";
        Self {
            gaussian,
            point_embeddings: [emb(p / "point_embeddings" / "0"), emb(p / "point_embeddings" / "1")],
            not_a_point_embed: emb(p / "not_a_point_embed"),
            no_mask_embed: emb(p / "no_mask_embed"),
            down0: nn::conv3d(&down / "0", 1, m / 4, 2, conv(2)),
            down1: LayerNorm3d::new(&(&down / "1"), m / 4),
            down3: nn::conv3d(&down / "3", m / 4, m, 2, conv(2)),
            down4: LayerNorm3d::new(&(&down / "4"), m),
            down6: nn::conv3d(&down / "6", m, c, 1, conv(1)),
            dim: c,
            grid: cfg.grid(),
            img_size: cfg.img_size,
        }
    }

    /// `coords [..., 3]` in `[0, 1]` → `[..., C]`.
    fn pe_encoding(&self, coords: &Tensor) -> Tensor {
        let v = (coords * 2.0 - 1.0).matmul(&self.gaussian) * (2.0 * PI);
        Tensor::cat(&[v.sin(), v.cos(), v.sin()], -1)
    }

    /// The dense positional encoding of the token grid, `[1, C, g, g, g]`.
    pub fn dense_pe(&self) -> Tensor {
        let g = self.grid;
        let r = (Tensor::arange(g, (Kind::Float, self.gaussian.device())) + 0.5) / (g as f64);
        let along = |axis: usize| {
            let mut shape = [1, 1, 1];
            shape[axis] = g;
            r.view(shape).expand([g, g, g], false)
        };
        // (first, second, third) coordinate = (axis 1, axis 0, axis 2), as the reference.
        let coords = Tensor::stack(&[along(1), along(0), along(2)], -1);
        self.pe_encoding(&coords).permute([3, 0, 1, 2]).unsqueeze(0)
    }

    /// The positional encoding `[B, N, C]` of points `[B, N, 3]` given in input voxels (as
    /// [`super::SamMed3d::decode`] takes them), without any label embedding.
    pub fn point_pe(&self, coords: &Tensor) -> Tensor {
        let coords = coords.to_device(self.gaussian.device()).to_kind(Kind::Float) + 0.5;
        self.pe_encoding(&(coords / (self.img_size as f64)))
    }

    /// Point embeddings `[B, N + 1, C]` (a not-a-point pad is appended, as the reference does
    /// when no box is given). `coords [B, N, 3]` in input voxels, `labels [B, N]`.
    pub fn embed_points(&self, coords: &Tensor, labels: &Tensor) -> Tensor {
        let dev = self.gaussian.device();
        let coords = coords.to_device(dev).to_kind(Kind::Float) + 0.5;
        let labels = labels.to_device(dev);
        let b = coords.size()[0];
        let coords = Tensor::cat(&[coords, Tensor::zeros([b, 1, 3], (Kind::Float, dev))], 1);
        let labels = Tensor::cat(&[labels.shallow_clone(), Tensor::full([b, 1], -1, (labels.kind(), dev))], 1);
        let pe = self.pe_encoding(&(coords / (self.img_size as f64)));
        let is = |v: i64| labels.eq(v).unsqueeze(-1);
        let pe = pe.where_self(&is(-1).logical_not(), &self.not_a_point_embed.expand_as(&pe));
        pe + &self.point_embeddings[0] * is(0).to_kind(Kind::Float) + &self.point_embeddings[1] * is(1).to_kind(Kind::Float)
    }

    /// `[B, 1, 4g, 4g, 4g]` → `[B, C, g, g, g]`.
    pub fn embed_mask(&self, mask: &Tensor) -> Tensor {
        let x = self.down1.forward(&self.down0.forward(mask)).gelu("none");
        let x = self.down4.forward(&self.down3.forward(&x)).gelu("none");
        self.down6.forward(&x)
    }

    /// Sparse `[B, N(+1), C]` and dense `[B, C, g, g, g]` embeddings (shapes checked by the caller).
    pub fn forward(&self, points: Option<(&Tensor, &Tensor)>, mask: Option<&Tensor>, batch: i64) -> (Tensor, Tensor) {
        let dev = self.gaussian.device();
        let sparse = match points {
            Some((c, l)) => self.embed_points(c, l),
            None => Tensor::zeros([batch, 0, self.dim], (Kind::Float, dev)),
        };
        let g = self.grid;
        let dense = match mask {
            Some(m) => self.embed_mask(&m.to_device(dev).to_kind(Kind::Float)),
            None => self.no_mask_embed.reshape([1, -1, 1, 1, 1]).expand([batch, -1, g, g, g], false),
        };
        (sparse, dense)
    }
}
