//! UpKern (training spec §1.7; MedNeXt's `load_pretrained_weights_resampling`): initialise a large-kernel
//! MedNeXt (e.g. kernel 5) from a trained small-kernel one (kernel 3) of identical channel dims.
//!
//! For every parameter present in both networks (matched by module path):
//! * paths containing `bias`, `norm` or `dummy` are copied unchanged;
//! * any other tensor is copied when its shape matches; otherwise its first two dims must match and its
//!   trailing (spatial) dims are resized with `F.interpolate(w, size=k_new, mode='trilinear')`,
//!   `align_corners=False`, treating the weight `(out, in/groups, k, k, k)` as `(N, C, D, H, W)`.
//!
//! Parameters only one network has are left as they are (PyTorch warns and skips them).
//!
//! Three entry points: [`upkern`] on burn modules, [`upkern_network`] on the engine's `Box<dyn Network>`
//! (through `Network::named_parameters` / `replace_parameters`), and [`upkern_record`] on [`ModuleRecord`]s (the
//! k3 checkpoint's record and the fresh k5 network's record in, the initialised k5 record out).

use crate::kwargs::MedNeXtKwargs;
use crate::mednext::MedNeXt;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::store::ModuleRecord;
use burn::tensor::{Device, Tensor, TensorData};
use nnunet_core::architecture::NetworkSpec;
use nnunet_core::{ArchitectureError, NamedParam, Network};
use std::collections::HashMap;

/// What [`upkern`] did, by parameter path.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UpKernSummary {
    /// Copied unchanged (bias / norm / dummy, or same shape).
    pub copied: Vec<String>,
    /// Spatially resized: `(path, source shape, target shape)`.
    pub resized: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// In the target only: left at its initial value.
    pub not_in_source: Vec<String>,
}

fn err(msg: String) -> ArchitectureError {
    ArchitectureError::Other(format!("UpKern: {msg}"))
}

/// Linear interpolation taps of PyTorch's `align_corners=False` resize from `n_in` to `n_out` samples:
/// per output index `(i0, i1, w0, w1)`.
fn taps(n_in: usize, n_out: usize) -> Vec<(usize, usize, f64, f64)> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|o| {
            let src = (scale * (o as f64 + 0.5) - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(n_in - 1);
            let i1 = if i0 < n_in - 1 { i0 + 1 } else { i0 };
            let l1 = src - i0 as f64;
            (i0, i1, 1.0 - l1, l1)
        })
        .collect()
}

/// Resize the trailing `new_spatial.len()` axes of a row-major tensor of `shape` with separable linear
/// interpolation (`align_corners=False`): trilinear for three spatial axes, as `F.interpolate`.
pub fn resize_trailing(data: &[f32], shape: &[usize], new_spatial: &[usize]) -> Vec<f32> {
    let first = shape.len() - new_spatial.len();
    let mut cur: Vec<f64> = data.iter().map(|&x| x as f64).collect();
    let mut cur_shape = shape.to_vec();
    for (j, &n_out) in new_spatial.iter().enumerate() {
        let ax = first + j;
        let n_in = cur_shape[ax];
        if n_in == n_out {
            continue;
        }
        let outer: usize = cur_shape[..ax].iter().product();
        let inner: usize = cur_shape[ax + 1..].iter().product();
        let t = taps(n_in, n_out);
        let mut next = vec![0.0f64; outer * n_out * inner];
        for o in 0..outer {
            for (q, &(i0, i1, w0, w1)) in t.iter().enumerate() {
                for i in 0..inner {
                    next[(o * n_out + q) * inner + i] = w0 * cur[(o * n_in + i0) * inner + i] + w1 * cur[(o * n_in + i1) * inner + i];
                }
            }
        }
        cur = next;
        cur_shape[ax] = n_out;
    }
    cur.into_iter().map(|x| x as f32).collect()
}

/// Source parameters by module path: `(shape, values)`.
type SourceParams = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// UpKern's rule for one target parameter: `Ok(None)` when the source lacks it (left as it is), else its new
/// values; the summary records what was done.
fn transfer(path: &str, shape: &[usize], source: &SourceParams, summary: &mut UpKernSummary) -> Result<Option<Vec<f32>>, String> {
    let Some((src_shape, src)) = source.get(path) else {
        summary.not_in_source.push(path.to_string());
        return Ok(None);
    };
    let verbatim = ["bias", "norm", "dummy"].iter().any(|k| path.contains(k));
    if src_shape == shape {
        summary.copied.push(path.to_string());
        Ok(Some(src.clone()))
    } else if verbatim {
        Err(format!("{path}: copied unchanged by UpKern but shapes differ: {src_shape:?} vs {shape:?}"))
    } else if shape.len() < 3 || src_shape.len() != shape.len() || src_shape[..2] != shape[..2] {
        Err(format!("{path}: channel dims differ ({src_shape:?} vs {shape:?}); UpKern needs identical channels"))
    } else {
        summary.resized.push((path.to_string(), src_shape.clone(), shape.to_vec()));
        Ok(Some(resize_trailing(src, src_shape, &shape[2..])))
    }
}

/// Collects float parameters by module path.
#[derive(Default)]
struct Collect {
    path: Vec<String>,
    found: SourceParams,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let values = t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 data after convert");
        self.found.insert(self.path.join("."), (shape, values));
    }
}

/// Writes UpKern'd values into the target's parameters (keeping the target's ids, devices and grad flags).
struct Apply {
    path: Vec<String>,
    source: SourceParams,
    summary: UpKernSummary,
    errors: Vec<String>,
}

impl ModuleMapper for Apply {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        let shape = param.lazy_shape().to_vec();
        match transfer(&path, &shape, &self.source, &mut self.summary) {
            Ok(Some(values)) => {
                let device = param.lazy_device();
                let id = param.id;
                let t = Tensor::<D>::from_data(TensorData::new(values, shape), &device);
                param.transform_for_load(t, id)
            }
            Ok(None) => param,
            Err(e) => {
                self.errors.push(e);
                param
            }
        }
    }
}

/// UpKern `source`'s parameters into `target` (any burn module pair whose parameters share paths, e.g. a
/// kernel-3 and a kernel-5 [`MedNeXt`]). Errors name every parameter that could not be transferred.
pub fn upkern<M: Module>(source: &M, target: M) -> Result<(M, UpKernSummary), ArchitectureError> {
    let mut c = Collect::default();
    source.visit(&mut c);
    let mut a = Apply { path: Vec::new(), source: c.found, summary: UpKernSummary::default(), errors: Vec::new() };
    let out = target.map(&mut a);
    if !a.errors.is_empty() {
        return Err(err(a.errors.join("; ")));
    }
    Ok((out, a.summary))
}

/// UpKern into a built network held as `Box<dyn Network>` from the named parameters of the trained one
/// (`Network::named_parameters` of the source network, e.g. a kernel-3 checkpoint loaded into a network built
/// from its own plans). Nothing is changed when any parameter cannot be transferred.
pub fn upkern_network(source: &[NamedParam], target: &mut dyn Network) -> Result<UpKernSummary, ArchitectureError> {
    let src: SourceParams = source.iter().map(|p| (p.path.clone(), (p.shape.clone(), p.values.clone()))).collect();
    // dry run on paths and shapes first, so that a failure leaves the target untouched
    let mut dry = UpKernSummary::default();
    let errors: Vec<String> = target.named_parameters().iter().filter_map(|p| transfer(&p.path, &p.shape, &src, &mut dry).err()).collect();
    if !errors.is_empty() {
        return Err(err(errors.join("; ")));
    }
    let mut summary = UpKernSummary::default();
    target.replace_parameters(&mut |path, shape| transfer(path, shape, &src, &mut summary).ok().flatten());
    Ok(summary)
}

/// UpKern on records, for networks held as `Box<dyn Network>`: `source` is the record of the trained network
/// built from `source_spec` (e.g. a kernel-3 checkpoint), `target` the record of the network to initialise
/// (built from `target_spec`, e.g. kernel 5). Both specs must be MedNeXt kwargs with identical channel dims
/// (`n_channels`, `exp_r`, `block_counts`, input and output channels). Returns the initialised target record,
/// to be loaded with `Network::load_record`.
pub fn upkern_record(
    source_spec: &NetworkSpec,
    source: ModuleRecord,
    target_spec: &NetworkSpec,
    target: ModuleRecord,
    device: &Device,
) -> Result<ModuleRecord, ArchitectureError> {
    let ks = MedNeXtKwargs::parse(&source_spec.arch_kwargs)?;
    let kt = MedNeXtKwargs::parse(&target_spec.arch_kwargs)?;
    let same = |what: &str, a: String, b: String| if a == b { Ok(()) } else { Err(err(format!("{what} differ: source {a}, target {b}"))) };
    same("n_channels", ks.n_channels.to_string(), kt.n_channels.to_string())?;
    same("exp_r", format!("{:?}", ks.exp_r), format!("{:?}", kt.exp_r))?;
    same("block_counts", format!("{:?}", ks.block_counts), format!("{:?}", kt.block_counts))?;
    same("input channels", source_spec.in_channels.to_string(), target_spec.in_channels.to_string())?;
    same("output channels", source_spec.out_channels.to_string(), target_spec.out_channels.to_string())?;
    let load = |spec: &NetworkSpec, kw: &MedNeXtKwargs, r: ModuleRecord, what: &str| {
        MedNeXt::new(kw, spec.in_channels, spec.out_channels, spec.deep_supervision, device)
            .try_load_record(r)
            .map_err(|e| err(format!("the {what} record does not fit its spec: {e:?}")))
    };
    let src = load(source_spec, &ks, source, "source")?;
    let tgt = load(target_spec, &kt, target, "target")?;
    let (tgt, _) = upkern(&src, tgt)?;
    Ok(tgt.into_record())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `F.interpolate(w, size=(5, 5, 5), mode='trilinear')` for `w = sin(1 + i)` over the flat index of a
    /// `(1, 1, 3, 3, 3)` float32 tensor, from torch 2.15 (`/root/nnunet-py`): flat indices 0, 7, 31, 62, 93, 124
    /// and the sum of all 125 values.
    #[test]
    fn resize_equals_torch_trilinear() {
        let w: Vec<f32> = (0..27).map(|i| (1.0 + i as f64).sin() as f32).collect();
        let o = resize_trailing(&w, &[1, 1, 3, 3, 3], &[5, 5, 5]);
        let want: [(usize, f64); 6] =
            [(0, 0.841470957), (7, 0.162008658), (31, 0.0410570353), (62, 0.990607381), (93, 0.0301354937), (124, 0.956375957)];
        for (i, v) in want {
            assert!((o[i] as f64 - v).abs() < 1e-6, "index {i}: {} vs {v}", o[i]);
        }
        let sum: f64 = o.iter().map(|&x| x as f64).sum();
        assert!((sum - 5.335103661403991).abs() < 1e-5, "{sum}");
        // a singleton axis stays as it is (2D weights lifted to 3D: trilinear = bilinear)
        assert_eq!(resize_trailing(&[1.0, 2.0], &[1, 1, 1, 1, 2], &[1, 1, 2]), vec![1.0, 2.0]);
    }

    #[test]
    fn taps_match_align_corners_false() {
        let t = taps(3, 5);
        // interpolating the samples 0, 1, 2 of t -> t; past the last sample both taps sit on it
        let src: Vec<f64> = t.iter().map(|&(i0, i1, w0, w1)| w0 * i0 as f64 + w1 * i1 as f64).collect();
        let want = [0.0, 0.4, 1.0, 1.6, 2.0];
        assert!(src.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{src:?}");
        assert_eq!(t[4].0, 2);
        assert_eq!(t[4].1, 2);
    }
}
