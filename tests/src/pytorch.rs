//! Loading PyTorch reference networks into burn ones, for the architectures' `pytorch_reference` tests: fixtures
//! hold a state dict (`{key: {"shape", "data"}}`), an input made by [`analytic_input`]'s formula, and outputs.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use std::collections::HashMap;

/// A fixture's flat float array.
pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("an array").iter().map(|x| x.as_f64().expect("a number") as f32).collect()
}

/// A fixture's shape.
pub fn shape(v: &Value) -> Vec<usize> {
    serde_json::from_value(v.clone()).expect("a shape")
}

/// `sin(0.37 i) · cos(0.11 i)` over the flat index, in f64, cast to f32 (the fixture scripts' input).
pub fn analytic_input(shape: [usize; 5]) -> Tensor<5> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| ((0.37 * i as f64).sin() * (0.11 * i as f64).cos()) as f32).collect();
    Tensor::from_data(TensorData::new(v, shape), &Device::default())
}

/// A fixture's state dict: key → (shape, values).
pub fn state_dict(params: &Value) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    params.as_object().expect("an object").iter().map(|(k, v)| (k.clone(), (shape(&v["shape"]), floats(&v["data"])))).collect()
}

/// Loads state-dict tensors into a module by parameter path. Norm `weight`/`bias` are burn's `gamma`/`beta`; a
/// PyTorch 2D weight `(o, i, k, k)` loads into a 3D-lifted `(o, i, 1, k, k)` parameter with the same values.
struct FromStateDict {
    path: Vec<String>,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    loaded: usize,
}

impl ModuleMapper for FromStateDict {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = self.path.join(".");
        let key = match key.rsplit_once('.') {
            Some((head, "gamma")) => format!("{head}.weight"),
            Some((head, "beta")) => format!("{head}.bias"),
            _ => key,
        };
        let (src_shape, data) = self.tensors.remove(&key).unwrap_or_else(|| panic!("{key} missing from the state dict"));
        let target = param.lazy_shape().to_vec();
        let lifted: Vec<usize> =
            if src_shape.len() + 1 == target.len() { [&src_shape[..2], &[1], &src_shape[2..]].concat() } else { src_shape.clone() };
        assert_eq!(lifted, target, "{key}: PyTorch shape {src_shape:?}");
        self.loaded += 1;
        let dev = param.lazy_device();
        let id = param.id;
        param.transform_for_load(Tensor::from_data(TensorData::new(data, target), &dev), id)
    }
}

/// `module` with every parameter replaced by the state dict's tensor of the same path; panics when a parameter has
/// no tensor or a tensor no parameter. Returns the module and the number of tensors loaded.
pub fn load_state_dict<M: Module>(module: M, tensors: HashMap<String, (Vec<usize>, Vec<f32>)>) -> (M, usize) {
    let mut m = FromStateDict { path: vec![], tensors, loaded: 0 };
    let module = module.map(&mut m);
    assert!(m.tensors.is_empty(), "state-dict keys without a parameter: {:?}", m.tensors.keys().collect::<Vec<_>>());
    (module, m.loaded)
}
