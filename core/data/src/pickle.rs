//! A minimal reader of Python pickles (protocols 0–5) for the properties files nnU-Net writes next to its
//! probability files (`<case>.pkl`, `save_pickle(properties_dict, ...)`), turned into JSON values.
//!
//! What is understood:
//! * the plain Python values: `None`, bools, ints (up to 64 bit), floats, str, bytes, lists, tuples (→ arrays),
//!   dicts (keys as Python's `str()`: `1` → `"1"`, `(1, 2)` → `"(1, 2)"`), sets;
//! * numpy scalars (`numpy.core.multiarray.scalar` / `numpy._core.multiarray.scalar` of a `numpy.dtype`), e.g. the
//!   `np.float64` spacing values SimpleITKIO returns;
//! * numpy arrays (`numpy.core.multiarray._reconstruct` + `BUILD`) of bool/int/uint/float dtypes in C or Fortran
//!   order, as nested arrays (e.g. `class_locations`, NibabelIO's `original_affine`);
//! * `collections.OrderedDict` as a dict.
//!
//! * PyTorch's `torch.save` (zip format, `data.pkl`): storages (persistent ids `('storage', torch.XStorage, key,
//!   location, numel)`) and tensors (`torch._utils._rebuild_tensor_v2`, parameters via `_rebuild_parameter`) become
//!   `{"__tensor__": i}` with the i-th [`TensorRef`] returned by [`from_bytes_with_tensors`]; `torch.device('cuda')`
//!   becomes the string `"cuda"`; protocol 2's `_codecs.encode(text, 'latin1')` (bytes, e.g. of numpy scalars) is
//!   understood.
//!
//! Any other object (a call of another global, `NEWOBJ`) becomes JSON `null`; the reader never imports or runs
//! anything. Both what `nnunet_engine::inference::pickle_json` writes and what Python's `pickle.dump` writes for nnU-Net's
//! properties dicts are read.

use serde_json::{Map, Number, Value};
use std::cell::RefCell;
use std::rc::Rc;

/// Why a pickle could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    /// Truncated data, an unknown opcode or a malformed stack.
    #[error("not a readable pickle: {0}")]
    Malformed(String),
}

fn bad<T>(m: impl Into<String>) -> Result<T, PickleError> {
    Err(PickleError::Malformed(m.into()))
}

/// A numpy dtype: kind (`b`, `i`, `u`, `f`), item size, little endian.
#[derive(Debug, Clone, PartialEq)]
struct Dtype {
    kind: char,
    size: usize,
    little: bool,
}

impl Dtype {
    fn parse(s: &str) -> Option<Dtype> {
        let (little, rest) = match s.as_bytes().first()? {
            b'<' | b'=' | b'|' => (true, &s[1..]),
            b'>' => (false, &s[1..]),
            _ => (true, s),
        };
        let named = match rest {
            "bool" => Some(('b', 1)),
            "float16" => Some(('f', 2)),
            "float32" => Some(('f', 4)),
            "float64" => Some(('f', 8)),
            "int8" => Some(('i', 1)),
            "int16" => Some(('i', 2)),
            "int32" => Some(('i', 4)),
            "int64" => Some(('i', 8)),
            "uint8" => Some(('u', 1)),
            "uint16" => Some(('u', 2)),
            "uint32" => Some(('u', 4)),
            "uint64" => Some(('u', 8)),
            _ => None,
        };
        let (kind, size) = match named {
            Some(n) => n,
            None => {
                let kind = rest.chars().next()?;
                let size = if rest.len() > 1 { rest[1..].parse().ok()? } else { 1 };
                (kind, size)
            }
        };
        matches!((kind, size), ('b', 1) | ('i' | 'u', 1 | 2 | 4 | 8) | ('f', 2 | 4 | 8)).then_some(Dtype { kind, size, little })
    }

    /// The element at `b` (exactly `size` bytes) as a JSON number/bool.
    fn decode(&self, b: &[u8]) -> Value {
        let mut a = [0u8; 8];
        a[..self.size].copy_from_slice(&b[..self.size]);
        if !self.little {
            a[..self.size].reverse();
        }
        match (self.kind, self.size) {
            ('b', _) => Value::Bool(a[0] != 0),
            ('i', n) => {
                let shift = 64 - 8 * n as u32;
                Value::from(((i64::from_le_bytes(a)) << shift) >> shift)
            }
            ('u', _) => Value::from(u64::from_le_bytes(a)),
            ('f', 2) => float(f16_to_f64(u16::from_le_bytes([a[0], a[1]]))),
            ('f', 4) => float(f32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64),
            _ => float(f64::from_le_bytes(a)),
        }
    }
}

/// An IEEE half-precision bit pattern as f64 (numpy float16 scalars, PyTorch `HalfStorage`).
pub fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 => {
            if frac == 0.0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        }
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// A float as JSON (non-finite values have no JSON number: `null`).
fn float(x: f64) -> Value {
    Number::from_f64(x).map(Value::Number).unwrap_or(Value::Null)
}

type Shared<T> = Rc<RefCell<T>>;

/// One object on the unpickler's stack.
#[derive(Debug, Clone)]
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Shared<Vec<Obj>>),
    Tuple(Vec<Obj>),
    Dict(Shared<Vec<(Obj, Obj)>>),
    Global(String, String),
    Dtype(Shared<Dtype>),
    /// An ndarray waiting for its `BUILD` state; the decoded nested array once built.
    Array(Shared<Option<Value>>),
    /// A PyTorch storage (persistent id): storage class name (`FloatStorage`) and its key in the archive.
    Storage(String, String),
    /// The i-th tensor of [`from_bytes_with_tensors`].
    Tensor(usize),
    /// Anything else: read as `null`.
    Opaque,
    Mark,
}

impl Obj {
    fn list(v: Vec<Obj>) -> Obj {
        Obj::List(Rc::new(RefCell::new(v)))
    }

    /// Python's `str()` of a dict key.
    fn key(&self) -> String {
        match self {
            Obj::Str(s) => s.clone(),
            Obj::Int(i) => i.to_string(),
            Obj::Bool(b) => if *b { "True" } else { "False" }.into(),
            Obj::None => "None".into(),
            Obj::Float(f) => python_str_float(*f),
            Obj::Tuple(t) => {
                let parts: Vec<String> = t.iter().map(Obj::repr).collect();
                if parts.len() == 1 { format!("({},)", parts[0]) } else { format!("({})", parts.join(", ")) }
            }
            other => format!("{:?}", other.to_json()),
        }
    }

    fn repr(&self) -> String {
        match self {
            Obj::Str(s) => format!("'{s}'"),
            other => other.key(),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Obj::None | Obj::Opaque | Obj::Mark | Obj::Global(..) | Obj::Dtype(_) | Obj::Storage(..) => Value::Null,
            Obj::Tensor(i) => serde_json::json!({ "__tensor__": i }),
            Obj::Bool(b) => Value::Bool(*b),
            Obj::Int(i) => Value::from(*i),
            Obj::Float(f) => float(*f),
            Obj::Str(s) => Value::String(s.clone()),
            Obj::Bytes(b) => Value::Array(b.iter().map(|&x| Value::from(x)).collect()),
            Obj::List(l) => Value::Array(l.borrow().iter().map(Obj::to_json).collect()),
            Obj::Tuple(t) => Value::Array(t.iter().map(Obj::to_json).collect()),
            Obj::Dict(d) => {
                let mut m = Map::new();
                for (k, v) in d.borrow().iter() {
                    m.insert(k.key(), v.to_json());
                }
                Value::Object(m)
            }
            Obj::Array(a) => a.borrow().clone().unwrap_or(Value::Null),
        }
    }
}

fn python_str_float(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        nnunet_schema::json::python_float_repr(f)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        if self.pos + n > self.b.len() {
            return bad(format!("truncated at byte {}", self.pos));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<usize, PickleError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]) as usize)
    }
    fn u32(&mut self) -> Result<usize, PickleError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
    }
    fn u64(&mut self) -> Result<usize, PickleError> {
        let s = self.take(8)?;
        usize::try_from(u64::from_le_bytes(s.try_into().expect("8 bytes"))).or_else(|_| bad("length too large"))
    }
    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.b[self.pos..];
        let Some(n) = rest.iter().position(|&c| c == b'\n') else { return bad("unterminated text line") };
        self.pos += n + 1;
        std::str::from_utf8(&rest[..n]).or_else(|_| bad("text line is not UTF-8"))
    }
    fn utf8(&mut self, n: usize) -> Result<String, PickleError> {
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).or_else(|_| bad("string is not UTF-8"))
    }
}

fn long_le(bytes: &[u8]) -> Result<Obj, PickleError> {
    if bytes.is_empty() {
        return Ok(Obj::Int(0));
    }
    if bytes.len() > 8 {
        return bad("integer wider than 64 bit");
    }
    let mut a = if bytes[bytes.len() - 1] & 0x80 != 0 { [0xffu8; 8] } else { [0u8; 8] };
    a[..bytes.len()].copy_from_slice(bytes);
    Ok(Obj::Int(i64::from_le_bytes(a)))
}

fn parse_text_int(s: &str) -> Result<Obj, PickleError> {
    let s = s.trim_end_matches('L');
    match s {
        "00" => Ok(Obj::Bool(false)),
        "01" => Ok(Obj::Bool(true)),
        _ => s.parse().map(Obj::Int).or_else(|_| bad(format!("integer '{s}'"))),
    }
}

fn unquote(s: &str) -> String {
    let t = s.trim();
    let inner = if t.len() >= 2 && (t.starts_with('\'') && t.ends_with('\'') || t.starts_with('"') && t.ends_with('"')) {
        &t[1..t.len() - 1]
    } else {
        t
    };
    inner.to_string()
}

/// A tensor of a `torch.save` pickle: where its elements are (`data/<storage>` in the archive, of element type
/// `storage_type`, e.g. `FloatStorage`) and how they are laid out (offset and strides in elements).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: String,
    pub storage_type: String,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

struct Machine {
    stack: Vec<Obj>,
    memo: std::collections::HashMap<usize, Obj>,
    tensors: Vec<TensorRef>,
}

impl Machine {
    fn pop(&mut self) -> Result<Obj, PickleError> {
        match self.stack.pop() {
            Some(Obj::Mark) | None => bad("stack underflow"),
            Some(o) => Ok(o),
        }
    }
    fn top(&mut self) -> Result<&mut Obj, PickleError> {
        match self.stack.last_mut() {
            Some(Obj::Mark) | None => bad("stack underflow"),
            Some(o) => Ok(o),
        }
    }
    fn pop_mark(&mut self) -> Result<Vec<Obj>, PickleError> {
        let Some(i) = self.stack.iter().rposition(|o| matches!(o, Obj::Mark)) else { return bad("MARK missing") };
        let items = self.stack.split_off(i + 1);
        self.stack.pop();
        Ok(items)
    }
    fn append(&mut self, items: Vec<Obj>) -> Result<(), PickleError> {
        match self.top()? {
            Obj::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            // set.update / unknown containers: contents are not needed
            Obj::Opaque => Ok(()),
            _ => bad("APPEND to a non-list"),
        }
    }
    fn set_items(&mut self, items: Vec<Obj>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return bad("odd number of items for SETITEMS");
        }
        match self.top()? {
            Obj::Dict(d) => {
                let mut d = d.borrow_mut();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    let key = k.key();
                    if let Some(slot) = d.iter_mut().find(|(k2, _)| k2.key() == key) {
                        slot.1 = v;
                    } else {
                        d.push((k, v));
                    }
                }
                Ok(())
            }
            Obj::Opaque => Ok(()),
            _ => bad("SETITEM on a non-dict"),
        }
    }

    fn reduce(&mut self, callable: Obj, args: Obj) -> Result<Obj, PickleError> {
        let Obj::Global(module, name) = callable else { return Ok(Obj::Opaque) };
        let args = match args {
            Obj::Tuple(t) => t,
            _ => return Ok(Obj::Opaque),
        };
        let numpy_core = module.starts_with("numpy") && module.ends_with("multiarray");
        Ok(match (module.as_str(), name.as_str()) {
            ("torch._utils", "_rebuild_tensor_v2") => match (args.first(), args.get(1), args.get(2), args.get(3)) {
                (Some(Obj::Storage(storage_type, storage)), Some(Obj::Int(offset)), Some(shape), Some(stride)) => {
                    let offset = usize::try_from(*offset).or_else(|_| bad("negative tensor offset"))?;
                    let (shape, stride) = (shape_of(shape)?, shape_of(stride)?);
                    if shape.len() != stride.len() {
                        return bad("tensor shape and stride differ in length");
                    }
                    self.tensors.push(TensorRef { storage: storage.clone(), storage_type: storage_type.clone(), offset, shape, stride });
                    Obj::Tensor(self.tensors.len() - 1)
                }
                _ => return bad("_rebuild_tensor_v2 without (storage, offset, size, stride)"),
            },
            // protocol 2 has no bytes opcode: numpy scalars' raw bytes come as `_codecs.encode(text, 'latin1')`
            ("_codecs", "encode") => match args.as_slice() {
                [Obj::Str(text), Obj::Str(enc)] if enc == "latin1" || enc == "latin-1" => {
                    match text.chars().map(|c| u8::try_from(c as u32)).collect::<Result<Vec<u8>, _>>() {
                        Ok(b) => Obj::Bytes(b),
                        Err(_) => return bad("_codecs.encode: text outside latin-1"),
                    }
                }
                _ => Obj::Opaque,
            },
            ("torch._utils", "_rebuild_parameter") => args.into_iter().next().unwrap_or(Obj::Opaque),
            ("torch", "device") => match args.as_slice() {
                [Obj::Str(kind)] => Obj::Str(kind.clone()),
                [Obj::Str(kind), Obj::Int(i)] => Obj::Str(format!("{kind}:{i}")),
                _ => Obj::Opaque,
            },
            ("numpy", "dtype") => match args.first() {
                Some(Obj::Str(s)) => match Dtype::parse(s) {
                    Some(d) => Obj::Dtype(Rc::new(RefCell::new(d))),
                    None => Obj::Opaque,
                },
                _ => Obj::Opaque,
            },
            (_, "scalar") if numpy_core => match (args.first(), args.get(1)) {
                (Some(Obj::Dtype(d)), Some(Obj::Bytes(b))) => {
                    let d = d.borrow();
                    if b.len() < d.size {
                        return bad("numpy scalar with too few bytes");
                    }
                    match d.decode(b) {
                        Value::Bool(x) => Obj::Bool(x),
                        Value::Number(n) => match n.as_i64() {
                            Some(i) => Obj::Int(i),
                            None => Obj::Float(n.as_f64().unwrap_or(f64::NAN)),
                        },
                        _ => Obj::Float(f64::NAN),
                    }
                }
                _ => Obj::Opaque,
            },
            (_, "_reconstruct") if numpy_core => Obj::Array(Rc::new(RefCell::new(None))),
            // protocol 5: numpy._core.numeric._frombuffer(buffer, dtype, shape, order)
            (m, "_frombuffer") if m.starts_with("numpy") => match (args.first(), args.get(1), args.get(2), args.get(3)) {
                (Some(Obj::Bytes(b)), Some(Obj::Dtype(d)), Some(shape), order) => {
                    let fortran = matches!(order, Some(Obj::Str(o)) if o == "F");
                    let d = d.borrow().clone();
                    Obj::Array(Rc::new(RefCell::new(Some(array_value(&shape_of(shape)?, &d, fortran, b)?))))
                }
                _ => Obj::Opaque,
            },
            ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict") => Obj::Dict(Rc::new(RefCell::new(Vec::new()))),
            ("builtins", "set") | ("builtins", "frozenset") | ("__builtin__", "set") => match args.into_iter().next() {
                Some(Obj::List(l)) => Obj::List(l),
                _ => Obj::list(Vec::new()),
            },
            _ => Obj::Opaque,
        })
    }

    fn build(&mut self, state: Obj) -> Result<(), PickleError> {
        match self.top()? {
            Obj::Dtype(d) => {
                // numpy.dtype.__setstate__: (version, byteorder, ...)
                if let Obj::Tuple(t) = &state
                    && let Some(Obj::Str(order)) = t.get(1)
                {
                    d.borrow_mut().little = order != ">";
                }
                Ok(())
            }
            Obj::Array(a) => {
                let a = a.clone();
                *a.borrow_mut() = Some(decode_array(&state)?);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn shape_of(shape: &Obj) -> Result<Vec<usize>, PickleError> {
    match shape {
        Obj::Tuple(s) => s
            .iter()
            .map(|x| match x {
                Obj::Int(i) if *i >= 0 => Ok(*i as usize),
                _ => bad("ndarray shape is not a tuple of ints"),
            })
            .collect(),
        _ => bad("ndarray shape is not a tuple"),
    }
}

/// ndarray.__setstate__((version, shape, dtype, is_fortran, data)) → nested JSON arrays.
fn decode_array(state: &Obj) -> Result<Value, PickleError> {
    let Obj::Tuple(t) = state else { return bad("ndarray state is not a tuple") };
    let (shape, dtype, fortran, data) = match t.len() {
        5 => (&t[1], &t[2], &t[3], &t[4]),
        4 => (&t[0], &t[1], &t[2], &t[3]),
        _ => return bad("ndarray state of unexpected length"),
    };
    let shape = shape_of(shape)?;
    let Obj::Dtype(dtype) = dtype else { return Ok(Value::Null) };
    let dtype = dtype.borrow().clone();
    let fortran = matches!(fortran, Obj::Bool(true) | Obj::Int(1));
    match data {
        Obj::Bytes(b) => array_value(&shape, &dtype, fortran, b),
        _ => Ok(Value::Null),
    }
}

/// The elements of an array of `shape` stored in `bytes` as nested JSON arrays.
fn array_value(shape: &[usize], dtype: &Dtype, fortran: bool, bytes: &[u8]) -> Result<Value, PickleError> {
    let n: usize = shape.iter().product();
    if bytes.len() < n * dtype.size {
        return bad("ndarray data shorter than its shape");
    }
    if n == 0 {
        fn empty(shape: &[usize]) -> Value {
            match shape.split_first() {
                None => Value::Null,
                Some((&len, rest)) => Value::Array((0..len).map(|_| empty(rest)).collect()),
            }
        }
        return Ok(empty(shape));
    }
    let flat: Vec<Value> = bytes.chunks_exact(dtype.size).take(n).map(|c| dtype.decode(c)).collect();
    // C order: last axis fastest; Fortran order: first axis fastest
    fn nest(flat: &[Value], shape: &[usize], strides: &[usize], offset: usize) -> Value {
        match shape.split_first() {
            None => flat[offset].clone(),
            Some((&len, rest)) => Value::Array((0..len).map(|i| nest(flat, rest, &strides[1..], offset + i * strides[0])).collect()),
        }
    }
    let mut strides = vec![1usize; shape.len()];
    if fortran {
        for d in 1..shape.len() {
            strides[d] = strides[d - 1] * shape[d - 1];
        }
    } else {
        for d in (0..shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * shape[d + 1];
        }
    }
    Ok(nest(&flat, shape, &strides, 0))
}

/// Read a pickle into a JSON value (see the module documentation for what is understood).
pub fn from_bytes(bytes: &[u8]) -> Result<Value, PickleError> {
    from_bytes_with_tensors(bytes).map(|(v, _)| v)
}

/// Read a pickle into a JSON value and the PyTorch tensors it references (`{"__tensor__": i}` in the value).
pub fn from_bytes_with_tensors(bytes: &[u8]) -> Result<(Value, Vec<TensorRef>), PickleError> {
    let mut r = Reader { b: bytes, pos: 0 };
    let mut m = Machine { stack: Vec::new(), memo: std::collections::HashMap::new(), tensors: Vec::new() };
    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?; // PROTO
            }
            0x95 => {
                r.u64()?; // FRAME
            }
            b'.' => {
                let top = m.pop()?;
                return Ok((top.to_json(), m.tensors));
            }
            b'Q' => {
                // BINPERSID: torch.save's storages
                let pid = m.pop()?;
                let storage = match &pid {
                    Obj::Tuple(t) => match t.as_slice() {
                        [Obj::Str(kind), Obj::Global(_, class), Obj::Str(key), ..] if kind == "storage" => {
                            Some(Obj::Storage(class.clone(), key.clone()))
                        }
                        _ => None,
                    },
                    _ => None,
                };
                match storage {
                    Some(s) => m.stack.push(s),
                    None => return bad("persistent id that is not a PyTorch storage"),
                }
            }
            b'(' => m.stack.push(Obj::Mark),
            b'N' => m.stack.push(Obj::None),
            0x88 => m.stack.push(Obj::Bool(true)),
            0x89 => m.stack.push(Obj::Bool(false)),
            b'J' => {
                let s = r.take(4)?;
                m.stack.push(Obj::Int(i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as i64));
            }
            b'K' => {
                let v = r.u8()?;
                m.stack.push(Obj::Int(v as i64));
            }
            b'M' => {
                let v = r.u16()?;
                m.stack.push(Obj::Int(v as i64));
            }
            0x8a => {
                let n = r.u8()? as usize;
                let s = r.take(n)?;
                m.stack.push(long_le(s)?);
            }
            0x8b => {
                let n = r.u32()?;
                let s = r.take(n)?;
                m.stack.push(long_le(s)?);
            }
            b'I' | b'L' => {
                let s = r.line()?;
                m.stack.push(parse_text_int(s)?);
            }
            b'G' => {
                let s = r.take(8)?;
                m.stack.push(Obj::Float(f64::from_be_bytes(s.try_into().expect("8 bytes"))));
            }
            b'F' => {
                let s = r.line()?;
                m.stack.push(Obj::Float(s.trim().parse().or_else(|_| bad(format!("float '{s}'")))?));
            }
            0x8c => {
                let n = r.u8()? as usize;
                let s = r.utf8(n)?;
                m.stack.push(Obj::Str(s));
            }
            b'X' => {
                let n = r.u32()?;
                let s = r.utf8(n)?;
                m.stack.push(Obj::Str(s));
            }
            0x8d => {
                let n = r.u64()?;
                let s = r.utf8(n)?;
                m.stack.push(Obj::Str(s));
            }
            b'V' => {
                let s = r.line()?;
                m.stack.push(Obj::Str(s.to_string()));
            }
            b'S' => {
                let s = r.line()?;
                m.stack.push(Obj::Str(unquote(s)));
            }
            b'U' => {
                // SHORT_BINSTRING (Python 2 str): kept as text (latin-1)
                let n = r.u8()? as usize;
                let s = r.take(n)?;
                m.stack.push(Obj::Str(s.iter().map(|&c| c as char).collect()));
            }
            b'T' => {
                let n = r.u32()?;
                let s = r.take(n)?;
                m.stack.push(Obj::Str(s.iter().map(|&c| c as char).collect()));
            }
            b'C' => {
                let n = r.u8()? as usize;
                m.stack.push(Obj::Bytes(r.take(n)?.to_vec()));
            }
            b'B' => {
                let n = r.u32()?;
                m.stack.push(Obj::Bytes(r.take(n)?.to_vec()));
            }
            0x8e | 0x96 => {
                let n = r.u64()?;
                m.stack.push(Obj::Bytes(r.take(n)?.to_vec()));
            }
            b']' => m.stack.push(Obj::list(Vec::new())),
            b')' => m.stack.push(Obj::Tuple(Vec::new())),
            b'}' => m.stack.push(Obj::Dict(Rc::new(RefCell::new(Vec::new())))),
            0x8f => m.stack.push(Obj::list(Vec::new())), // EMPTY_SET, read as a list
            b'l' => {
                let items = m.pop_mark()?;
                m.stack.push(Obj::list(items));
            }
            b't' => {
                let items = m.pop_mark()?;
                m.stack.push(Obj::Tuple(items));
            }
            0x91 => {
                let items = m.pop_mark()?; // FROZENSET
                m.stack.push(Obj::list(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if m.stack.len() < n || m.stack[m.stack.len() - n..].iter().any(|o| matches!(o, Obj::Mark)) {
                    return bad("stack underflow in TUPLEn");
                }
                let items = m.stack.split_off(m.stack.len() - n);
                m.stack.push(Obj::Tuple(items));
            }
            b'd' => {
                let items = m.pop_mark()?;
                m.stack.push(Obj::Dict(Rc::new(RefCell::new(Vec::new()))));
                m.set_items(items)?;
            }
            b'a' => {
                let v = m.pop()?;
                m.append(vec![v])?;
            }
            b'e' | 0x90 => {
                let items = m.pop_mark()?; // APPENDS, ADDITEMS
                m.append(items)?;
            }
            b's' => {
                let v = m.pop()?;
                let k = m.pop()?;
                m.set_items(vec![k, v])?;
            }
            b'u' => {
                let items = m.pop_mark()?;
                m.set_items(items)?;
            }
            b'0' => {
                m.stack.pop();
            }
            b'1' => {
                m.pop_mark()?;
            }
            b'2' => {
                let t = m.top()?.clone();
                m.stack.push(t);
            }
            0x94 => {
                let t = m.top()?.clone();
                let i = m.memo.len();
                m.memo.insert(i, t);
            }
            b'q' | b'r' | b'p' => {
                let i = match op {
                    b'q' => r.u8()? as usize,
                    b'r' => r.u32()?,
                    _ => r.line()?.trim().parse().or_else(|_| bad("PUT index"))?,
                };
                let t = m.top()?.clone();
                m.memo.insert(i, t);
            }
            b'h' | b'j' | b'g' => {
                let i = match op {
                    b'h' => r.u8()? as usize,
                    b'j' => r.u32()?,
                    _ => r.line()?.trim().parse().or_else(|_| bad("GET index"))?,
                };
                let Some(o) = m.memo.get(&i) else { return bad(format!("memo entry {i} missing")) };
                m.stack.push(o.clone());
            }
            b'c' => {
                let module = r.line()?.to_string();
                let name = r.line()?.to_string();
                m.stack.push(Obj::Global(module, name));
            }
            0x93 => {
                let name = m.pop()?;
                let module = m.pop()?;
                match (module, name) {
                    (Obj::Str(module), Obj::Str(name)) => m.stack.push(Obj::Global(module, name)),
                    _ => return bad("STACK_GLOBAL of non-strings"),
                }
            }
            b'R' => {
                let args = m.pop()?;
                let callable = m.pop()?;
                let o = m.reduce(callable, args)?;
                m.stack.push(o);
            }
            0x81 => {
                let args = m.pop()?; // NEWOBJ cls args
                let cls = m.pop()?;
                let o = m.reduce(cls, args)?;
                m.stack.push(o);
            }
            0x92 => {
                m.pop()?; // NEWOBJ_EX cls args kwargs
                m.pop()?;
                m.pop()?;
                m.stack.push(Obj::Opaque);
            }
            b'b' => {
                let state = m.pop()?;
                m.build(state)?;
            }
            other => return bad(format!("unsupported opcode 0x{other:02x} at byte {}", r.pos - 1)),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// writing

/// A Python value to pickle ([`to_bytes`]): what nnU-Net's properties dicts hold.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<PyValue>),
    Tuple(Vec<PyValue>),
    /// Keys in insertion order (Python dicts keep it).
    Dict(Vec<(PyValue, PyValue)>),
    /// A C-order numpy `int64` array.
    Int64Array { shape: Vec<usize>, data: Vec<i64> },
    /// A C-order numpy `float64` array.
    Float64Array { shape: Vec<usize>, data: Vec<f64> },
    /// `collections.OrderedDict` with these items.
    OrderedDict(Vec<(PyValue, PyValue)>),
    /// A module attribute itself (`GLOBAL`), e.g. `torch.FloatStorage`.
    Global { module: String, name: String },
    /// `module.name(*args)` (`GLOBAL`, the arguments' tuple, `REDUCE`), e.g. `torch.device('cuda')`.
    Call { module: String, name: String, args: Vec<PyValue> },
    /// A persistent id (`BINPERSID`): what `torch.save` refers to its storages with.
    PersistentId(Box<PyValue>),
}

impl PyValue {
    /// A JSON value as Python would hold it after `json.load`: objects → dicts with str keys, arrays → lists.
    pub fn from_json(v: &Value) -> PyValue {
        match v {
            Value::Null => PyValue::None,
            Value::Bool(b) => PyValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => PyValue::Int(i),
                None => PyValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => PyValue::Str(s.clone()),
            Value::Array(a) => PyValue::List(a.iter().map(PyValue::from_json).collect()),
            Value::Object(m) => PyValue::Dict(m.iter().map(|(k, x)| (PyValue::Str(k.clone()), PyValue::from_json(x))).collect()),
        }
    }

    /// A dict with str keys.
    pub fn str_dict(items: Vec<(String, PyValue)>) -> PyValue {
        PyValue::Dict(items.into_iter().map(|(k, v)| (PyValue::Str(k), v)).collect())
    }

    /// `module.name(*args)`.
    pub fn call(module: &str, name: &str, args: Vec<PyValue>) -> PyValue {
        PyValue::Call { module: module.to_string(), name: name.to_string(), args }
    }

    /// A list of floats.
    pub fn float_list(v: &[f64]) -> PyValue {
        PyValue::List(v.iter().map(|&x| PyValue::Float(x)).collect())
    }

    /// A tuple of floats.
    pub fn float_tuple(v: &[f64]) -> PyValue {
        PyValue::Tuple(v.iter().map(|&x| PyValue::Float(x)).collect())
    }

    /// A tuple of ints.
    pub fn int_tuple(v: &[usize]) -> PyValue {
        PyValue::Tuple(v.iter().map(|&x| PyValue::Int(x as i64)).collect())
    }
}

/// Pickle `v` (protocol 3, readable by every Python 3). numpy arrays are written as numpy's own `__reduce__` does
/// (`numpy.core.multiarray._reconstruct` + `BUILD`), which numpy 1.x and 2.x both load. Nothing is memoized: a value
/// that occurs twice is written twice.
pub fn to_bytes(v: &PyValue) -> Vec<u8> {
    let mut out = vec![0x80, 3];
    emit(v, &mut out);
    out.push(b'.');
    out
}

fn emit_int(i: i64, out: &mut Vec<u8>) {
    if let Ok(small) = i32::try_from(i) {
        out.push(b'J');
        out.extend_from_slice(&small.to_le_bytes());
    } else {
        out.extend_from_slice(&[0x8a, 8]); // LONG1, 8 bytes two's complement
        out.extend_from_slice(&i.to_le_bytes());
    }
}

fn emit_global(module: &str, name: &str, out: &mut Vec<u8>) {
    out.push(b'c');
    out.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
}

/// `MARK key value … SETITEMS` (nothing for no items), after an empty dict on the stack.
fn emit_items(items: &[(PyValue, PyValue)], out: &mut Vec<u8>) {
    if !items.is_empty() {
        out.push(b'(');
        for (k, x) in items {
            emit(k, out);
            emit(x, out);
        }
        out.push(b'u');
    }
}

fn emit_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'X');
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// `MARK items close` (`APPENDS` after an empty list, `TUPLE`).
fn emit_seq(items: &[PyValue], close: u8, out: &mut Vec<u8>) {
    out.push(b'(');
    items.iter().for_each(|x| emit(x, out));
    out.push(close);
}

/// `_reconstruct(ndarray, (0,), b'b')` then `BUILD (1, shape, dtype(descr), False, raw bytes)`.
fn emit_array(shape: &[usize], descr: &str, raw: &[u8], out: &mut Vec<u8>) {
    emit_global("numpy.core.multiarray", "_reconstruct", out);
    emit_global("numpy", "ndarray", out);
    emit_int(0, out);
    out.extend_from_slice(&[0x85, b'C', 1, b'b', 0x87, b'R', b'(']);
    emit_int(1, out);
    out.push(b'(');
    shape.iter().for_each(|&d| emit_int(d as i64, out));
    out.push(b't');
    emit_global("numpy", "dtype", out);
    emit_str(descr, out);
    out.extend_from_slice(&[0x89, 0x88, 0x87, b'R', b'(']);
    emit_int(3, out);
    emit_str("<", out);
    out.extend_from_slice(b"NNN");
    emit_int(-1, out);
    emit_int(-1, out);
    emit_int(0, out);
    out.extend_from_slice(b"tb");
    out.push(0x89); // C order
    out.push(b'B');
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out.extend_from_slice(raw);
    out.extend_from_slice(b"tb");
}

fn emit(v: &PyValue, out: &mut Vec<u8>) {
    match v {
        PyValue::None => out.push(b'N'),
        PyValue::Bool(b) => out.push(if *b { 0x88 } else { 0x89 }),
        PyValue::Int(i) => emit_int(*i, out),
        PyValue::Float(f) => {
            out.push(b'G');
            out.extend_from_slice(&f.to_be_bytes());
        }
        PyValue::Str(s) => emit_str(s, out),
        PyValue::List(a) => {
            out.push(b']');
            if !a.is_empty() {
                emit_seq(a, b'e', out);
            }
        }
        PyValue::Tuple(a) if a.is_empty() => out.push(b')'),
        PyValue::Tuple(a) => emit_seq(a, b't', out),
        PyValue::Dict(m) => {
            out.push(b'}');
            emit_items(m, out);
        }
        PyValue::OrderedDict(m) => {
            emit_global("collections", "OrderedDict", out);
            out.extend_from_slice(b")R");
            emit_items(m, out);
        }
        PyValue::Global { module, name } => emit_global(module, name, out),
        PyValue::Call { module, name, args } => {
            emit_global(module, name, out);
            if args.is_empty() {
                out.push(b')');
            } else {
                emit_seq(args, b't', out);
            }
            out.push(b'R');
        }
        PyValue::PersistentId(id) => {
            emit(id, out);
            out.push(b'Q');
        }
        PyValue::Int64Array { shape, data } => {
            let raw: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
            emit_array(shape, "i8", &raw, out);
        }
        PyValue::Float64Array { shape, data } => {
            let raw: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
            emit_array(shape, "f8", &raw, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Protocol 2 (what torch.save uses): numpy scalars' bytes come through `_codecs.encode(text, 'latin1')`.
    /// `pickle.dumps({'a': [np.float32(0.32994902), np.float64(-1.5)], 'b': np.float32(0.0)}, protocol=2)`, numpy 2.4.
    #[test]
    fn numpy_scalars_of_protocol_2() {
        let bytes = b"\x80\x02\x7d\x71\x00\x28\x58\x01\x00\x00\x00\x61\x71\x01\x5d\x71\x02\x28\x63\x6e\x75\x6d\x70\x79\x2e\x5f\x63\x6f\x72\x65\x2e\x6d\x75\x6c\x74\x69\x61\x72\x72\x61\x79\x0a\x73\x63\x61\x6c\x61\x72\x0a\x71\x03\x63\x6e\x75\x6d\x70\x79\x0a\x64\x74\x79\x70\x65\x0a\x71\x04\x58\x02\x00\x00\x00\x66\x34\x71\x05\x89\x88\x87\x71\x06\x52\x71\x07\x28\x4b\x03\x58\x01\x00\x00\x00\x3c\x71\x08\x4e\x4e\x4e\x4a\xff\xff\xff\xff\x4a\xff\xff\xff\xff\x4b\x00\x74\x71\x09\x62\x63\x5f\x63\x6f\x64\x65\x63\x73\x0a\x65\x6e\x63\x6f\x64\x65\x0a\x71\x0a\x58\x06\x00\x00\x00\x14\xc3\xaf\xc2\xa8\x3e\x71\x0b\x58\x06\x00\x00\x00\x6c\x61\x74\x69\x6e\x31\x71\x0c\x86\x71\x0d\x52\x71\x0e\x86\x71\x0f\x52\x71\x10\x68\x03\x68\x04\x58\x02\x00\x00\x00\x66\x38\x71\x11\x89\x88\x87\x71\x12\x52\x71\x13\x28\x4b\x03\x68\x08\x4e\x4e\x4e\x4a\xff\xff\xff\xff\x4a\xff\xff\xff\xff\x4b\x00\x74\x71\x14\x62\x68\x0a\x58\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc3\xb8\xc2\xbf\x71\x15\x68\x0c\x86\x71\x16\x52\x71\x17\x86\x71\x18\x52\x71\x19\x65\x58\x01\x00\x00\x00\x62\x71\x1a\x68\x03\x68\x07\x68\x0a\x58\x04\x00\x00\x00\x00\x00\x00\x00\x71\x1b\x68\x0c\x86\x71\x1c\x52\x71\x1d\x86\x71\x1e\x52\x71\x1f\x75\x2e";
        let v = from_bytes(bytes).unwrap();
        assert_eq!(v["a"][0].as_f64().unwrap(), 0.32994902f32 as f64);
        assert_eq!(v["a"][1].as_f64().unwrap(), -1.5);
        assert_eq!(v["b"].as_f64().unwrap(), 0.0);
    }
}
