//! PyTorch checkpoints (`.pth`, `torch.save`'s zip format) in both directions, so that models move between this
//! framework and Python nnU-Net:
//!
//! * [`read`] decodes any zip-format `torch.save` file into a JSON value plus its tensors (as f32);
//!   [`read_nnunet_checkpoint`] reads what `nnUNetTrainer.save_checkpoint` writes (network weights, epoch, logging,
//!   best EMA, trainer name, init args, mirroring axes) and [`load_state_dict`] puts the weights into a network as
//!   PyTorch's strict `load_state_dict` would (every key accounted for, shapes equal).
//! * [`write_nnunet_checkpoint`] writes the same dictionary for one of our networks, with every state-dict key
//!   PyTorch's module has (aliases share one storage, as in PyTorch), so `torch.load` + nnU-Net's predictor or
//!   `--c` read it.
//! * The optimizer state travels both ways: `optimizer_state` is `torch.optim.SGD`'s / `AdamW`'s `state_dict()`
//!   (`{'state': {i: {'momentum_buffer': t}}}` resp. `{i: {'step': t, 'exp_avg': t, 'exp_avg_sq': t}}`, `i` the
//!   parameter's index in `network.parameters()`, plus the parameter group). [`optimizer_state`] takes it from our
//!   burn optimizer (its burnpack record: per [`burn::module::ParamId`] `momentum.velocity`, resp. `momentum.time`,
//!   `momentum.moment_1`, `momentum.moment_2`), [`load_optimizer_state`] puts a file's state into one, and
//!   [`resume`] is `--c` from a `.pth`: SGD's momentum (AdamW's moments) continue, as after Python nnU-Net's
//!   `optimizer.load_state_dict`. State that does not fit (another optimizer, other shapes) restarts, with a warning.
//!
//! Keys and layouts come from [`Network::torch_state_dict`]; 2D PyTorch weights `(o, i, k, k)` are our 3D-lifted
//! `(o, i, 1, k, k)` parameters (the optimizer's buffers alike). The parameter index `i` is the order in which
//! parameters first appear in the state dict (PyTorch's `parameters()` order).

use crate::checkpoint::{CheckpointMeta, TrainingLog};
use crate::pickle::{self, PyValue, TensorRef};
use burn::module::ParamId;
use burn::optim::ModuleOptimizer;
use burn::tensor::TensorData;
use nnunet_core::{Network, OptimizerKind};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Why a `.pth` file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PthError {
    pub path: PathBuf,
    pub message: String,
}

fn err(path: &Path, message: impl Into<String>) -> PthError {
    PthError { path: path.to_path_buf(), message: message.into() }
}

/// A tensor of a `.pth` file, contiguous in C order, as f32.
#[derive(Debug, Clone, PartialEq)]
pub struct PthTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// A decoded `torch.save` file: the pickled object as JSON (tensors as `{"__tensor__": i}`) and its tensors.
#[derive(Debug, Clone)]
pub struct PthFile {
    pub root: Value,
    pub tensors: Vec<PthTensor>,
}

impl PthFile {
    /// The tensor a JSON value stands for.
    pub fn tensor(&self, v: &Value) -> Option<&PthTensor> {
        v.get("__tensor__").and_then(Value::as_u64).and_then(|i| self.tensors.get(i as usize))
    }
}

/// Decodes one element (its bytes, little endian?) to f32.
type Decode = fn(&[u8], bool) -> f32;

/// Element size and decoder of a storage class.
fn storage_decoder(class: &str) -> Option<(usize, Decode)> {
    fn bytes<const N: usize>(b: &[u8], little: bool) -> [u8; N] {
        let mut a: [u8; N] = b[..N].try_into().expect("element bytes");
        if !little {
            a.reverse();
        }
        a
    }
    Some(match class {
        "FloatStorage" => (4, |b, l| f32::from_le_bytes(bytes(b, l))),
        "DoubleStorage" => (8, |b, l| f64::from_le_bytes(bytes(b, l)) as f32),
        "HalfStorage" => (2, |b, l| pickle::f16_to_f64(u16::from_le_bytes(bytes(b, l))) as f32),
        "BFloat16Storage" => (2, |b, l| f32::from_bits((u16::from_le_bytes(bytes(b, l)) as u32) << 16)),
        "LongStorage" => (8, |b, l| i64::from_le_bytes(bytes(b, l)) as f32),
        "IntStorage" => (4, |b, l| i32::from_le_bytes(bytes(b, l)) as f32),
        "ShortStorage" => (2, |b, l| i16::from_le_bytes(bytes(b, l)) as f32),
        "CharStorage" => (1, |b, _| b[0] as i8 as f32),
        "ByteStorage" | "BoolStorage" => (1, |b, _| b[0] as f32),
        _ => return None,
    })
}

fn decode_tensor(t: &TensorRef, data: &[u8], little: bool) -> Result<PthTensor, String> {
    let (size, decode) = storage_decoder(&t.storage_type).ok_or_else(|| format!("tensor storage {} is not supported", t.storage_type))?;
    let stored = data.len() / size;
    let n: usize = t.shape.iter().product();
    let mut values = Vec::with_capacity(n);
    if n > 0 {
        let last = t.offset + t.shape.iter().zip(&t.stride).map(|(&s, &st)| (s - 1) * st).sum::<usize>();
        if last >= stored {
            return Err(format!("tensor of shape {:?} reaches beyond its storage {} ({stored} elements)", t.shape, t.storage));
        }
        let mut idx = vec![0usize; t.shape.len()];
        for _ in 0..n {
            let e = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
            values.push(decode(&data[e * size..(e + 1) * size], little));
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < t.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
    Ok(PthTensor { shape: t.shape.clone(), values })
}

/// Read a `torch.save` file (zip format; the legacy pre-1.6 format is not supported). Entries are read one at a time
/// (the pickle, then each storage as its tensors are decoded), so memory holds the decoded tensors and one storage.
pub fn read(path: &Path) -> Result<PthFile, PthError> {
    use std::io::Read;
    let fail = |e: std::io::Error| err(path, e.to_string());
    let mut file = std::fs::File::open(path).map_err(fail)?;
    let mut magic = [0u8; 4];
    if file.read_exact(&mut magic).is_err() || &magic != b"PK\x03\x04" {
        return Err(err(path, "not a zip-format PyTorch file (torch.save's legacy format, from PyTorch < 1.6, is not supported)"));
    }
    let mut zip = crate::zip::ZipReader::new(std::io::BufReader::new(file)).map_err(|e| err(path, format!("not a readable zip file: {e}")))?;
    let entries: HashMap<String, crate::zip::ZipEntry> = zip.entries().iter().map(|e| (e.name.clone(), e.clone())).collect();
    let pkl = entries.keys().find(|k| k.ends_with("/data.pkl") && k.matches('/').count() == 1).cloned();
    let Some(pkl) = pkl else { return Err(err(path, "no <archive>/data.pkl entry: not a torch.save file")) };
    let prefix = &pkl[..pkl.len() - "data.pkl".len()];
    let little = match entries.get(&format!("{prefix}byteorder")) {
        Some(e) => zip.read(e).map_err(fail)?.as_slice() != b"big",
        None => true,
    };
    let (root, refs) = pickle::from_bytes_with_tensors(&zip.read(&entries[&pkl]).map_err(fail)?).map_err(|e| err(path, e.to_string()))?;
    // storage by storage (aliases and views share one), each read once
    let mut order: Vec<usize> = (0..refs.len()).collect();
    order.sort_by(|&a, &b| refs[a].storage.cmp(&refs[b].storage));
    let mut tensors: Vec<Option<PthTensor>> = vec![None; refs.len()];
    let mut current: Option<(&str, Vec<u8>)> = None;
    for i in order {
        let t = &refs[i];
        if current.as_ref().is_none_or(|(s, _)| *s != t.storage.as_str()) {
            let key = format!("{prefix}data/{}", t.storage);
            let entry = entries.get(&key).ok_or_else(|| err(path, format!("storage entry {key} is missing")))?;
            current = Some((t.storage.as_str(), zip.read(entry).map_err(fail)?));
        }
        let data = &current.as_ref().expect("read above").1;
        tensors[i] = Some(decode_tensor(t, data, little).map_err(|m| err(path, m))?);
    }
    Ok(PthFile { root, tensors: tensors.into_iter().map(|t| t.expect("every tensor decoded")).collect() })
}

/// The key of what this framework adds to nnU-Net's checkpoint dictionary (Python nnU-Net ignores it): the data
/// stream's state and whether the network was built with its deep-supervision heads.
pub const OUR_KEY: &str = "nnunet_rs";

/// What a nnU-Net checkpoint (`nnUNetTrainer.save_checkpoint`) holds that we use.
#[derive(Debug, Clone)]
pub struct NnunetCheckpoint {
    /// `network_weights` (keys without DataParallel's `module.` / torch.compile's `_orig_mod.` prefix).
    pub weights: HashMap<String, PthTensor>,
    pub meta: CheckpointMeta,
    /// `init_args['plans']` and `init_args['dataset_json']`.
    pub plans: Value,
    pub dataset_json: Value,
    /// `optimizer_state['state']`: per parameter index, SGD's momentum buffer or Adam's moments (PyTorch shapes);
    /// empty when the file holds none.
    pub optimizer_state: OptimizerState,
}

/// Read a checkpoint written by Python nnU-Net's trainer (or by [`write_nnunet_checkpoint`]).
pub fn read_nnunet_checkpoint(path: &Path) -> Result<NnunetCheckpoint, PthError> {
    let file = read(path)?;
    let root = &file.root;
    let Some(weights_v) = root.get("network_weights").and_then(Value::as_object) else {
        return Err(err(path, "not a nnU-Net checkpoint: no 'network_weights' dictionary"));
    };
    let mut weights = HashMap::new();
    for (k, v) in weights_v {
        let t = file.tensor(v).ok_or_else(|| err(path, format!("network_weights['{k}'] is not a tensor")))?;
        let key = k.strip_prefix("module.").unwrap_or(k);
        let key = key.strip_prefix("_orig_mod.").unwrap_or(key);
        weights.insert(key.to_string(), t.clone());
    }
    let init = root.get("init_args").cloned().unwrap_or(Value::Null);
    let plans = init.get("plans").cloned().unwrap_or(Value::Null);
    let dataset_json = init.get("dataset_json").cloned().unwrap_or(Value::Null);
    let configuration = init.get("configuration").and_then(Value::as_str).unwrap_or_default().to_string();
    let network_class_name = serde_json::from_value::<nnunet_schema::Plans>(plans.clone())
        .ok()
        .and_then(|p| p.configuration(&configuration).ok())
        .and_then(|c| c.get("architecture")?.get("network_class_name")?.as_str().map(str::to_string))
        .unwrap_or_default();
    let ours = root.get(OUR_KEY);
    // nnU-Net's logger dict has the keys and lists of `TrainingLog` (numpy scalars read as numbers, NaN as null)
    let logging = match root.get("logging") {
        Some(l) => serde_json::from_value::<TrainingLog>(l.clone())
            .map_err(|e| err(path, format!("'logging' is not nnU-Net's logger dictionary: {e}")))?,
        None => TrainingLog::default(),
    };
    let fold = match init.get("fold") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let meta = CheckpointMeta {
        current_epoch: root.get("current_epoch").and_then(Value::as_u64).unwrap_or(0) as usize,
        best_ema: root.get("_best_ema").and_then(Value::as_f64),
        logging,
        trainer_name: root.get("trainer_name").and_then(Value::as_str).unwrap_or_default().to_string(),
        plans_name: plans.get("plans_name").and_then(Value::as_str).unwrap_or_default().to_string(),
        configuration,
        fold,
        network_class_name,
        inference_allowed_mirroring_axes: root
            .get("inference_allowed_mirroring_axes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).map(|x| x as usize).collect()),
        // written here: the data stream and whether the network had its deep-supervision heads
        rng: ours.and_then(|o| serde_json::from_value(o.get("rng")?.clone()).ok()),
        // else: PyTorch's U-Nets always hold every deep-supervision head's parameters
        deep_supervision: Some(ours.and_then(|o| o.get("deep_supervision")?.as_bool()).unwrap_or(true)),
        grad_scaler: root.get("grad_scaler_state").and_then(grad_scaler_of),
    };
    let optimizer_state = read_optimizer_state(&file);
    Ok(NnunetCheckpoint { weights, meta, plans, dataset_json, optimizer_state })
}

/// `torch.amp.GradScaler.state_dict()` (nnU-Net's `grad_scaler_state`, `None` without a scaler, `{}` from a disabled
/// one): the scale and the growth tracker; growth and backoff factors and interval are PyTorch's defaults, as ours.
fn grad_scaler_of(v: &Value) -> Option<nnunet_core::GradScaler> {
    Some(nnunet_core::GradScaler {
        scale: v.get("scale")?.as_f64()?,
        growth_tracker: v.get("_growth_tracker").and_then(Value::as_u64).unwrap_or(0) as u32,
    })
}

/// `optimizer_state['state']` of a `torch.save`d checkpoint (see [`ParamState`]). Entries with a `None` momentum
/// buffer (SGD without momentum) hold no state and are left out.
fn read_optimizer_state(file: &PthFile) -> OptimizerState {
    let mut out = OptimizerState::new();
    let Some(state) = file.root.get("optimizer_state").and_then(|o| o.get("state")).and_then(Value::as_object) else { return out };
    for (k, v) in state {
        // PyTorch's keys are the integer parameter indices
        let (Ok(i), Some(m)) = (k.parse::<usize>(), v.as_object()) else { continue };
        let tensor = |name: &str| m.get(name).and_then(|v| file.tensor(v)).cloned();
        let other = || ParamState::Other { keys: m.keys().cloned().collect() };
        let entry = if m.len() == 1 && m.get("momentum_buffer").is_some_and(Value::is_null) {
            continue;
        } else if let (1, Some(momentum_buffer)) = (m.len(), tensor("momentum_buffer")) {
            ParamState::Sgd { momentum_buffer }
        } else if let (3, Some(exp_avg), Some(exp_avg_sq), Some(step)) = (m.len(), tensor("exp_avg"), tensor("exp_avg_sq"), m.get("step")) {
            // a float32 scalar tensor since torch 1.12, a number before
            let step = match file.tensor(step) {
                Some(t) if t.values.len() == 1 => Some(t.values[0] as f64),
                Some(_) => None,
                None => step.as_f64(),
            };
            match step {
                Some(step) => ParamState::Adam { step, exp_avg, exp_avg_sq },
                None => other(),
            }
        } else {
            other()
        };
        out.insert(i, entry);
    }
    out
}

/// PyTorch's shape of a parameter of `ours` shape: equal, or a 2D weight lifted to 3D (`(o, i, 1, k, k)`).
pub(crate) fn shapes_match(torch: &[usize], ours: &[usize]) -> bool {
    torch == ours || (ours.len() == 5 && torch.len() == 4 && ours[2] == 1 && torch[..2] == ours[..2] && torch[2..] == ours[3..])
}

/// Put `weights` (a PyTorch state dict) into `net`, strictly as PyTorch's `load_state_dict`: every parameter must
/// have a key, every key must belong to a parameter, shapes must agree. All problems are listed in the error.
/// Returns the number of parameters loaded.
pub fn load_state_dict(net: &mut dyn Network, weights: &HashMap<String, PthTensor>) -> Result<usize, String> {
    let keys = net.torch_state_dict();
    let shapes: HashMap<String, Vec<usize>> = net.named_parameters().into_iter().map(|p| (p.path, p.shape)).collect();
    let mut source: HashMap<&str, &PthTensor> = HashMap::new();
    let mut problems = Vec::new();
    let mut first_key: HashMap<&str, &str> = HashMap::new();
    for k in &keys {
        first_key.entry(k.path.as_str()).or_insert(k.key.as_str());
        let Some(t) = weights.get(&k.key) else { continue };
        let ours = &shapes[&k.path];
        if !shapes_match(&t.shape, ours) {
            problems.push(format!("size mismatch for {}: the checkpoint has {:?}, the network {:?}", k.key, t.shape, ours));
        }
        source.entry(k.path.as_str()).or_insert(t);
    }
    let mut missing: Vec<&str> = first_key.iter().filter(|(p, _)| !source.contains_key(*p)).map(|(_, k)| *k).collect();
    missing.sort();
    if !missing.is_empty() {
        problems.push(format!("missing key(s) in the checkpoint: {}", missing.join(", ")));
    }
    let known: std::collections::HashSet<&str> = keys.iter().map(|k| k.key.as_str()).collect();
    let mut unexpected: Vec<&str> = weights.keys().map(String::as_str).filter(|k| !known.contains(k)).collect();
    unexpected.sort();
    if !unexpected.is_empty() {
        problems.push(format!("unexpected key(s) in the checkpoint: {}", unexpected.join(", ")));
    }
    if !problems.is_empty() {
        return Err(format!("the checkpoint's weights do not fit the network: {}", problems.join("; ")));
    }
    Ok(net.replace_parameters(&mut |path, _| source.get(path).map(|t| t.values.clone())))
}

// ---------------------------------------------------------------------------------------------------------------
// optimizer state

/// One parameter's optimizer state, as `optimizer.state_dict()['state'][i]` of PyTorch holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamState {
    /// `torch.optim.SGD` with momentum: `momentum_buffer`. Burn's SGD velocity is the same quantity (dampening 0:
    /// the first step's buffer is the gradient, then `buf = μ·buf + g`, `g` with the weight decay added).
    Sgd { momentum_buffer: PthTensor },
    /// `torch.optim.Adam`/`AdamW`: `step` (steps taken; a float32 scalar tensor in PyTorch), `exp_avg`,
    /// `exp_avg_sq`; burn's AdamW `time`, `moment_1`, `moment_2` (bias corrections use `1 − β^step` in both).
    Adam { step: f64, exp_avg: PthTensor, exp_avg_sq: PthTensor },
    /// Any other layout (another optimizer, AMSGrad's `max_exp_avg_sq`, …): its keys. Never loaded.
    Other { keys: Vec<String> },
}

impl ParamState {
    fn describe(&self) -> String {
        match self {
            ParamState::Sgd { .. } => "SGD's momentum_buffer".into(),
            ParamState::Adam { .. } => "Adam's step/exp_avg/exp_avg_sq".into(),
            ParamState::Other { keys } => format!("an optimizer state with keys {keys:?}"),
        }
    }
}

/// Per-parameter optimizer state keyed by the parameter's index in PyTorch's `network.parameters()` (the order in
/// which parameters first appear in [`Network::torch_state_dict`]). Parameters that never took a step are absent,
/// as in PyTorch.
pub type OptimizerState = BTreeMap<usize, ParamState>;

/// The network's parameters in PyTorch's `parameters()` order: path, burn id, our shape.
fn torch_parameters(net: &dyn Network) -> Vec<(String, ParamId, Vec<usize>)> {
    let mut by_path: HashMap<String, (ParamId, Vec<usize>)> = net.parameter_ids().into_iter().map(|(p, id, s)| (p, (id, s))).collect();
    net.torch_state_dict().into_iter().filter_map(|k| by_path.remove(&k.path).map(|(id, s)| (k.path, id, s))).collect()
}

/// The state of `optim`, the optimizer that trains `net`, per PyTorch parameter index (see [`ParamState`]), read
/// from burn's record of it (burnpack: tensors `{param id}.momentum.velocity` for SGD, `{id}.momentum.moment_1` /
/// `moment_2` and the scalar `{id}.momentum.time` for AdamW). Tensors have our parameters' shapes (2D weights with
/// their unit depth axis). State of ids that are no parameter of `net` is left out; SGD without momentum has none.
pub fn optimizer_state(net: &dyn Network, optim: &ModuleOptimizer) -> Result<OptimizerState, String> {
    let bytes = optim.into_bytes().map_err(|e| format!("cannot serialize the optimizer state: {e:?}"))?;
    let reader = burn_pack::Reader::from_bytes(bytes).map_err(|e| format!("cannot read the optimizer's record: {e}"))?;
    let scalars = reader.scalars().clone();
    let index: HashMap<u64, usize> = torch_parameters(net).iter().enumerate().map(|(i, (_, id, _))| (id.val(), i)).collect();
    let mut fields: BTreeMap<usize, (u64, HashMap<String, PthTensor>)> = BTreeMap::new();
    for t in reader.into_tensors().map_err(|e| format!("cannot read the optimizer's record: {e}"))? {
        let (name, dtype, shape, param_id, bytes) = t.into_parts().map_err(|e| format!("optimizer record: {e}"))?;
        let id = param_id.ok_or_else(|| format!("optimizer record: tensor {name} has no parameter id"))?;
        let Some(&i) = index.get(&id) else { continue };
        let values = TensorData::from_bytes(bytes, shape.clone(), dtype)
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| format!("optimizer record: tensor {name}: {e:?}"))?;
        let field = name.strip_prefix(&format!("{id}.")).unwrap_or(&name).to_string();
        fields.entry(i).or_insert_with(|| (id, HashMap::new())).1.insert(field, PthTensor { shape: shape.to_vec(), values });
    }
    let mut out = OptimizerState::new();
    for (i, (id, mut f)) in fields {
        let mut names: Vec<&String> = f.keys().collect();
        names.sort();
        let state = match names.as_slice() {
            [v] if *v == "momentum.velocity" => ParamState::Sgd { momentum_buffer: f.remove("momentum.velocity").expect("present") },
            [m1, m2] if *m1 == "momentum.moment_1" && *m2 == "momentum.moment_2" => {
                let time = scalars
                    .get(&format!("{id}.momentum.time"))
                    .and_then(|s| u64::try_from(*s).ok())
                    .ok_or_else(|| format!("optimizer record: parameter {i} has AdamW moments but no step count"))?;
                ParamState::Adam {
                    step: time as f64,
                    exp_avg: f.remove("momentum.moment_1").expect("present"),
                    exp_avg_sq: f.remove("momentum.moment_2").expect("present"),
                }
            }
            other => return Err(format!("optimizer record: parameter {i} has state {other:?}, neither SGD's nor AdamW's")),
        };
        out.insert(i, state);
    }
    Ok(out)
}

/// What [`load_optimizer_state`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateLoad {
    /// Parameters whose state was loaded.
    pub loaded: usize,
    /// Why the state of the file's other parameters was not loaded (it restarts, as for a parameter without state).
    pub problems: Vec<String>,
}

/// Put `state` (of a `.pth` file, [`NnunetCheckpoint::optimizer_state`]) into `optim`, an optimizer of `kind` for
/// `net`, by writing the burnpack record burn's own `ModuleOptimizer::save` would write for it and loading that.
/// State for another optimizer kind, of another shape, of an index the network does not have, or with a step count
/// that is no positive integer is not loaded: that parameter restarts (listed in [`StateLoad::problems`]).
/// Parameters of `net` without state in `state` start afresh too; `optim`'s own previous state is replaced.
pub fn load_optimizer_state(
    net: &dyn Network,
    optim: ModuleOptimizer,
    kind: OptimizerKind,
    state: &OptimizerState,
) -> (ModuleOptimizer, StateLoad) {
    let params = torch_parameters(net);
    let mut report = StateLoad::default();
    let mut tensors = Vec::new();
    let mut scalars: Vec<(String, burn_pack::Scalar)> = Vec::new();
    let mut paths = Vec::new();
    for (&i, s) in state {
        let Some((path, id, shape)) = params.get(i) else {
            report.problems.push(format!("state of parameter {i}, but the network has {} parameters", params.len()));
            continue;
        };
        let (fields, time): (Vec<(&str, &PthTensor)>, Option<u64>) = match (kind, s) {
            (OptimizerKind::Sgd, ParamState::Sgd { momentum_buffer }) => (vec![("momentum.velocity", momentum_buffer)], None),
            (OptimizerKind::AdamW, ParamState::Adam { step, exp_avg, exp_avg_sq }) => {
                if !(step.is_finite() && *step >= 1.0 && step.fract() == 0.0 && *step <= u32::MAX as f64) {
                    report.problems.push(format!("{path}: Adam's step {step} is no step count"));
                    continue;
                }
                (vec![("momentum.moment_1", exp_avg), ("momentum.moment_2", exp_avg_sq)], Some(*step as u64))
            }
            (kind, s) => {
                report.problems.push(format!("{path}: {}, but this trainer's optimizer is {kind:?}", s.describe()));
                continue;
            }
        };
        let numel: usize = shape.iter().product();
        if let Some((name, t)) = fields.iter().find(|(_, t)| !shapes_match(&t.shape, shape) || t.values.len() != numel) {
            report.problems.push(format!("{path}: {name} has shape {:?}, the parameter {:?}", t.shape, shape));
            continue;
        }
        let prefix = id.val().to_string();
        for (name, t) in fields {
            let (bytes, _, dtype) = TensorData::new(t.values.clone(), shape.clone()).into_parts();
            tensors.push(burn_pack::Tensor::new(format!("{prefix}.{name}"), dtype, shape.clone(), Some(id.val()), bytes));
        }
        if let Some(time) = time {
            scalars.push((format!("{prefix}.momentum.time"), burn_pack::Scalar::from(time as usize)));
        }
        scalars.push((format!("{prefix}.__rank"), burn_pack::Scalar::from(shape.len())));
        paths.push((prefix, path.clone()));
        report.loaded += 1;
    }
    let mut writer = burn_pack::Writer::new(tensors);
    for (k, v) in &scalars {
        writer = writer.with_scalar(k, *v);
    }
    for (k, v) in &paths {
        writer = writer.with_metadata(k, v);
    }
    let loaded = writer.into_bytes().map_err(|e| format!("{e}")).and_then(|b| optim.clone().from_bytes(b).map_err(|e| format!("{e:?}")));
    match loaded {
        Ok(o) => (o, report),
        Err(e) => {
            report.problems.push(format!("the optimizer did not take the state: {e}"));
            report.loaded = 0;
            (optim, report)
        }
    }
}

/// `--c` from a `.pth` file (Python nnU-Net's or ours): the weights into `net` (strictly, [`load_state_dict`]), the
/// optimizer state into `optim` ([`load_optimizer_state`]; `kind` is the trainer's optimizer), as Python nnU-Net's
/// `load_checkpoint` does. Returns the metadata, the optimizer and lines for the training log on the optimizer
/// state (one starting with `WARNING:` when some of the file's state restarts).
pub fn resume(
    path: &Path,
    net: &mut dyn Network,
    optim: ModuleOptimizer,
    kind: OptimizerKind,
) -> Result<(CheckpointMeta, ModuleOptimizer, Vec<String>), PthError> {
    let c = read_nnunet_checkpoint(path)?;
    load_state_dict(net, &c.weights).map_err(|m| err(path, m))?;
    let (optim, report) = load_optimizer_state(net, optim, kind, &c.optimizer_state);
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let what = match kind {
        OptimizerKind::Sgd => "SGD momentum buffers",
        OptimizerKind::AdamW => "AdamW moments",
    };
    let n = torch_parameters(net).len();
    let mut lines = vec![if c.optimizer_state.is_empty() {
        format!("Optimizer state: {file} holds none, the {what} start from zero")
    } else {
        format!("Optimizer state: {what} of {} of {n} parameters loaded from {file}", report.loaded)
    }];
    if !report.problems.is_empty() {
        let k = report.problems.len();
        let shown: Vec<&str> = report.problems.iter().take(3).map(String::as_str).collect();
        lines.push(format!(
            "WARNING: the optimizer state of {k} parameter(s) in {file} was not loaded, it restarts from zero: {}{}",
            shown.join("; "),
            if k > 3 { format!("; … ({k} in all)") } else { String::new() }
        ));
    }
    Ok((c.meta, optim, lines))
}

// ---------------------------------------------------------------------------------------------------------------
// writing

/// `torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())` of the float32 storage `key`
/// (C-contiguous, offset 0), as `torch.save` pickles a tensor.
fn tensor_py(storage: usize, numel: usize, shape: Vec<usize>) -> PyValue {
    let mut stride = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        stride[d] = stride[d + 1] * shape[d + 1];
    }
    let ints = |v: &[usize]| PyValue::Tuple(v.iter().map(|&x| PyValue::Int(x as i64)).collect());
    let storage_id = PyValue::Tuple(vec![
        PyValue::Str("storage".into()),
        PyValue::Global { module: "torch".into(), name: "FloatStorage".into() },
        PyValue::Str(storage.to_string()),
        PyValue::Str("cpu".into()),
        PyValue::Int(numel as i64),
    ]);
    PyValue::call(
        "torch._utils",
        "_rebuild_tensor_v2",
        vec![PyValue::PersistentId(Box::new(storage_id)), PyValue::Int(0), ints(&shape), ints(&stride), PyValue::Bool(false), PyValue::OrderedDict(vec![])],
    )
}

/// The optimizer's parameter group as `torch.optim.SGD`/`AdamW` state dicts hold it (hyperparameters at the
/// checkpoint's epoch).
#[derive(Debug, Clone)]
pub struct OptimizerGroup {
    /// `SGD` or `AdamW`
    pub kind: nnunet_core::OptimizerKind,
    pub lr: f64,
    pub weight_decay: f64,
    /// SGD's momentum
    pub momentum: f64,
    /// AdamW's epsilon
    pub eps: f64,
}

impl OptimizerGroup {
    /// The group of a trainer configuration's optimizer at learning rate `lr`.
    pub fn new(cfg: &nnunet_core::TrainerConfig, lr: f64) -> OptimizerGroup {
        OptimizerGroup { kind: cfg.optimizer, lr, weight_decay: cfg.weight_decay, momentum: cfg.momentum, eps: cfg.adam_eps }
    }
}

/// Write `net` with `meta` as the dictionary `nnUNetTrainer.save_checkpoint` writes, to `path` (temp file + rename).
/// `plans` and `dataset_json` become `init_args` (with `configuration`, `fold` and `device`). `optimizer_state` is
/// `optimizer`'s parameter group and, with `optim` (the optimizer training `net`, of `optimizer.kind`), its
/// per-parameter state ([`optimizer_state`]) in PyTorch's layout; without it the state is empty.
pub fn write_nnunet_checkpoint(
    path: &Path,
    net: &dyn Network,
    meta: &CheckpointMeta,
    optimizer: &OptimizerGroup,
    optim: Option<&ModuleOptimizer>,
    plans: &Value,
    dataset_json: &Value,
) -> Result<(), PthError> {
    let params: HashMap<String, nnunet_core::NamedParam> = net.named_parameters().into_iter().map(|p| (p.path.clone(), p)).collect();
    // one storage per parameter, in the order the parameters first appear (= PyTorch's parameters() order)
    let mut storage_of: HashMap<String, usize> = HashMap::new();
    // the values behind each storage, turned into bytes one storage at a time as the file is written: memory holds
    // the parameters and optimizer state once (as f32), not a second time as bytes
    let mut storages: Vec<&[f32]> = Vec::new();
    let mut weights = Vec::new();
    let two_d = is_2d(plans, &meta.configuration);
    // 2D networks: PyTorch's weights (and the optimizer's buffers) have no singleton depth axis
    let torch_shape = |s: &[usize]| if two_d && s.len() == 5 && s[2] == 1 { [&s[..2], &s[3..]].concat() } else { s.to_vec() };
    for k in net.torch_state_dict() {
        let p = params.get(&k.path).ok_or_else(|| err(path, format!("state-dict key {} names no parameter ({})", k.key, k.path)))?;
        let storage = *storage_of.entry(k.path.clone()).or_insert_with(|| {
            storages.push(&p.values);
            storages.len() - 1
        });
        let shape = torch_shape(&p.shape);
        weights.push((PyValue::Str(k.key), tensor_py(storage, p.values.len(), shape)));
    }
    let n_params = storages.len();
    let state = match optim {
        Some(o) => optimizer_state(net, o).map_err(|m| err(path, m))?,
        None => OptimizerState::new(),
    };
    // AdamW's step counts as PyTorch's float32 scalar tensors, made before the storages borrow them
    let steps: BTreeMap<usize, PthTensor> = state
        .iter()
        .filter_map(|(i, s)| match s {
            ParamState::Adam { step, .. } => Some((*i, PthTensor { shape: vec![], values: vec![*step as f32] })),
            _ => None,
        })
        .collect();
    fn add<'a>(storages: &mut Vec<&'a [f32]>, t: &'a PthTensor, shape: Vec<usize>) -> PyValue {
        storages.push(&t.values);
        tensor_py(storages.len() - 1, t.values.len(), shape)
    }
    let mut tensor = |t| add(&mut storages, t, torch_shape(&t.shape));
    let mut state_py = Vec::with_capacity(state.len());
    for (i, s) in &state {
        let entry = match (optimizer.kind, s) {
            (nnunet_core::OptimizerKind::Sgd, ParamState::Sgd { momentum_buffer }) => {
                vec![("momentum_buffer".into(), tensor(momentum_buffer))]
            }
            (nnunet_core::OptimizerKind::AdamW, ParamState::Adam { exp_avg, exp_avg_sq, .. }) => vec![
                ("step".to_string(), tensor(&steps[i])),
                ("exp_avg".into(), tensor(exp_avg)),
                ("exp_avg_sq".into(), tensor(exp_avg_sq)),
            ],
            (kind, s) => return Err(err(path, format!("the optimizer holds {} but the parameter group is {kind:?}'s", s.describe()))),
        };
        state_py.push((PyValue::Int(*i as i64), PyValue::str_dict(entry)));
    }
    let mut group = match optimizer.kind {
        nnunet_core::OptimizerKind::Sgd => vec![
            ("lr".to_string(), PyValue::Float(optimizer.lr)),
            ("momentum".into(), PyValue::Float(optimizer.momentum)),
            ("dampening".into(), PyValue::Int(0)),
            ("weight_decay".into(), PyValue::Float(optimizer.weight_decay)),
            ("nesterov".into(), PyValue::Bool(true)),
            ("maximize".into(), PyValue::Bool(false)),
            ("foreach".into(), PyValue::None),
            ("differentiable".into(), PyValue::Bool(false)),
            ("fused".into(), PyValue::None),
        ],
        nnunet_core::OptimizerKind::AdamW => vec![
            ("lr".to_string(), PyValue::Float(optimizer.lr)),
            ("betas".into(), PyValue::Tuple(vec![PyValue::Float(0.9), PyValue::Float(0.999)])),
            ("eps".into(), PyValue::Float(optimizer.eps)),
            ("weight_decay".into(), PyValue::Float(optimizer.weight_decay)),
            ("amsgrad".into(), PyValue::Bool(false)),
            ("foreach".into(), PyValue::None),
            ("maximize".into(), PyValue::Bool(false)),
            ("capturable".into(), PyValue::Bool(false)),
            ("differentiable".into(), PyValue::Bool(false)),
            ("fused".into(), PyValue::None),
            ("decoupled_weight_decay".into(), PyValue::Bool(true)),
        ],
    };
    group.push(("params".into(), PyValue::List((0..n_params as i64).map(PyValue::Int).collect())));
    let l = &meta.logging;
    let logging = PyValue::str_dict(vec![
        ("mean_fg_dice".into(), PyValue::float_list(&l.mean_fg_dice)),
        ("ema_fg_dice".into(), PyValue::float_list(&l.ema_fg_dice)),
        ("dice_per_class_or_region".into(), PyValue::List(l.dice_per_class_or_region.iter().map(|v| PyValue::float_list(v)).collect())),
        ("train_losses".into(), PyValue::float_list(&l.train_losses)),
        ("val_losses".into(), PyValue::float_list(&l.val_losses)),
        ("lrs".into(), PyValue::float_list(&l.lrs)),
        ("epoch_start_timestamps".into(), PyValue::float_list(&l.epoch_start_timestamps)),
        ("epoch_end_timestamps".into(), PyValue::float_list(&l.epoch_end_timestamps)),
    ]);
    let fold = meta.fold.parse::<i64>().map(PyValue::Int).unwrap_or_else(|_| PyValue::Str(meta.fold.clone()));
    let mut root = vec![
        ("network_weights".into(), PyValue::OrderedDict(weights)),
        (
            "optimizer_state".into(),
            PyValue::str_dict(vec![
                ("state".into(), PyValue::Dict(state_py)),
                ("param_groups".into(), PyValue::List(vec![PyValue::str_dict(group)])),
            ]),
        ),
        (
            "grad_scaler_state".into(),
            match meta.grad_scaler {
                Some(g) => PyValue::str_dict(vec![
                    ("scale".into(), PyValue::Float(g.scale)),
                    ("growth_factor".into(), PyValue::Float(nnunet_core::GradScaler::GROWTH_FACTOR)),
                    ("backoff_factor".into(), PyValue::Float(nnunet_core::GradScaler::BACKOFF_FACTOR)),
                    ("growth_interval".into(), PyValue::Int(nnunet_core::GradScaler::GROWTH_INTERVAL as i64)),
                    ("_growth_tracker".into(), PyValue::Int(g.growth_tracker as i64)),
                ]),
                None => PyValue::None,
            },
        ),
        ("logging".into(), logging),
        ("_best_ema".into(), meta.best_ema.map(PyValue::Float).unwrap_or(PyValue::None)),
        ("current_epoch".into(), PyValue::Int(meta.current_epoch as i64)),
        (
            "init_args".into(),
            PyValue::str_dict(vec![
                ("plans".into(), PyValue::from_json(plans)),
                ("configuration".into(), PyValue::Str(meta.configuration.clone())),
                ("fold".into(), fold),
                ("dataset_json".into(), PyValue::from_json(dataset_json)),
                ("device".into(), PyValue::call("torch", "device", vec![PyValue::Str("cuda".into())])),
            ]),
        ),
        ("trainer_name".into(), PyValue::Str(meta.trainer_name.clone())),
        (
            "inference_allowed_mirroring_axes".into(),
            match &meta.inference_allowed_mirroring_axes {
                Some(a) => PyValue::Tuple(a.iter().map(|&x| PyValue::Int(x as i64)).collect()),
                None => PyValue::None,
            },
        ),
    ];
    let mut ours = vec![("deep_supervision".to_string(), meta.deep_supervision.map(PyValue::Bool).unwrap_or(PyValue::None))];
    if let Some(r) = meta.rng {
        ours.push((
            "rng".into(),
            PyValue::str_dict(vec![
                ("seed".into(), PyValue::Int(r.seed as i64)),
                ("next_train_batch".into(), PyValue::Int(r.next_train_batch as i64)),
                ("next_val_batch".into(), PyValue::Int(r.next_val_batch as i64)),
            ]),
        ));
    }
    root.push((OUR_KEY.into(), PyValue::str_dict(ours)));
    let data_pkl = pickle::to_bytes(&PyValue::str_dict(root));

    // streamed into the file entry by entry (no second copy of the storages in memory)
    let archive = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "archive".into());
    nnunet_schema::json::write_atomic_with(path, |f| {
        let mut zip = crate::zip::ZipWriter::new(std::io::BufWriter::new(f), Some(64));
        zip.add(&format!("{archive}/data.pkl"), &data_pkl)?;
        zip.add(&format!("{archive}/.format_version"), b"1")?;
        zip.add(&format!("{archive}/.storage_alignment"), b"64")?;
        zip.add(&format!("{archive}/byteorder"), b"little")?;
        let mut hash = flate2::Crc::new();
        for (i, values) in storages.iter().enumerate() {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            hash.update(&bytes);
            zip.add(&format!("{archive}/data/{i}"), &bytes)?;
        }
        zip.add(&format!("{archive}/version"), b"3\n")?;
        zip.add(&format!("{archive}/.data/serialization_id"), format!("{:040}", hash.sum()).as_bytes())?;
        zip.finish()?.into_inner().map_err(|e| e.into_error())?;
        Ok(())
    })
    .map_err(|e| err(path, e.to_string()))
}

/// Whether configuration `name` of `plans` is 2D (a two-element patch size): its PyTorch weights have no depth axis.
fn is_2d(plans: &Value, name: &str) -> bool {
    serde_json::from_value::<nnunet_schema::Plans>(plans.clone())
        .ok()
        .and_then(|p| p.configuration(name).ok())
        .and_then(|c| c.get("patch_size").and_then(Value::as_array).map(|a| a.len() == 2))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::RngState;
    use burn::tensor::Device;
    use nnunet_arch_unet as _;
    use nnunet_core::architecture::NetworkSpec;
    use serde_json::json;

    fn kwargs(dims: usize, resenc: bool) -> Value {
        let k = vec![vec![3; dims]; 3];
        let mut s = vec![vec![2; dims]; 3];
        s[0] = vec![1; dims];
        let per_stage = if resenc { "n_blocks_per_stage" } else { "n_conv_per_stage" };
        json!({
            "n_stages": 3, "features_per_stage": [4, 8, 16],
            "conv_op": if dims == 3 { "torch.nn.modules.conv.Conv3d" } else { "torch.nn.modules.conv.Conv2d" },
            "kernel_sizes": k, "strides": s, per_stage: [1, 2, 2], "n_conv_per_stage_decoder": [1, 1], "conv_bias": true,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": true},
            "dropout_op": null, "dropout_op_kwargs": null, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": true}
        })
    }

    /// A U-Net on the default device, or with `autodiff` on its autodiff device (to train it).
    fn net_on(dims: usize, resenc: bool, seed: u64, autodiff: bool) -> Box<dyn Network> {
        let spec = NetworkSpec {
            arch_kwargs: kwargs(dims, resenc).as_object().unwrap().clone(),
            in_channels: 1,
            out_channels: 3,
            deep_supervision: true,
        };
        let dev = Device::default();
        dev.seed(seed);
        let class = if resenc { nnunet_arch_unet::RESENC_NAME } else { nnunet_arch_unet::PLAIN_NAME };
        let arch = nnunet_core::registry::architectures().unwrap().get(class).unwrap();
        (arch.make)().build(&spec, &if autodiff { dev.autodiff() } else { dev }).unwrap()
    }

    fn net(dims: usize, resenc: bool, seed: u64) -> Box<dyn Network> {
        net_on(dims, resenc, seed, false)
    }

    fn plans(dims: usize, resenc: bool) -> Value {
        let class = if resenc { nnunet_arch_unet::RESENC_NAME } else { nnunet_arch_unet::PLAIN_NAME };
        let patch = if dims == 3 { json!([16, 16, 16]) } else { json!([16, 16]) };
        json!({"plans_name": "nnUNetPlans", "dataset_name": "Dataset999_T", "configurations": {
            "tiny": {"patch_size": patch, "architecture": {"network_class_name": class, "arch_kwargs": kwargs(dims, resenc)}}}})
    }

    fn meta() -> CheckpointMeta {
        CheckpointMeta {
            current_epoch: 7,
            best_ema: Some(0.625),
            logging: TrainingLog {
                mean_fg_dice: vec![0.5, f64::NAN],
                ema_fg_dice: vec![0.5, 0.55],
                dice_per_class_or_region: vec![vec![0.25, 0.75], vec![0.5, 0.5]],
                train_losses: vec![-0.1, -0.2],
                val_losses: vec![-0.05, -0.15],
                lrs: vec![0.01, 0.009],
                epoch_start_timestamps: vec![1.7e9, 1.7e9 + 10.0],
                epoch_end_timestamps: vec![1.7e9 + 9.0, 1.7e9 + 19.0],
            },
            trainer_name: "nnUNetTrainer_5epochs".into(),
            plans_name: "nnUNetPlans".into(),
            configuration: "tiny".into(),
            fold: "0".into(),
            network_class_name: String::new(),
            inference_allowed_mirroring_axes: Some(vec![0, 1, 2]),
            rng: Some(RngState { seed: 1, next_train_batch: 2, next_val_batch: 3 }),
            deep_supervision: Some(true),
            grad_scaler: None,
        }
    }

    fn group() -> OptimizerGroup {
        OptimizerGroup { kind: nnunet_core::OptimizerKind::Sgd, lr: 0.009, weight_decay: 3e-5, momentum: 0.99, eps: 1e-8 }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pth_{name}_{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// What is written reads back: the weights into another network, and the metadata.
    #[test]
    fn written_checkpoints_read_back() {
        for (dims, resenc) in [(3, false), (2, false), (3, true)] {
            let dir = tmp(&format!("rt{dims}{resenc}"));
            let path = dir.join("checkpoint_final.pth");
            let source = net(dims, resenc, 1);
            // fp16 training's loss scale travels as nnU-Net's `grad_scaler_state`; without one it is `None`
            let want = CheckpointMeta {
                grad_scaler: resenc.then_some(nnunet_core::GradScaler { scale: 32768.0, growth_tracker: 17 }),
                ..meta()
            };
            write_nnunet_checkpoint(&path, source.as_ref(), &want, &group(), None, &plans(dims, resenc), &json!({"labels": {}})).unwrap();
            let c = read_nnunet_checkpoint(&path).unwrap();
            // every key of PyTorch's state dict, 2D weights without the depth axis
            assert_eq!(c.weights.len(), source.torch_state_dict().len());
            let w = &c.weights["decoder.seg_layers.0.weight"];
            assert_eq!(w.shape, if dims == 3 { vec![3, 8, 1, 1, 1] } else { vec![3, 8, 1, 1] });
            let mut target = net(dims, resenc, 2);
            assert_ne!(target.named_parameters(), source.named_parameters());
            let n = load_state_dict(target.as_mut(), &c.weights).unwrap();
            assert_eq!(n, source.named_parameters().len());
            assert_eq!(target.named_parameters(), source.named_parameters(), "dims {dims} resenc {resenc}");
            let m = c.meta;
            assert_eq!(m.grad_scaler, want.grad_scaler, "dims {dims} resenc {resenc}");
            assert_eq!((m.current_epoch, m.best_ema, &m.trainer_name), (7, Some(0.625), &want.trainer_name));
            assert_eq!((&m.configuration, &m.fold, &m.plans_name), (&want.configuration, &want.fold, &want.plans_name));
            assert_eq!(m.inference_allowed_mirroring_axes, Some(vec![0, 1, 2]));
            assert_eq!(m.logging.dice_per_class_or_region, want.logging.dice_per_class_or_region);
            assert_eq!(m.logging.train_losses, want.logging.train_losses);
            assert!(m.logging.mean_fg_dice[1].is_nan());
            assert_eq!((m.rng, m.deep_supervision), (want.rng, Some(true)));
            let class = if resenc { nnunet_arch_unet::RESENC_NAME } else { nnunet_arch_unet::PLAIN_NAME };
            assert_eq!(m.network_class_name, class);
            std::fs::remove_dir_all(&dir).ok();
        }
    }

    /// As PyTorch's strict `load_state_dict`: a missing key, an unknown key and a wrong shape are all reported.
    #[test]
    fn loading_is_strict_and_lists_every_problem() {
        let dir = tmp("strict");
        let path = dir.join("c.pth");
        write_nnunet_checkpoint(&path, net(3, false, 1).as_ref(), &meta(), &group(), None, &plans(3, false), &json!({})).unwrap();
        let mut w = read_nnunet_checkpoint(&path).unwrap().weights;
        // both keys of the aliased tensor must go for it to be missing
        w.remove("encoder.stages.0.0.convs.0.conv.bias");
        w.remove("encoder.stages.0.0.convs.0.all_modules.0.bias");
        w.remove("decoder.encoder.stages.0.0.convs.0.conv.bias");
        w.remove("decoder.encoder.stages.0.0.convs.0.all_modules.0.bias");
        w.insert("decoder.extra.weight".into(), PthTensor { shape: vec![1], values: vec![0.0] });
        w.get_mut("decoder.seg_layers.1.bias").unwrap().shape = vec![4];
        let e = load_state_dict(net(3, false, 2).as_mut(), &w).unwrap_err();
        assert!(e.contains("missing key(s) in the checkpoint: encoder.stages.0.0.convs.0.conv.bias"), "{e}");
        assert!(e.contains("unexpected key(s) in the checkpoint: decoder.extra.weight"), "{e}");
        assert!(e.contains("size mismatch for decoder.seg_layers.1.bias"), "{e}");
        // one alias is enough (a state dict saved without the decoder's encoder reference)
        let mut w = read_nnunet_checkpoint(&path).unwrap().weights;
        w.retain(|k, _| !k.starts_with("decoder.encoder."));
        assert!(load_state_dict(net(3, false, 2).as_mut(), &w).is_ok());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn legacy_and_foreign_files_are_refused_with_the_reason() {
        let dir = tmp("bad");
        let legacy = dir.join("old.pth");
        std::fs::write(&legacy, [0x80, 0x02, 0x8a, 0x0a]).unwrap();
        assert!(read(&legacy).unwrap_err().to_string().contains("legacy format"));
        let npz = dir.join("x.pth");
        std::fs::write(&npz, crate::inference::npz_bytes(&[("a.npy", b"123")]).unwrap()).unwrap();
        assert!(read(&npz).unwrap_err().to_string().contains("data.pkl"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn strided_and_low_precision_storages_decode() {
        // a transposed 2×3 view of a 3×2 float16 storage at offset 1
        let halves: Vec<u8> = [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|&x| {
                // exact in f16: sign 0, exponent, 10-bit fraction
                let bits = if x == 0.0 {
                    0u16
                } else {
                    ((x.log2().floor() as i32 + 15) as u16) << 10 | ((x / 2f32.powf(x.log2().floor()) - 1.0) * 1024.0) as u16
                };
                bits.to_le_bytes()
            })
            .collect();
        let t = TensorRef { storage: "0".into(), storage_type: "HalfStorage".into(), offset: 1, shape: vec![2, 3], stride: vec![1, 2] };
        assert_eq!(decode_tensor(&t, &halves, true).unwrap().values, vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        let bf: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes()).collect();
        let t = TensorRef { storage: "0".into(), storage_type: "BFloat16Storage".into(), offset: 0, shape: vec![2], stride: vec![1] };
        assert_eq!(decode_tensor(&t, &bf, true).unwrap().values, vec![1.5, -2.0]);
        let t = TensorRef { storage: "0".into(), storage_type: "FloatStorage".into(), offset: 0, shape: vec![3], stride: vec![1] };
        assert!(decode_tensor(&t, &[0u8; 8], true).unwrap_err().contains("beyond its storage"));
    }

    /// Checkpoint folders of earlier versions (`network.bpk`, `checkpoint.json`) still load; where a `.pth` of the
    /// same name exists (training writes only those now), the `.pth` is the checkpoint.
    #[test]
    fn folders_of_earlier_versions_still_load_and_the_pth_wins() {
        use crate::checkpoint::Stored;
        let dir = tmp("legacy");
        let folder = dir.join("checkpoint_final");
        std::fs::create_dir_all(&folder).unwrap();
        let old = net(3, false, 1);
        old.save_file(&folder.join("network.bpk")).unwrap();
        std::fs::write(folder.join("checkpoint.json"), serde_json::to_string(&meta()).unwrap()).unwrap();
        let stored = Stored::locate(&dir, "checkpoint_final.pth").unwrap();
        assert_eq!(stored, Stored::Folder(folder.clone()));
        let mut target = net(3, false, 2);
        let m = stored.load_network(target.as_mut()).unwrap();
        assert_eq!(target.named_parameters(), old.named_parameters());
        assert_eq!((m.current_epoch, m.rng), (7, meta().rng));

        let new = net(3, false, 3);
        write_nnunet_checkpoint(&dir.join("checkpoint_final.pth"), new.as_ref(), &meta(), &group(), None, &plans(3, false), &json!({}))
            .unwrap();
        let stored = Stored::locate(&dir, "checkpoint_final").unwrap();
        assert_eq!(stored, Stored::Pth(dir.join("checkpoint_final.pth")));
        stored.load_network(target.as_mut()).unwrap();
        assert_eq!(target.named_parameters(), new.named_parameters());
        std::fs::remove_dir_all(&dir).ok();
    }

    // ---- optimizer state -------------------------------------------------------------------------------------

    fn train_net(dims: usize, seed: u64) -> Box<dyn Network> {
        net_on(dims, false, seed, true)
    }

    fn optimizer_of(kind: OptimizerKind) -> ModuleOptimizer {
        match kind {
            OptimizerKind::Sgd => crate::optim::sgd(0.99, 3e-5),
            OptimizerKind::AdamW => crate::optim::adamw(3e-5, 1e-4),
        }
    }

    fn group_of(kind: OptimizerKind) -> OptimizerGroup {
        OptimizerGroup { kind, lr: 0.01, weight_decay: 3e-5, momentum: 0.99, eps: 1e-4 }
    }

    /// Optimizer steps `steps` (step k sees its own input) on a loss of the full-resolution output only: the
    /// lower-resolution segmentation heads get no gradient and keep no state, as `decoder.seg_layers.0` in nnU-Net.
    fn train(net: &mut dyn Network, optim: &mut ModuleOptimizer, kind: OptimizerKind, dims: usize, steps: std::ops::Range<usize>) {
        use burn::tensor::Tensor;
        let dev = Device::default().autodiff();
        let shape = if dims == 3 { [1, 1, 8, 8, 8] } else { [1, 1, 1, 16, 16] };
        let lr = if kind == OptimizerKind::Sgd { 0.1 } else { 0.01 };
        for k in steps {
            let n: usize = shape.iter().product();
            let x: Vec<f32> = (0..n).map(|i| ((0.37 * i as f64 + k as f64).sin() * (0.11 * i as f64).cos()) as f32).collect();
            let x = Tensor::<5>::from_data(TensorData::new(x, shape), &dev);
            let y = net.forward(x).remove(0);
            let loss = (y.sub_scalar(0.25).powi_scalar(2)).mean();
            net.step(optim, lr, loss, Some(12.0));
        }
    }

    fn max_diff(a: &dyn Network, b: &dyn Network) -> f32 {
        let (a, b) = (a.named_parameters(), b.named_parameters());
        a.iter().zip(&b).flat_map(|(p, q)| p.values.iter().zip(&q.values).map(|(x, y)| (x - y).abs())).fold(0.0, f32::max)
    }

    fn tensors(s: &ParamState) -> Vec<&PthTensor> {
        match s {
            ParamState::Sgd { momentum_buffer } => vec![momentum_buffer],
            ParamState::Adam { exp_avg, exp_avg_sq, .. } => vec![exp_avg, exp_avg_sq],
            ParamState::Other { .. } => vec![],
        }
    }

    /// Two steps, `.pth` written and read back: the file's buffers are burn's velocities (AdamW: moments and step),
    /// in PyTorch's shapes. Resumed from the file into a fresh network and optimizer, a third step gives the weights
    /// of the uninterrupted three-step run; restarting the optimizer instead (what `--c` from a `.pth` did before)
    /// does not.
    #[test]
    fn optimizer_state_survives_the_pth_and_resumes_exactly() {
        for kind in [OptimizerKind::Sgd, OptimizerKind::AdamW] {
            for dims in [3, 2] {
                let dir = tmp(&format!("opt{kind:?}{dims}"));
                let path = dir.join("checkpoint_latest.pth");
                let mut a = train_net(dims, 1);
                let mut oa = optimizer_of(kind);
                train(a.as_mut(), &mut oa, kind, dims, 0..2);
                let plans = plans(dims, false);
                write_nnunet_checkpoint(&path, a.as_ref(), &meta(), &group_of(kind), Some(&oa), &plans, &json!({})).unwrap();
                let c = read_nnunet_checkpoint(&path).unwrap();
                let ours = optimizer_state(a.as_ref(), &oa).unwrap();
                let n = a.parameter_ids().len();
                assert!(!ours.is_empty() && ours.len() < n, "{kind:?} {dims}D: {} of {n} parameters with state", ours.len());
                assert_eq!(c.optimizer_state.len(), ours.len(), "{kind:?} {dims}D");
                for (i, s) in &ours {
                    let f = &c.optimizer_state[i];
                    assert_eq!(std::mem::discriminant(s), std::mem::discriminant(f), "{kind:?} {dims}D parameter {i}");
                    if let (ParamState::Adam { step, .. }, ParamState::Adam { step: fs, .. }) = (s, f) {
                        assert_eq!((*step, *fs), (2.0, 2.0));
                    }
                    for (t, ft) in tensors(s).into_iter().zip(tensors(f)) {
                        assert_eq!(ft.values, t.values, "{kind:?} {dims}D parameter {i}");
                        let torch: Vec<usize> =
                            if dims == 2 && t.shape.len() == 5 { [&t.shape[..2], &t.shape[3..]].concat() } else { t.shape.clone() };
                        assert_eq!(ft.shape, torch, "{kind:?} {dims}D parameter {i}");
                    }
                }
                let mut b = train_net(dims, 2);
                load_state_dict(b.as_mut(), &c.weights).unwrap();
                let (mut ob, report) = load_optimizer_state(b.as_ref(), optimizer_of(kind), kind, &c.optimizer_state);
                assert_eq!(report, StateLoad { loaded: ours.len(), problems: vec![] }, "{kind:?} {dims}D");
                let mut cold = train_net(dims, 3);
                load_state_dict(cold.as_mut(), &c.weights).unwrap();
                let mut ocold = optimizer_of(kind);
                train(a.as_mut(), &mut oa, kind, dims, 2..3);
                train(b.as_mut(), &mut ob, kind, dims, 2..3);
                train(cold.as_mut(), &mut ocold, kind, dims, 2..3);
                let (resumed, restarted) = (max_diff(a.as_ref(), b.as_ref()), max_diff(a.as_ref(), cold.as_ref()));
                eprintln!(
                    "{kind:?} {dims}D: {} of {n} parameters with state; step 3 resumed from the .pth vs uninterrupted: max |Δw| {resumed:e}; with a restarted optimizer: {restarted:e}",
                    ours.len()
                );
                assert!(resumed <= 1e-6, "{kind:?} {dims}D: resumed run differs by {resumed}");
                assert!(restarted > 1e-4, "{kind:?} {dims}D: a restarted optimizer should differ, by {restarted}");
                std::fs::remove_dir_all(&dir).ok();
            }
        }
    }

    /// State that does not fit is not loaded and says why: another optimizer's, a wrong shape, an index the network
    /// does not have, a step count that is none; the rest loads. `resume` turns it into a `WARNING:` log line.
    #[test]
    fn unfitting_optimizer_state_restarts_with_the_reason() {
        let mut a = train_net(3, 1);
        let mut oa = optimizer_of(OptimizerKind::Sgd);
        train(a.as_mut(), &mut oa, OptimizerKind::Sgd, 3, 0..1);
        let state = optimizer_state(a.as_ref(), &oa).unwrap();
        let (_, r) = load_optimizer_state(a.as_ref(), optimizer_of(OptimizerKind::AdamW), OptimizerKind::AdamW, &state);
        assert_eq!((r.loaded, r.problems.len()), (0, state.len()));
        assert!(r.problems[0].contains("SGD's momentum_buffer, but this trainer's optimizer is AdamW"), "{:?}", r.problems);
        let mut bad = state.clone();
        let (&first, _) = bad.iter().next().unwrap();
        bad.insert(first, ParamState::Sgd { momentum_buffer: PthTensor { shape: vec![3], values: vec![0.0; 3] } });
        bad.insert(10_000, state[&first].clone());
        let (o, r) = load_optimizer_state(a.as_ref(), optimizer_of(OptimizerKind::Sgd), OptimizerKind::Sgd, &bad);
        assert_eq!(r.loaded, state.len() - 1);
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        assert!(r.problems[0].contains("momentum.velocity has shape [3], the parameter [4, 1, 3, 3, 3]"), "{:?}", r.problems);
        assert!(r.problems[1].contains("state of parameter 10000, but the network has"), "{:?}", r.problems);
        let back = optimizer_state(a.as_ref(), &o).unwrap();
        assert_eq!(back.len(), state.len() - 1);
        assert!(back.iter().all(|(i, s)| *i != first && state[i] == *s));
        let adam = OptimizerState::from([(
            first,
            ParamState::Adam {
                step: 1.5,
                exp_avg: PthTensor { shape: vec![], values: vec![] },
                exp_avg_sq: PthTensor { shape: vec![], values: vec![] },
            },
        )]);
        let (_, r) = load_optimizer_state(a.as_ref(), optimizer_of(OptimizerKind::AdamW), OptimizerKind::AdamW, &adam);
        assert!(r.loaded == 0 && r.problems[0].contains("step 1.5 is no step count"), "{:?}", r.problems);
        // through a file: resuming an AdamW trainer from an SGD checkpoint warns, the weights still load
        let dir = tmp("optbad");
        let path = dir.join("checkpoint_final.pth");
        write_nnunet_checkpoint(&path, a.as_ref(), &meta(), &group(), Some(&oa), &plans(3, false), &json!({})).unwrap();
        let mut b = train_net(3, 2);
        let (m, _, lines) = resume(&path, b.as_mut(), optimizer_of(OptimizerKind::AdamW), OptimizerKind::AdamW).unwrap();
        assert_eq!(m.current_epoch, 7);
        assert_eq!(max_diff(a.as_ref(), b.as_ref()), 0.0);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains(&format!("AdamW moments of 0 of {} parameters", a.parameter_ids().len())), "{lines:?}");
        assert!(
            lines[1].starts_with("WARNING: the optimizer state of") && lines[1].contains(&format!("({} in all)", state.len())),
            "{lines:?}"
        );
        let (_, _, lines) = resume(&path, b.as_mut(), optimizer_of(OptimizerKind::Sgd), OptimizerKind::Sgd).unwrap();
        assert_eq!(
            lines,
            vec![format!(
                "Optimizer state: SGD momentum buffers of {} of {} parameters loaded from checkpoint_final.pth",
                state.len(),
                a.parameter_ids().len()
            )]
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
