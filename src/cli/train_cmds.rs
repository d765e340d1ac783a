//! `preprocess` (plain data, in this binary). `train` and `eval` are model commands: their
//! arguments are [`crate::commands`]'s and the engine runs them.

use crate::data::preprocess::{SliceSampling, parse_shard, preprocess_dir};
use anyhow::Result;
use std::path::PathBuf;

/// Arguments of `preprocess`.
#[derive(clap::Args, Debug)]
pub struct PreprocessArgs {
    /// Directory of volume/label pairs (imagesTr/ + labelsTr/, or X.nii.gz + X_labels.nii.gz).
    #[arg(long)]
    pub input: PathBuf,
    /// Cache directory (one .safetensors per case + index.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Isotropic spacing (mm).
    #[arg(long, default_value_t = 3.0)]
    pub spacing: f64,
    #[arg(long, value_enum, default_value = "random-axis")]
    pub slice_sampling: SliceSampling,
    /// Keep the first N labels of each case (ascending ids).
    #[arg(long)]
    pub classes: Option<usize>,
    /// I/N: process pairs I, I+N, … (0-based), for cluster job arrays.
    #[arg(long)]
    pub shard: Option<String>,
}

pub fn preprocess(a: &PreprocessArgs) -> Result<()> {
    let shard = a.shard.as_deref().map(parse_shard).transpose().map_err(anyhow::Error::msg)?;
    let n = crate::data::preprocess::find_pairs(&a.input)?.len();
    let n = match shard {
        Some((i, k)) => (0..n).filter(|x| x % k == i).count(),
        None => n,
    };
    let bar = crate::progress::Progress::new("preprocess", n as u64);
    let t = std::time::Instant::now();
    let idx = preprocess_dir(&a.input, &a.out, a.spacing, a.slice_sampling, a.classes, shard, &|| bar.inc(1))?;
    bar.finish();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} cases, {} samples → {} ({:.1} s, {:.1} volumes/min)",
        idx.cases.len(),
        idx.samples.len(),
        a.out.display(),
        secs,
        idx.cases.len() as f64 / secs.max(1e-9) * 60.0
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn planes_default_to_the_median_and_take_only_known_fusions() {
        use clap::Parser;
        let eval = |extra: &[&str]| {
            let mut args = vec!["sam3d-studio", "eval", "--data", "d", "--out", "r.csv"];
            args.extend_from_slice(extra);
            crate::cli::Cli::try_parse_from(args)
        };
        let planes = |c: crate::cli::Cli| match c.command {
            Some(crate::cli::Command::Eval(a)) => a.pipeline.planes.name(),
            other => panic!("not eval: {other:?}"),
        };
        assert_eq!(planes(eval(&[]).expect("defaults")), "median");
        match eval(&["--click-depth", "0.5"]).expect("depth").command {
            Some(crate::cli::Command::Eval(a)) => assert_eq!(a.click_depth, 0.5),
            other => panic!("not eval: {other:?}"),
        }
        for bad in ["0", "1.5", "half"] {
            let e = eval(&["--click-depth", bad]).expect_err("not a fraction").to_string();
            assert!(e.contains("fraction"), "{bad}: {e}");
        }
        assert_eq!(planes(eval(&["--planes", "own"]).expect("own")), "own");
        let e = eval(&["--planes", "both"]).expect_err("unknown fusion").to_string();
        assert!(e.contains("both") && e.contains("median"), "{e}");
        let infer = crate::cli::Cli::try_parse_from(["sam3d-studio", "infer", "v.nii.gz", "--click-ras", "1,2,3", "--out-mask", "m.nii.gz", "--planes", "mean"]);
        match infer.expect("infer").command {
            Some(crate::cli::Command::Infer(a)) => assert_eq!((a.pipeline.planes.name(), !a.pipeline.join), ("mean", false)),
            other => panic!("not infer: {other:?}"),
        }
        // No test views unless asked; at most the four there are.
        for (extra, views) in [(&[][..], Some(0)), (&["--views", "2"][..], Some(2)), (&["--views", "5"][..], None)] {
            match eval(extra).map(|c| c.command) {
                Ok(Some(crate::cli::Command::Eval(a))) => assert_eq!(Some(a.pipeline.views), views, "{extra:?}"),
                Ok(other) => panic!("not eval: {other:?}"),
                Err(e) => assert!(views.is_none() && e.to_string().contains("0..=4"), "{extra:?}: {e}"),
            }
        }
        // The join of region growing is on unless --no-join.
        for (extra, join) in [(&[][..], true), (&["--no-join"][..], false)] {
            match eval(extra).expect("join").command {
                Some(crate::cli::Command::Eval(a)) => assert_eq!(a.pipeline.join, join, "{extra:?}"),
                other => panic!("not eval: {other:?}"),
            }
        }
        // The near part of a leaking region: 4 mm unless told (0: off); a distance, never negative.
        for (extra, mm) in [(&[][..], 4.0), (&["--join-near-mm", "8"][..], 8.0), (&["--join-near-mm", "0"][..], 0.0)] {
            match eval(extra).expect("near").command {
                Some(crate::cli::Command::Eval(a)) => assert_eq!(a.pipeline.join_near_mm, mm, "{extra:?}"),
                other => panic!("not eval: {other:?}"),
            }
        }
        for bad in ["-1", "nan", "far"] {
            let arg = format!("--join-near-mm={bad}");
            let e = eval(&[arg.as_str()]).expect_err("not a distance").to_string();
            assert!(e.contains("distance in mm"), "{bad}: {e}");
        }
        let e = crate::cli::Cli::try_parse_from(["sam3d-studio", "infer", "v.nii.gz", "--click-ras", "1,2,3", "--out-mask", "m.nii.gz", "--join-near-mm=-2"]);
        assert!(e.is_err(), "infer refuses a negative distance too");
    }
}
