//! Built networks behind one object-safe trait.
//!
//! An architecture implements the tiny [`NetworkModule`] (a burn `Module` with a forward that returns the
//! list of logits); [`boxed`] wraps it into a `Box<dyn Network>`, which gives the engine what it needs without
//! knowing the concrete type: forward, parameter count, backward + optimizer step, records to save and load.

use crate::ArchitectureError;
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::{Device, Tensor};
use std::path::Path;

/// What an architecture implements: a burn module whose forward returns logits, full resolution first,
/// then the deep-supervision outputs. 3D networks take `(b, c, z, y, x)`; 2D networks take `(b, c, 1, y, x)`
/// and keep the singleton axis, so callers treat both alike.
pub trait NetworkModule: Module + 'static {
    fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>>;
}

/// A network as the engine sees it.
pub trait Network: Send {
    /// Logits, full resolution first.
    fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>>;

    /// Number of trainable scalars.
    fn num_params(&self) -> usize;

    /// Backward of `loss` and one optimizer step on this network's parameters.
    fn step(&mut self, optim: &mut ModuleOptimizer, lr: f64, loss: Tensor<1>);

    /// The parameters as a record (to save, compare, or load into another instance).
    fn record(&self) -> ModuleRecord;

    /// Load parameters from a record of the same architecture and kwargs.
    fn load_record(&mut self, record: ModuleRecord) -> Result<(), ArchitectureError>;

    /// Move the parameters to `device` (e.g. an autodiff device for training, a plain one for inference).
    fn to_device(&mut self, device: &Device);

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

struct Boxed<M: NetworkModule>(Option<M>);

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

    fn step(&mut self, optim: &mut ModuleOptimizer, lr: f64, loss: Tensor<1>) {
        let m = self.0.take().expect("network present between steps");
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        self.0 = Some(optim.step(lr, m, grads));
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
}

/// Wrap a network module into the engine's object-safe [`Network`].
pub fn boxed<M: NetworkModule>(m: M) -> Box<dyn Network> {
    Box::new(Boxed(Some(m)))
}
