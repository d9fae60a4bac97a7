//! Mixed precision as nnU-Net trains: the forward pass, the loss and (here) the backward pass under the backend's
//! autocast — operations run in half precision where that is safe, in fp32 where it is not — with fp32 weights, and
//! for fp16 a dynamic loss scale ([`GradScaler`], PyTorch's defaults). nnU-Net uses fp16 autocast + `GradScaler` on
//! CUDA and fp32 on the CPU. A backend offers autocast through [`MixedPrecision`]; LibTorch's is [`libtorch`]
//! (feature `tch`), flex has none.

use serde::{Deserialize, Serialize};

/// The precision of a training run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    /// fp16 autocast + dynamic loss scaling (nnU-Net's choice on CUDA).
    Fp16,
    /// bf16 autocast (no loss scaling needed: bf16 has fp32's range).
    Bf16,
}

impl Precision {
    pub fn parse(s: &str) -> Option<Precision> {
        [Precision::Fp32, Precision::Fp16, Precision::Bf16].into_iter().find(|p| p.name() == s)
    }

    /// The precision a run computes in: the autocast's, or fp32 without one.
    pub fn of(mixed: Option<&dyn MixedPrecision>) -> Precision {
        mixed.map_or(Precision::Fp32, |m| m.precision())
    }

    /// The flag value (`fp32`, `fp16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Bf16 => "bf16",
        }
    }

    /// How debug.json and the logs name it.
    pub fn describe(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16 autocast + dynamic loss scaling (fp32 weights)",
            Precision::Bf16 => "bf16 autocast (fp32 weights)",
        }
    }
}

/// `t` as fp32 (a no-op when it is): tensors computed under autocast are half precision.
pub fn as_f32<const D: usize>(t: burn::tensor::Tensor<D>) -> burn::tensor::Tensor<D> {
    if t.dtype() == burn::tensor::DType::F32 { t } else { t.cast(burn::tensor::FloatDType::F32) }
}

/// A backend's autocast. The state is per thread: every thread that computes (data-parallel replicas too) enters it.
pub trait MixedPrecision: Send + Sync {
    /// Run `f` with autocast on for this thread, then restore the previous state (also when `f` panics).
    fn autocast(&self, f: &mut dyn FnMut());

    fn precision(&self) -> Precision;
}

/// PyTorch's `torch.amp.GradScaler` with its defaults: the loss is multiplied by `scale` before backward, the
/// gradients divided by it before clipping; a step whose gradients are not finite is skipped and halves the scale,
/// 2000 finite steps in a row double it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GradScaler {
    pub scale: f64,
    /// Finite steps since the last change of scale.
    pub growth_tracker: u32,
}

impl Default for GradScaler {
    fn default() -> Self {
        GradScaler { scale: 65536.0, growth_tracker: 0 }
    }
}

impl GradScaler {
    pub const GROWTH_FACTOR: f64 = 2.0;
    pub const BACKOFF_FACTOR: f64 = 0.5;
    pub const GROWTH_INTERVAL: u32 = 2000;

    /// After a step: `found_inf` when the unscaled gradients were not finite (the step was skipped).
    pub fn update(&mut self, found_inf: bool) {
        if found_inf {
            self.scale *= Self::BACKOFF_FACTOR;
            self.growth_tracker = 0;
        } else {
            self.growth_tracker += 1;
            if self.growth_tracker == Self::GROWTH_INTERVAL {
                self.scale *= Self::GROWTH_FACTOR;
                self.growth_tracker = 0;
            }
        }
    }
}

/// LibTorch's autocast (`at::autocast`), reached through the symbols of the LibTorch the process has loaded.
#[cfg(feature = "tch")]
pub mod libtorch {
    use super::{MixedPrecision, Precision};

    type SetEnabled = unsafe extern "C" fn(i8, bool);
    type IsEnabled = unsafe extern "C" fn(i8) -> bool;
    type SetDtype = unsafe extern "C" fn(i8, i8);
    type Nesting = unsafe extern "C" fn() -> i32;
    type Clear = unsafe extern "C" fn();

    /// Autocast for one LibTorch device type (`c10::DeviceType`: CPU 0, CUDA 1) and half type.
    pub struct Autocast {
        device_type: i8,
        dtype: i8,
        precision: Precision,
        set_enabled: SetEnabled,
        is_enabled: IsEnabled,
        set_dtype: SetDtype,
        increment_nesting: Nesting,
        decrement_nesting: Nesting,
        clear_cache: Clear,
    }

    /// `c10::ScalarType` codes.
    const HALF: i8 = 5;
    const BFLOAT16: i8 = 15;

    impl Autocast {
        /// For `cuda` (else the CPU) and `precision` (fp16 or bf16). Fails when LibTorch is not loaded or lacks the
        /// functions (another LibTorch version).
        pub fn new(cuda: bool, precision: Precision) -> Result<Autocast, String> {
            let dtype = match precision {
                Precision::Fp16 => HALF,
                Precision::Bf16 => BFLOAT16,
                Precision::Fp32 => return Err("fp32 needs no autocast".into()),
            };
            let this = libloading::os::unix::Library::this();
            // SAFETY: the signatures are those of ATen/autocast_mode.h (DeviceType and ScalarType are int8 enums)
            unsafe {
                let sym = |name: &[u8]| -> Result<*const (), String> {
                    this.get::<*const ()>(name).map(|s| *s).map_err(|e| {
                        format!("LibTorch's autocast function {} not found: {e}", String::from_utf8_lossy(&name[..name.len() - 1]))
                    })
                };
                Ok(Autocast {
                    device_type: if cuda { 1 } else { 0 },
                    dtype,
                    precision,
                    set_enabled: std::mem::transmute::<*const (), SetEnabled>(sym(
                        b"_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb\0",
                    )?),
                    is_enabled: std::mem::transmute::<*const (), IsEnabled>(sym(
                        b"_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE\0",
                    )?),
                    set_dtype: std::mem::transmute::<*const (), SetDtype>(sym(
                        b"_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE\0",
                    )?),
                    increment_nesting: std::mem::transmute::<*const (), Nesting>(sym(b"_ZN2at8autocast17increment_nestingEv\0")?),
                    decrement_nesting: std::mem::transmute::<*const (), Nesting>(sym(b"_ZN2at8autocast17decrement_nestingEv\0")?),
                    clear_cache: std::mem::transmute::<*const (), Clear>(sym(b"_ZN2at8autocast11clear_cacheEv\0")?),
                })
            }
        }
    }

    impl MixedPrecision for Autocast {
        fn autocast(&self, f: &mut dyn FnMut()) {
            struct Restore<'a>(&'a Autocast, bool);
            impl Drop for Restore<'_> {
                fn drop(&mut self) {
                    // SAFETY: see Autocast::new
                    unsafe {
                        if (self.0.decrement_nesting)() == 0 {
                            (self.0.clear_cache)();
                        }
                        (self.0.set_enabled)(self.0.device_type, self.1);
                    }
                }
            }
            // SAFETY: see Autocast::new
            let previous = unsafe { (self.is_enabled)(self.device_type) };
            unsafe {
                (self.set_dtype)(self.device_type, self.dtype);
                (self.set_enabled)(self.device_type, true);
                (self.increment_nesting)();
            }
            let _restore = Restore(self, previous);
            f();
        }

        fn precision(&self) -> Precision {
            self.precision
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grad_scaler_follows_pytorchs_defaults() {
        let mut s = GradScaler::default();
        assert_eq!(s.scale, 65536.0);
        s.update(true);
        assert_eq!((s.scale, s.growth_tracker), (32768.0, 0));
        for _ in 0..1999 {
            s.update(false);
        }
        assert_eq!((s.scale, s.growth_tracker), (32768.0, 1999));
        s.update(false);
        assert_eq!((s.scale, s.growth_tracker), (65536.0, 0));
        assert_eq!(Precision::parse("bf16"), Some(Precision::Bf16));
        assert_eq!(Precision::parse("half"), None);
    }
}
