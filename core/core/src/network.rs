//! Built networks behind one object-safe trait.
//!
//! An architecture implements the tiny [`NetworkModule`] (a burn `Module` with a forward that returns the
//! list of logits); [`boxed`] wraps it into a `Box<dyn Network>`, which gives the engine what it needs without
//! knowing the concrete type: forward, parameter count, backward + optimizer step, records to save and load.

use crate::ArchitectureError;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::{Device, Tensor, TensorData};
use std::path::Path;

/// What an architecture implements: a burn module whose forward returns logits, full resolution first,
/// then the deep-supervision outputs. 3D networks take `(b, c, z, y, x)`; 2D networks take `(b, c, 1, y, x)`
/// and keep the singleton axis, so callers treat both alike.
pub trait NetworkModule: Module + 'static {
    fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>>;

    /// The PyTorch original's state dict as `(key, parameter path)` pairs in its order (see
    /// [`Network::torch_state_dict`]); `None` (the default): each parameter once under its own path, burn's norm
    /// `gamma`/`beta` named `weight`/`bias`.
    fn torch_state_dict(&self) -> Option<Vec<TorchKey>> {
        None
    }
}

/// One entry of a PyTorch state dict: its `key` and the [`NamedParam::path`] of the parameter it holds. Several
/// keys may hold the same parameter (PyTorch modules registered twice, e.g. a U-Net decoder's `decoder.encoder.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorchKey {
    pub key: String,
    pub path: String,
}

/// The default PyTorch key of a parameter path: burn's norm `gamma`/`beta` are PyTorch's `weight`/`bias`.
pub fn default_torch_key(path: &str) -> String {
    match path.rsplit_once('.') {
        Some((head, "gamma")) => format!("{head}.weight"),
        Some((head, "beta")) => format!("{head}.bias"),
        _ => path.to_string(),
    }
}

/// A parameter replacement callback of [`Network::replace_parameters`]: `f(path, shape)` returns the new values of
/// that parameter, or `None` to keep it.
pub type ReplaceFn<'a> = dyn FnMut(&str, &[usize]) -> Option<Vec<f32>> + 'a;

/// A network as the engine sees it.
pub trait Network: Send {
    /// Logits, full resolution first.
    fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>>;

    /// Number of trainable scalars.
    fn num_params(&self) -> usize;

    /// Backward of `loss`, gradient clipping to total L2 norm `clip_norm` over all parameters (PyTorch's
    /// `clip_grad_norm_`: scale by `clip / (norm + 1e-6)` when the norm exceeds it), and one optimizer step.
    /// Returns the gradient norm before clipping.
    fn step(&mut self, optim: &mut ModuleOptimizer, lr: f64, loss: Tensor<1>, clip_norm: Option<f64>) -> f64 {
        let grads = self.backward(loss);
        self.apply_gradients(optim, lr, grads, clip_norm, None)
    }

    /// Gradients of `loss` with respect to this network's parameters.
    fn backward(&self, loss: Tensor<1>) -> GradientsParams;

    /// Global gradient clipping (see [`Network::step`]) and one optimizer step. Returns the norm before clipping.
    /// Gradients are made fp32 (autocast may leave them in half precision). With `grad_scale` (fp16 loss scaling,
    /// [`crate::GradScaler`]) they are divided by it first, and a non-finite norm skips the step, as PyTorch's
    /// `GradScaler.step` does.
    fn apply_gradients(
        &mut self,
        optim: &mut ModuleOptimizer,
        lr: f64,
        grads: GradientsParams,
        clip_norm: Option<f64>,
        grad_scale: Option<f64>,
    ) -> f64;

    /// A copy on `device` with its own autodiff graph and the same parameter ids (a data-parallel replica).
    fn fork(&self, device: &Device) -> Box<dyn Network>;

    /// Add `other` (gradients of a replica, on any device) into `acc` (on this network's device), per parameter.
    fn accumulate_gradients(&self, acc: &mut GradientsParams, other: GradientsParams);

    /// The parameters as a record (to save, compare, or load into another instance).
    fn record(&self) -> ModuleRecord;

    /// Load parameters from a record of the same architecture and kwargs.
    fn load_record(&mut self, record: ModuleRecord) -> Result<(), ArchitectureError>;

    /// Move the parameters to `device` (e.g. an autodiff device for training, a plain one for inference).
    fn to_device(&mut self, device: &Device);

    /// Every float parameter with its module path (`decoder.seg_layers.0.weight`, PyTorch's state-dict keys for the
    /// built-in networks), shape and values.
    fn named_parameters(&self) -> Vec<NamedParam>;

    /// Every float parameter's path (as in [`Network::named_parameters`], same order), [`ParamId`] and shape: an
    /// optimizer keys its per-parameter state by the id (momentum buffers to and from `.pth` checkpoints).
    fn parameter_ids(&self) -> Vec<ParamIdentity>;

    /// Replace float parameters: `f(path, shape)` returns new values for that parameter (as many as its shape holds)
    /// or `None` to keep it. Device and trainability are kept. Returns how many parameters were replaced.
    fn replace_parameters(&mut self, f: &mut ReplaceFn<'_>) -> usize;

    /// The state dict of the PyTorch original of this network, in PyTorch's order: every key PyTorch's
    /// `state_dict()` holds, with the path of the parameter behind it. The first key of each parameter is in
    /// `parameters()` order (an optimizer's parameter indices). What `.pth` checkpoints are read and written with.
    fn torch_state_dict(&self) -> Vec<TorchKey>;

    /// Save the parameters to a burnpack file.
    fn save_file(&self, path: &Path) -> Result<(), ArchitectureError> {
        self.record().save(path).map_err(|e| ArchitectureError::Other(format!("{}: cannot save: {e:?}", path.display())))
    }

    /// Load parameters from a burnpack file written by [`Network::save_file`].
    fn load_file(&mut self, path: &Path) -> Result<(), ArchitectureError> {
        let r = ModuleRecord::load(path).map_err(|e| ArchitectureError::Other(format!("{}: cannot load: {e:?}", path.display())))?;
        self.load_record(r)
    }
}

/// One float parameter of a network.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedParam {
    pub path: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// A float parameter's path, burn [`ParamId`] and shape ([`Network::parameter_ids`]).
pub type ParamIdentity = (String, ParamId, Vec<usize>);

struct Boxed<M: NetworkModule>(Option<M>);

/// Every float parameter's path, id and shape, and with `values` its values (read from the device only then).
struct Collect {
    path: Vec<String>,
    values: bool,
    out: Vec<(ParamIdentity, Vec<f32>)>,
}

impl Collect {
    fn run(m: &impl Module, values: bool) -> Vec<(ParamIdentity, Vec<f32>)> {
        let mut c = Collect { path: Vec::new(), values, out: Vec::new() };
        m.visit(&mut c);
        c.out
    }
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let t = p.val();
        let shape = t.dims().to_vec();
        let values = if self.values { t.into_data().convert::<f32>().try_to_vec::<f32>().expect("float parameter") } else { Vec::new() };
        self.out.push(((self.path.join("."), p.id, shape), values));
    }
}

struct Replace<'a> {
    path: Vec<String>,
    f: &'a mut ReplaceFn<'a>,
    replaced: usize,
}

impl ModuleMapper for Replace<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let t = p.val();
        let shape: [usize; D] = t.dims();
        match (self.f)(&self.path.join("."), &shape) {
            Some(values) => {
                assert_eq!(values.len(), shape.iter().product::<usize>(), "replacement for {} has the wrong size", self.path.join("."));
                self.replaced += 1;
                let new = Tensor::<D>::from_data(TensorData::new(values, shape), &t.device());
                let id = p.id;
                p.transform_for_load(new, id)
            }
            None => p,
        }
    }
}

impl<M: NetworkModule> Boxed<M> {
    fn get(&self) -> &M {
        self.0.as_ref().expect("network present between steps")
    }
}

impl<M: NetworkModule> Network for Boxed<M> {
    fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>> {
        self.get().forward(x)
    }

    fn num_params(&self) -> usize {
        self.get().num_params()
    }

    fn backward(&self, loss: Tensor<1>) -> GradientsParams {
        GradientsParams::from_grads(loss.backward(), self.get())
    }

    fn apply_gradients(
        &mut self,
        optim: &mut ModuleOptimizer,
        lr: f64,
        mut grads: GradientsParams,
        clip_norm: Option<f64>,
        grad_scale: Option<f64>,
    ) -> f64 {
        let m = self.0.take().expect("network present between steps");
        to_f32_scaled(&m, &mut grads, grad_scale.map(|s| 1.0 / s));
        let norm = clip_global_norm(&m, &mut grads, clip_norm);
        if grad_scale.is_some() && !norm.is_finite() {
            self.0 = Some(m);
            return norm;
        }
        self.0 = Some(optim.step(lr, m, grads));
        norm
    }

    fn fork(&self, device: &Device) -> Box<dyn Network> {
        Box::new(Boxed(Some(self.get().clone().fork(device))))
    }

    fn accumulate_gradients(&self, acc: &mut GradientsParams, other: GradientsParams) {
        struct Add<'a> {
            acc: &'a mut GradientsParams,
            other: GradientsParams,
        }
        impl ModuleVisitor for Add<'_> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                let Some(g) = self.other.remove::<D>(p.id) else { return };
                let sum = match self.acc.remove::<D>(p.id) {
                    Some(a) => {
                        let dev = a.device();
                        a + g.to_device(&dev)
                    }
                    None => g.to_device(&p.val().device().inner()),
                };
                self.acc.register(p.id, sum);
            }
        }
        self.get().visit(&mut Add { acc, other });
    }

    fn record(&self) -> ModuleRecord {
        self.get().clone().into_record()
    }

    fn load_record(&mut self, record: ModuleRecord) -> Result<(), ArchitectureError> {
        let m = self.0.take().expect("network present between steps");
        let keep = m.clone();
        match m.try_load_record(record) {
            Ok(m) => {
                self.0 = Some(m);
                Ok(())
            }
            Err(e) => {
                self.0 = Some(keep);
                Err(ArchitectureError::Other(format!("parameters do not fit this network: {e:?}")))
            }
        }
    }

    fn to_device(&mut self, device: &Device) {
        let m = self.0.take().expect("network present between steps");
        self.0 = Some(m.to_device(device));
    }

    fn named_parameters(&self) -> Vec<NamedParam> {
        Collect::run(self.get(), true).into_iter().map(|((path, _, shape), values)| NamedParam { path, shape, values }).collect()
    }

    fn parameter_ids(&self) -> Vec<ParamIdentity> {
        Collect::run(self.get(), false).into_iter().map(|(identity, _)| identity).collect()
    }

    fn torch_state_dict(&self) -> Vec<TorchKey> {
        self.get().torch_state_dict().unwrap_or_else(|| {
            self.named_parameters().into_iter().map(|p| TorchKey { key: default_torch_key(&p.path), path: p.path }).collect()
        })
    }

    fn replace_parameters(&mut self, f: &mut ReplaceFn<'_>) -> usize {
        let m = self.0.take().expect("network present between steps");
        let mut r = Replace { path: Vec::new(), f, replaced: 0 };
        self.0 = Some(m.map(&mut r));
        r.replaced
    }
}

/// Every gradient as fp32, multiplied by `factor` when given.
fn to_f32_scaled<M: Module>(m: &M, grads: &mut GradientsParams, factor: Option<f64>) {
    struct F32<'a> {
        grads: &'a mut GradientsParams,
        factor: Option<f64>,
    }
    impl ModuleVisitor for F32<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let Some(g) = self.grads.remove::<D>(p.id) else { return };
            let g = crate::precision::as_f32(g);
            self.grads.register::<D>(p.id, match self.factor {
                Some(f) => g.mul_scalar(f),
                None => g,
            });
        }
    }
    m.visit(&mut F32 { grads, factor });
}

/// Total L2 norm of all gradients; when above `max`, every gradient is scaled by `max / (norm + 1e-6)`.
pub fn clip_global_norm<M: Module>(m: &M, grads: &mut GradientsParams, max: Option<f64>) -> f64 {
    struct SumSq<'a> {
        grads: &'a GradientsParams,
        parts: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for SumSq<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(p.id) {
                self.parts.push(g.square().sum());
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(p.id) {
                self.grads.register::<D>(p.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut v = SumSq { grads, parts: Vec::new() };
    m.visit(&mut v);
    let Some(total) = v.parts.into_iter().reduce(|a, b| a + b) else { return 0.0 };
    let norm = (total.into_scalar::<f32>() as f64).sqrt();
    if let Some(max) = max
        && norm > max
    {
        let mut s = Scale { grads, factor: max / (norm + 1e-6) };
        m.visit(&mut s);
    }
    norm
}

/// Wrap a network module into the engine's object-safe [`Network`].
pub fn boxed<M: NetworkModule>(m: M) -> Box<dyn Network> {
    Box::new(Boxed(Some(m)))
}
