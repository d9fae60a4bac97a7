//! PyTorch checkpoints (`.pth`, `torch.save`'s zip format) in both directions, so that models move between this
//! framework and Python nnU-Net:
//!
//! * [`read`] decodes any zip-format `torch.save` file into a JSON value plus its tensors (as f32);
//!   [`read_nnunet_checkpoint`] reads what `nnUNetTrainer.save_checkpoint` writes (network weights, epoch, logging,
//!   best EMA, trainer name, init args, mirroring axes) and [`load_state_dict`] puts the weights into a network as
//!   PyTorch's strict `load_state_dict` would (every key accounted for, shapes equal).
//! * [`write_nnunet_checkpoint`] writes the same dictionary for one of our networks, with every state-dict key
//!   PyTorch's module has (aliases share one storage, as in PyTorch), so `torch.load` + nnU-Net's predictor or
//!   `--c` read it. The optimizer state holds the parameter group but no momentum buffers: Python nnU-Net resuming
//!   from such a file restarts SGD's momentum.
//!
//! Keys and layouts come from [`Network::torch_state_dict`]; 2D PyTorch weights `(o, i, k, k)` are our 3D-lifted
//! `(o, i, 1, k, k)` parameters.

use crate::checkpoint::{CheckpointMeta, TrainingLog};
use crate::pickle::{self, TensorRef};
use nnunet_core::Network;
use serde_json::Value;
use std::collections::HashMap;
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

/// Read a `torch.save` file (zip format; the legacy pre-1.6 format is not supported).
pub fn read(path: &Path) -> Result<PthFile, PthError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e.to_string()))?;
    if !bytes.starts_with(b"PK\x03\x04") {
        return Err(err(path, "not a zip-format PyTorch file (torch.save's legacy format, from PyTorch < 1.6, is not supported)"));
    }
    let entries = crate::ensemble::read_zip_entries(&bytes, path).map_err(|e| err(path, e.to_string()))?;
    drop(bytes);
    let pkl = entries.keys().find(|k| k.ends_with("/data.pkl") && k.matches('/').count() == 1).cloned();
    let Some(pkl) = pkl else { return Err(err(path, "no <archive>/data.pkl entry: not a torch.save file")) };
    let prefix = &pkl[..pkl.len() - "data.pkl".len()];
    let little = entries.get(&format!("{prefix}byteorder")).is_none_or(|b| b.as_slice() != b"big");
    let (root, refs) = pickle::from_bytes_with_tensors(&entries[&pkl]).map_err(|e| err(path, e.to_string()))?;
    let mut tensors = Vec::with_capacity(refs.len());
    for t in &refs {
        let key = format!("{prefix}data/{}", t.storage);
        let data = entries.get(&key).ok_or_else(|| err(path, format!("storage entry {key} is missing")))?;
        tensors.push(decode_tensor(t, data, little).map_err(|m| err(path, m))?);
    }
    Ok(PthFile { root, tensors })
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
        grad_scaler: None,
    };
    Ok(NnunetCheckpoint { weights, meta, plans, dataset_json })
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
// writing

/// A Python object to pickle.
enum Py {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Py>),
    Tuple(Vec<Py>),
    Dict(Vec<(String, Py)>),
    OrderedDict(Vec<(String, Py)>),
    /// A float32 tensor of storage `key`, with its shape (C-contiguous, offset 0).
    Tensor {
        storage: usize,
        numel: usize,
        shape: Vec<usize>,
    },
    Device(String),
}

impl Py {
    fn from_json(v: &Value) -> Py {
        match v {
            Value::Null => Py::None,
            Value::Bool(b) => Py::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Py::Int(i),
                None => Py::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Py::Str(s.clone()),
            Value::Array(a) => Py::List(a.iter().map(Py::from_json).collect()),
            Value::Object(m) => Py::Dict(m.iter().map(|(k, v)| (k.clone(), Py::from_json(v))).collect()),
        }
    }

    fn floats(v: &[f64]) -> Py {
        Py::List(v.iter().map(|&x| Py::Float(x)).collect())
    }
}

struct Pickler {
    out: Vec<u8>,
}

impl Pickler {
    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }
    fn str(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, i: i64) {
        if let Ok(small) = i32::try_from(i) {
            self.out.push(b'J');
            self.out.extend_from_slice(&small.to_le_bytes());
        } else {
            self.out.push(0x8a);
            self.out.push(8);
            self.out.extend_from_slice(&i.to_le_bytes());
        }
    }
    fn ints_tuple(&mut self, v: &[usize]) {
        self.out.push(b'(');
        v.iter().for_each(|&x| self.int(x as i64));
        self.out.push(b't');
    }
    fn items(&mut self, items: &[(String, Py)]) {
        if !items.is_empty() {
            self.out.push(b'(');
            for (k, v) in items {
                self.str(k);
                self.emit(v);
            }
            self.out.push(b'u');
        }
    }
    fn emit(&mut self, v: &Py) {
        match v {
            Py::None => self.out.push(b'N'),
            Py::Bool(b) => self.out.push(if *b { 0x88 } else { 0x89 }),
            Py::Int(i) => self.int(*i),
            Py::Float(f) => {
                self.out.push(b'G');
                self.out.extend_from_slice(&f.to_be_bytes());
            }
            Py::Str(s) => self.str(s),
            Py::List(a) => {
                self.out.push(b']');
                if !a.is_empty() {
                    self.out.push(b'(');
                    a.iter().for_each(|x| self.emit(x));
                    self.out.push(b'e');
                }
            }
            Py::Tuple(a) => {
                self.out.push(b'(');
                a.iter().for_each(|x| self.emit(x));
                self.out.push(b't');
            }
            Py::Dict(m) => {
                self.out.push(b'}');
                self.items(m);
            }
            Py::OrderedDict(m) => {
                self.global("collections", "OrderedDict");
                self.out.extend_from_slice(b")R");
                self.items(m);
            }
            Py::Tensor { storage, numel, shape } => {
                // torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())
                self.global("torch._utils", "_rebuild_tensor_v2");
                self.out.push(b'(');
                self.out.push(b'(');
                self.str("storage");
                self.global("torch", "FloatStorage");
                self.str(&storage.to_string());
                self.str("cpu");
                self.int(*numel as i64);
                self.out.extend_from_slice(b"tQ");
                self.int(0);
                self.ints_tuple(shape);
                let mut stride = vec![1usize; shape.len()];
                for d in (0..shape.len().saturating_sub(1)).rev() {
                    stride[d] = stride[d + 1] * shape[d + 1];
                }
                self.ints_tuple(&stride);
                self.out.push(0x89);
                self.global("collections", "OrderedDict");
                self.out.extend_from_slice(b")R");
                self.out.extend_from_slice(b"tR");
            }
            Py::Device(d) => {
                self.global("torch", "device");
                self.out.push(b'(');
                self.str(d);
                self.out.extend_from_slice(b"tR");
            }
        }
    }
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
/// `plans` and `dataset_json` become `init_args` (with `configuration`, `fold` and `device`).
pub fn write_nnunet_checkpoint(
    path: &Path,
    net: &dyn Network,
    meta: &CheckpointMeta,
    optimizer: &OptimizerGroup,
    plans: &Value,
    dataset_json: &Value,
) -> Result<(), PthError> {
    let params: HashMap<String, nnunet_core::NamedParam> = net.named_parameters().into_iter().map(|p| (p.path.clone(), p)).collect();
    // one storage per parameter, in the order the parameters first appear (= PyTorch's parameters() order)
    let mut storage_of: HashMap<String, usize> = HashMap::new();
    let mut storages: Vec<Vec<u8>> = Vec::new();
    let mut weights = Vec::new();
    let two_d = is_2d(plans, &meta.configuration);
    for k in net.torch_state_dict() {
        let p = params.get(&k.path).ok_or_else(|| err(path, format!("state-dict key {} names no parameter ({})", k.key, k.path)))?;
        let storage = *storage_of.entry(k.path.clone()).or_insert_with(|| {
            storages.push(p.values.iter().flat_map(|v| v.to_le_bytes()).collect());
            storages.len() - 1
        });
        // 2D networks: PyTorch's weights have no singleton depth axis
        let shape = if two_d && p.shape.len() == 5 && p.shape[2] == 1 { [&p.shape[..2], &p.shape[3..]].concat() } else { p.shape.clone() };
        weights.push((k.key, Py::Tensor { storage, numel: p.values.len(), shape }));
    }
    let n_params = storages.len();
    let mut group = match optimizer.kind {
        nnunet_core::OptimizerKind::Sgd => vec![
            ("lr".to_string(), Py::Float(optimizer.lr)),
            ("momentum".into(), Py::Float(optimizer.momentum)),
            ("dampening".into(), Py::Int(0)),
            ("weight_decay".into(), Py::Float(optimizer.weight_decay)),
            ("nesterov".into(), Py::Bool(true)),
            ("maximize".into(), Py::Bool(false)),
            ("foreach".into(), Py::None),
            ("differentiable".into(), Py::Bool(false)),
            ("fused".into(), Py::None),
        ],
        nnunet_core::OptimizerKind::AdamW => vec![
            ("lr".to_string(), Py::Float(optimizer.lr)),
            ("betas".into(), Py::Tuple(vec![Py::Float(0.9), Py::Float(0.999)])),
            ("eps".into(), Py::Float(optimizer.eps)),
            ("weight_decay".into(), Py::Float(optimizer.weight_decay)),
            ("amsgrad".into(), Py::Bool(false)),
            ("foreach".into(), Py::None),
            ("maximize".into(), Py::Bool(false)),
            ("capturable".into(), Py::Bool(false)),
            ("differentiable".into(), Py::Bool(false)),
            ("fused".into(), Py::None),
        ],
    };
    group.push(("params".into(), Py::List((0..n_params as i64).map(Py::Int).collect())));
    let l = &meta.logging;
    let logging = Py::Dict(vec![
        ("mean_fg_dice".into(), Py::floats(&l.mean_fg_dice)),
        ("ema_fg_dice".into(), Py::floats(&l.ema_fg_dice)),
        ("dice_per_class_or_region".into(), Py::List(l.dice_per_class_or_region.iter().map(|v| Py::floats(v)).collect())),
        ("train_losses".into(), Py::floats(&l.train_losses)),
        ("val_losses".into(), Py::floats(&l.val_losses)),
        ("lrs".into(), Py::floats(&l.lrs)),
        ("epoch_start_timestamps".into(), Py::floats(&l.epoch_start_timestamps)),
        ("epoch_end_timestamps".into(), Py::floats(&l.epoch_end_timestamps)),
    ]);
    let fold = meta.fold.parse::<i64>().map(Py::Int).unwrap_or_else(|_| Py::Str(meta.fold.clone()));
    let mut root = vec![
        ("network_weights".into(), Py::OrderedDict(weights)),
        (
            "optimizer_state".into(),
            Py::Dict(vec![("state".into(), Py::Dict(Vec::new())), ("param_groups".into(), Py::List(vec![Py::Dict(group)]))]),
        ),
        ("grad_scaler_state".into(), Py::None),
        ("logging".into(), logging),
        ("_best_ema".into(), meta.best_ema.map(Py::Float).unwrap_or(Py::None)),
        ("current_epoch".into(), Py::Int(meta.current_epoch as i64)),
        (
            "init_args".into(),
            Py::Dict(vec![
                ("plans".into(), Py::from_json(plans)),
                ("configuration".into(), Py::Str(meta.configuration.clone())),
                ("fold".into(), fold),
                ("dataset_json".into(), Py::from_json(dataset_json)),
                ("device".into(), Py::Device("cuda".into())),
            ]),
        ),
        ("trainer_name".into(), Py::Str(meta.trainer_name.clone())),
        (
            "inference_allowed_mirroring_axes".into(),
            match &meta.inference_allowed_mirroring_axes {
                Some(a) => Py::Tuple(a.iter().map(|&x| Py::Int(x as i64)).collect()),
                None => Py::None,
            },
        ),
    ];
    let mut ours = vec![("deep_supervision".to_string(), meta.deep_supervision.map(Py::Bool).unwrap_or(Py::None))];
    if let Some(r) = meta.rng {
        ours.push((
            "rng".into(),
            Py::Dict(vec![
                ("seed".into(), Py::Int(r.seed as i64)),
                ("next_train_batch".into(), Py::Int(r.next_train_batch as i64)),
                ("next_val_batch".into(), Py::Int(r.next_val_batch as i64)),
            ]),
        ));
    }
    root.push((OUR_KEY.into(), Py::Dict(ours)));
    let root = Py::Dict(root);
    let mut p = Pickler { out: vec![0x80, 2] };
    p.emit(&root);
    p.out.push(b'.');

    let archive = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "archive".into());
    let mut entries: Vec<(String, Vec<u8>)> = vec![
        (format!("{archive}/data.pkl"), p.out),
        (format!("{archive}/.format_version"), b"1".to_vec()),
        (format!("{archive}/.storage_alignment"), b"64".to_vec()),
        (format!("{archive}/byteorder"), b"little".to_vec()),
    ];
    let mut hash = flate2::Crc::new();
    for (i, s) in storages.into_iter().enumerate() {
        hash.update(&s);
        entries.push((format!("{archive}/data/{i}"), s));
    }
    entries.push((format!("{archive}/version"), b"3\n".to_vec()));
    entries.push((format!("{archive}/.data/serialization_id"), format!("{:040}", hash.sum()).into_bytes()));
    let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    let zip = crate::inference::zip_bytes(&refs, Some(64)).map_err(|e| err(path, e.to_string()))?;
    nnunet_schema::json::write_atomic(path, &zip).map_err(|e| err(path, e.to_string()))
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

    fn net(dims: usize, resenc: bool, seed: u64) -> Box<dyn Network> {
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
        (arch.make)().build(&spec, &dev).unwrap()
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
            write_nnunet_checkpoint(&path, source.as_ref(), &meta(), &group(), &plans(dims, resenc), &json!({"labels": {}})).unwrap();
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
            let want = meta();
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
        write_nnunet_checkpoint(&path, net(3, false, 1).as_ref(), &meta(), &group(), &plans(3, false), &json!({})).unwrap();
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
}
