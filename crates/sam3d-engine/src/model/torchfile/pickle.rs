//! A pickle reader that builds data and never runs anything.
//!
//! It reads the opcodes of protocols 2–5 (and the protocol-0/1 forms of numbers, memo and
//! globals that old pickles mix in), builds containers in an arena, and turns the result into a
//! plain [`Value`] tree. A `GLOBAL` is looked up in an allowlist ([`known_global`]): torch's
//! tensor rebuild functions and storage types, the containers torch and numpy pickle through
//! globals, and a few data-only classes that checkpoints carry beside their weights
//! (`argparse.Namespace`, numpy scalars and dtypes, `torch.device`). Anything else — a function
//! such as `os.system`, a user class — stops the read with an error naming it. Calls of
//! allowlisted globals are interpreted here (a tensor becomes a [`TensorRef`], an `OrderedDict`
//! a dict); nothing is imported, called or evaluated.
//!
//! Every size comes from the input and is checked before use: the stack, memo, arena and the
//! expanded tree are bounded, strings cannot be longer than the bytes left, and shared
//! references (which could expand exponentially) count against a budget.

use super::tensor::{DType, Storage, TensorRef};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// A value of the pickle, as data.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits: its little-endian two's-complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// Items in the order they were pickled (a repeated key keeps both; [`Value::get`] finds
    /// the last, as Python's dict would hold it).
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    /// A reference to an allowlisted class or constant (`torch.float32`, `torch.FloatStorage`).
    Global(String),
    /// An instance of an allowlisted data class (`argparse.Namespace`, `numpy.dtype`,
    /// `numpy.ndarray`, `torch.device`): its constructor arguments and state.
    Object { class: String, args: Vec<Value>, state: Option<Box<Value>> },
    Storage(Arc<Storage>),
    Tensor(TensorRef),
}

impl Value {
    /// The value of `key` in a dict (string keys), or an attribute of an object's state dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items.iter().rev().find(|(k, _)| matches!(k, Value::Str(s) if s == key)).map(|(_, v)| v),
            Value::Object { state: Some(s), .. } => s.get(key),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }
    /// A short human-readable rendering (long containers elided), for summaries.
    pub fn brief(&self) -> String {
        let mut s = String::new();
        self.brief_into(&mut s, 3);
        if s.len() > 200 {
            let mut cut = 200;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
        }
        s
    }
    fn brief_into(&self, out: &mut String, depth: usize) {
        use std::fmt::Write;
        let list = |out: &mut String, open: &str, close: &str, items: &[Value]| {
            out.push_str(open);
            for (i, v) in items.iter().take(8).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if depth == 0 {
                    out.push('…');
                } else {
                    v.brief_into(out, depth - 1);
                }
            }
            if items.len() > 8 {
                let _ = write!(out, ", … {} items", items.len());
            }
            out.push_str(close);
        };
        match self {
            Value::None => out.push_str("None"),
            Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::BigInt(b) => {
                let _ = write!(out, "<{}-byte integer>", b.len());
            }
            Value::Float(f) => {
                let _ = write!(out, "{f}");
            }
            Value::Str(s) => {
                let _ = write!(out, "{s:?}");
            }
            Value::Bytes(b) => {
                let _ = write!(out, "<{} bytes>", b.len());
            }
            Value::List(v) => list(out, "[", "]", v),
            Value::Tuple(v) => list(out, "(", ")", v),
            Value::Set(v) => list(out, "{", "}", v),
            Value::Dict(items) => {
                let _ = write!(out, "{{dict of {}}}", items.len());
            }
            Value::Global(g) => out.push_str(g),
            Value::Object { class, .. } => {
                let _ = write!(out, "<{class}>");
            }
            Value::Storage(s) => {
                let _ = write!(out, "<storage {} {}>", s.key, s.dtype.name());
            }
            Value::Tensor(t) => {
                let _ = write!(out, "<tensor {} {:?}>", t.dtype.name(), t.shape);
            }
        }
    }
}

/// Limits on what one pickle may build.
const MAX_STACK: usize = 1 << 20;
const MAX_MEMO: usize = 1 << 22;
const MAX_NODES: usize = 1 << 24;
/// Values in the expanded tree (shared references count once per use).
const MAX_TREE_VALUES: usize = 1 << 21;
/// Bytes of strings and byte strings in the expanded tree.
const MAX_TREE_BYTES: usize = 1 << 28;
/// Nesting of containers.
const MAX_DEPTH: usize = 256;
/// Items copied by calls (an `OrderedDict(pairs)` of a list copies it; the same list can be
/// passed many times).
const MAX_COPIED: usize = 1 << 24;

/// What an allowlisted global is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Known {
    RebuildTensor,
    RebuildTensorV2,
    RebuildTensorV3,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    OrderedDict,
    Counter,
    Set,
    FrozenSet,
    ByteArray,
    CodecsEncode,
    TorchSize,
    NumpyScalar,
    /// A storage class (`torch.FloatStorage`): only a marker inside persistent ids.
    StorageType(Option<DType>),
    /// A class whose instances are kept as [`Value::Object`].
    DataClass,
    /// A constant kept as [`Value::Global`] (`torch.float32`).
    Constant,
}

/// The allowlist. `module.name` after the Python 2 → 3 renames pickle applies.
fn known_global(full: &str) -> Option<Known> {
    use Known::*;
    Some(match full {
        "torch._utils._rebuild_tensor" => RebuildTensor,
        "torch._utils._rebuild_tensor_v2" => RebuildTensorV2,
        "torch._utils._rebuild_tensor_v3" => RebuildTensorV3,
        "torch._utils._rebuild_parameter" => RebuildParameter,
        "torch._utils._rebuild_parameter_with_state" => RebuildParameterWithState,
        "torch._tensor._rebuild_from_type_v2" => RebuildFromTypeV2,
        "collections.OrderedDict" => OrderedDict,
        "collections.Counter" => Counter,
        "builtins.set" => Set,
        "builtins.frozenset" => FrozenSet,
        "builtins.bytearray" => ByteArray,
        "_codecs.encode" => CodecsEncode,
        "torch.Size" => TorchSize,
        "numpy.core.multiarray.scalar" | "numpy._core.multiarray.scalar" => NumpyScalar,
        "argparse.Namespace"
        | "numpy.dtype"
        | "numpy.ndarray"
        | "numpy.core.multiarray._reconstruct"
        | "numpy._core.multiarray._reconstruct"
        | "torch.device" => DataClass,
        "torch.Tensor" | "torch.nn.parameter.Parameter" => Constant,
        _ => {
            if let Some(name) = full.strip_prefix("torch.") {
                if name.ends_with("Storage") && !name.contains('.') {
                    return Some(StorageType(DType::from_storage_type(name)));
                }
                if let Some(d) = full.strip_prefix("torch.storage.")
                    && (d == "UntypedStorage" || d == "TypedStorage")
                {
                    return Some(StorageType(DType::from_storage_type(d)));
                }
                if DType::from_torch_name(name).is_some()
                    || matches!(name, "complex64" | "complex128" | "cfloat" | "cdouble" | "uint16" | "uint32" | "uint64")
                    || name.starts_with("float8_")
                {
                    return Some(Constant);
                }
                // numpy dtype classes used as `numpy.dtypes.Float64DType`.
            }
            if full.starts_with("numpy.dtypes.") && full.ends_with("DType") {
                return Some(DataClass);
            }
            return None;
        }
    })
}

/// A value while the pickle runs: scalars inline, containers in the arena, strings shared.
#[derive(Debug, Clone)]
enum V {
    None,
    Bool(bool),
    Int(i64),
    BigInt(Rc<Vec<u8>>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<Vec<u8>>),
    Node(usize),
    Global(Rc<str>, Known),
    Storage(Arc<Storage>),
    Tensor(Rc<TensorRef>),
}

#[derive(Debug)]
enum Node {
    List(Vec<V>),
    Tuple(Vec<V>),
    Dict(Vec<(V, V)>),
    Set(Vec<V>),
    Object { class: Rc<str>, args: Vec<V>, state: Option<V> },
}

/// Resolves a persistent id (torch's `('storage', type, key, location, numel)`) to a storage.
pub type PersistentLoad<'a> = dyn FnMut(&Value) -> Result<Arc<Storage>, String> + 'a;

struct Vm<'a, 'b> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<V>,
    marks: Vec<usize>,
    memo: HashMap<u32, V>,
    nodes: Vec<Node>,
    copied: usize,
    persistent_load: &'b mut PersistentLoad<'b>,
}

/// Runs the pickle in `data`; `persistent_load` resolves storages.
pub fn load(data: &[u8], persistent_load: &mut PersistentLoad<'_>) -> Result<Value, String> {
    // Lifetimes: the closure only lives for this call.
    let mut vm = Vm { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), nodes: Vec::new(), copied: 0, persistent_load };
    let top = vm.run()?;
    let mut budget = Budget { values: 0, bytes: 0 };
    vm.tree(&top, 0, &mut budget, &mut Vec::new())
}

struct Budget {
    values: usize,
    bytes: usize,
}

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

impl Vm<'_, '_> {
    fn err(&self, what: impl std::fmt::Display) -> String {
        format!("pickle byte {}: {what}", self.pos)
    }
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if n > self.data.len() - self.pos {
            return Err(format!("the pickle is truncated (needs {n} bytes at byte {}, {} left)", self.pos, self.data.len() - self.pos));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn len_u64(&mut self) -> Result<usize, String> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| self.err(format!("length {n} too large")))
    }
    fn line(&mut self) -> Result<&[u8], String> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&c| c == b'\n').ok_or_else(|| "the pickle is truncated (a text line has no end)".to_string())?;
        if n > 4096 {
            return Err(self.err("text line longer than 4096 bytes"));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n + 1;
        Ok(s)
    }
    fn utf8(&mut self, n: usize) -> Result<V, String> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| "a string is not valid UTF-8".to_string())?;
        Ok(V::Str(Rc::from(s)))
    }
    fn bytes(&mut self, n: usize) -> Result<V, String> {
        let b = self.take(n)?.to_vec();
        Ok(V::Bytes(Rc::new(b)))
    }

    fn push(&mut self, v: V) -> Result<(), String> {
        if self.stack.len() >= MAX_STACK {
            return Err(self.err(format!("stack deeper than {MAX_STACK}")));
        }
        self.stack.push(v);
        Ok(())
    }
    fn pop(&mut self) -> Result<V, String> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.err("pop across a mark"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }
    fn top(&self) -> Result<&V, String> {
        self.stack.last().ok_or_else(|| self.err("stack underflow"))
    }
    fn pop_mark(&mut self) -> Result<Vec<V>, String> {
        let m = self.marks.pop().ok_or_else(|| self.err("no mark"))?;
        if m > self.stack.len() {
            return Err(self.err("mark above the stack"));
        }
        Ok(self.stack.split_off(m))
    }
    fn node(&mut self, n: Node) -> Result<V, String> {
        if self.nodes.len() >= MAX_NODES {
            return Err(self.err(format!("more than {MAX_NODES} containers")));
        }
        self.nodes.push(n);
        Ok(V::Node(self.nodes.len() - 1))
    }
    fn memo_put(&mut self, key: u32) -> Result<(), String> {
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return Err(self.err(format!("memo larger than {MAX_MEMO}")));
        }
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }
    fn memo_get(&mut self, key: u32) -> Result<(), String> {
        let v = self.memo.get(&key).cloned().ok_or_else(|| self.err(format!("memo key {key} not set")))?;
        self.push(v)
    }
    fn node_mut(&mut self, v: &V) -> Result<&mut Node, String> {
        match v {
            V::Node(i) => self.nodes.get_mut(*i).ok_or_else(|| "bad node".to_string()),
            _ => Err(self.err("expected a container")),
        }
    }

    fn global(&self, module: &str, name: &str) -> Result<V, String> {
        let module = match module {
            "__builtin__" => "builtins",
            "copy_reg" => "copyreg",
            "torch.tensor" => "torch._tensor",
            m => m,
        };
        let full = format!("{module}.{name}");
        match known_global(&full) {
            Some(k) => Ok(V::Global(Rc::from(full.as_str()), k)),
            None => Err(refusal(&full)),
        }
    }

    fn run(&mut self) -> Result<V, String> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(self.err(format!("pickle protocol {p} (this reader knows 0–5)")));
                    }
                }
                0x95 => {
                    // FRAME: a length hint only.
                    self.u64()?;
                }
                b'.' => return self.pop(),
                b'(' => {
                    if self.marks.len() >= MAX_STACK {
                        return Err(self.err("too many marks"));
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?;
                }
                b'N' => self.push(V::None)?,
                0x88 => self.push(V::Bool(true))?,
                0x89 => self.push(V::Bool(false))?,
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(V::Int(i64::from(v)))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(V::Int(i64::from(v)))?
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(V::Int(i64::from(v)))?
                }
                b'I' | b'L' => {
                    let line = latin1(self.line()?);
                    let t = line.trim_end_matches('L');
                    let v = match t {
                        "00" => V::Bool(false),
                        "01" => V::Bool(true),
                        _ => V::Int(t.parse::<i64>().map_err(|_| self.err(format!("integer {line:?} unreadable or wider than 64 bits")))?),
                    };
                    self.push(v)?
                }
                0x8a | 0x8b => {
                    // LONG1, LONG4
                    let n = if op == 0x8a { usize::from(self.u8()?) } else { self.u32()? as usize };
                    let b = self.take(n)?.to_vec();
                    self.push(long_from_bytes(b))?
                }
                b'F' => {
                    let line = latin1(self.line()?);
                    let v = line.trim().parse::<f64>().map_err(|_| self.err(format!("float {line:?} unreadable")))?;
                    self.push(V::Float(v))?
                }
                b'G' => {
                    // BINFLOAT is big-endian.
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(V::Float(f64::from_be_bytes(a)))?
                }
                // Python 2 strings: decoded as latin-1, as torch.load does for its own.
                b'T' => {
                    let n = self.u32()? as usize;
                    let s = latin1(self.take(n)?);
                    self.push(V::Str(Rc::from(s.as_str())))?
                }
                b'U' => {
                    let n = usize::from(self.u8()?);
                    let s = latin1(self.take(n)?);
                    self.push(V::Str(Rc::from(s.as_str())))?
                }
                b'S' | b'V' => return Err(self.err("a protocol-0 text string; torch.save writes protocol 2: re-save the file with torch.save")),
                b'B' => {
                    let n = self.u32()? as usize;
                    let v = self.bytes(n)?;
                    self.push(v)?
                }
                b'C' => {
                    let n = usize::from(self.u8()?);
                    let v = self.bytes(n)?;
                    self.push(v)?
                }
                0x8e | 0x96 => {
                    // BINBYTES8, BYTEARRAY8
                    let n = self.len_u64()?;
                    let v = self.bytes(n)?;
                    self.push(v)?
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.utf8(n)?;
                    self.push(v)?
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let v = self.utf8(n)?;
                    self.push(v)?
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let v = self.utf8(n)?;
                    self.push(v)?
                }
                b']' => {
                    let v = self.node(Node::List(Vec::new()))?;
                    self.push(v)?
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.node(Node::List(items))?;
                    self.push(v)?
                }
                b'a' => {
                    let item = self.pop()?;
                    let list = self.top()?.clone();
                    match self.node_mut(&list)? {
                        Node::List(l) => l.push(item),
                        _ => return Err(self.err("APPEND to something not a list")),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?.clone();
                    match self.node_mut(&list)? {
                        Node::List(l) => l.extend(items),
                        _ => return Err(self.err("APPENDS to something not a list")),
                    }
                }
                b')' => {
                    let v = self.node(Node::Tuple(Vec::new()))?;
                    self.push(v)?
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.node(Node::Tuple(items))?;
                    self.push(v)?
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n || self.marks.last().is_some_and(|&m| m > self.stack.len() - n) {
                        return Err(self.err("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let v = self.node(Node::Tuple(items))?;
                    self.push(v)?
                }
                b'}' => {
                    let v = self.node(Node::Dict(Vec::new()))?;
                    self.push(v)?
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(items).ok_or_else(|| self.err("DICT with an odd number of items"))?;
                    let v = self.node(Node::Dict(pairs))?;
                    self.push(v)?
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let dict = self.top()?.clone();
                    match self.node_mut(&dict)? {
                        Node::Dict(d) => d.push((key, value)),
                        _ => return Err(self.err("SETITEM on something not a dict")),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let p = pairs(items).ok_or_else(|| self.err("SETITEMS with an odd number of items"))?;
                    let dict = self.top()?.clone();
                    match self.node_mut(&dict)? {
                        Node::Dict(d) => d.extend(p),
                        _ => return Err(self.err("SETITEMS on something not a dict")),
                    }
                }
                0x8f => {
                    let v = self.node(Node::Set(Vec::new()))?;
                    self.push(v)?
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    let set = self.top()?.clone();
                    match self.node_mut(&set)? {
                        Node::Set(s) => s.extend(items),
                        _ => return Err(self.err("ADDITEMS on something not a set")),
                    }
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    let v = self.node(Node::Set(items))?;
                    self.push(v)?
                }
                b'c' => {
                    let module = latin1(self.line()?);
                    let name = latin1(self.line()?);
                    let v = self.global(&module, &name)?;
                    self.push(v)?
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (V::Str(module), V::Str(name)) = (module, name) else {
                        return Err(self.err("STACK_GLOBAL without two strings"));
                    };
                    let v = self.global(&module, &name)?;
                    self.push(v)?
                }
                b'R' | 0x81 => {
                    // REDUCE, NEWOBJ
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.call(callable, args)?;
                    self.push(v)?
                }
                0x92 => {
                    // NEWOBJ_EX
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let empty = matches!(&kwargs, V::Node(i) if matches!(self.nodes.get(*i), Some(Node::Dict(d)) if d.is_empty()));
                    if !empty {
                        return Err(self.err("NEWOBJ_EX with keyword arguments"));
                    }
                    let v = self.call(callable, args)?;
                    self.push(v)?
                }
                b'i' => {
                    // INST: module and name lines, arguments since the mark.
                    let module = latin1(self.line()?);
                    let name = latin1(self.line()?);
                    let callable = self.global(&module, &name)?;
                    let items = self.pop_mark()?;
                    let args = self.node(Node::Tuple(items))?;
                    let v = self.call(callable, args)?;
                    self.push(v)?
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return Err(self.err("OBJ without a class"));
                    }
                    let callable = items.remove(0);
                    let args = self.node(Node::Tuple(items))?;
                    let v = self.call(callable, args)?;
                    self.push(v)?
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.top()?.clone();
                    self.build(&obj, state)?;
                }
                b'p' => {
                    let line = latin1(self.line()?);
                    let k = line.parse::<u32>().map_err(|_| self.err("bad PUT"))?;
                    self.memo_put(k)?
                }
                b'q' => {
                    let k = u32::from(self.u8()?);
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = u32::try_from(self.memo.len()).map_err(|_| self.err("memo full"))?;
                    self.memo_put(k)?
                }
                b'g' => {
                    let line = latin1(self.line()?);
                    let k = line.parse::<u32>().map_err(|_| self.err("bad GET"))?;
                    self.memo_get(k)?
                }
                b'h' => {
                    let k = u32::from(self.u8()?);
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?
                }
                b'Q' | b'P' => {
                    let pid = if op == b'Q' {
                        self.pop()?
                    } else {
                        let line = latin1(self.line()?);
                        V::Str(Rc::from(line.as_str()))
                    };
                    let mut budget = Budget { values: MAX_TREE_VALUES - 64, bytes: MAX_TREE_BYTES - 4096 };
                    let pid = self.tree(&pid, 0, &mut budget, &mut Vec::new()).map_err(|_| self.err("persistent id too large"))?;
                    let storage = (self.persistent_load)(&pid)?;
                    self.push(V::Storage(storage))?
                }
                0x82..=0x84 => return Err(self.err("an extension-registry code (EXT1/2/4), which torch.save never writes")),
                0x97 | 0x98 => return Err(self.err("an out-of-band buffer (protocol 5), which torch.save never writes")),
                other => return Err(self.err(format!("unknown opcode 0x{other:02x}"))),
            }
        }
    }

    fn build(&mut self, obj: &V, state: V) -> Result<(), String> {
        let state_is_empty = match &state {
            V::None => true,
            V::Node(i) => matches!(self.nodes.get(*i), Some(Node::Dict(d)) if d.is_empty()),
            _ => false,
        };
        match obj {
            V::Node(i) => match self.nodes.get_mut(*i) {
                Some(Node::Object { state: s, .. }) => {
                    *s = Some(state);
                    Ok(())
                }
                // An OrderedDict's instance attributes (a state dict's `_metadata`): data only,
                // not kept.
                Some(Node::Dict(_)) => Ok(()),
                _ if state_is_empty => Ok(()),
                _ => Err(self.err("BUILD (state) on a container")),
            },
            _ if state_is_empty => Ok(()),
            V::Tensor(_) => Err(self.err("a tensor with Python attributes set on it (BUILD); not a plain state dict")),
            _ => Err(self.err("BUILD (state) on a scalar")),
        }
    }

    /// Counts `n` items copied, against [`MAX_COPIED`].
    fn charge(&mut self, n: usize) -> Result<(), String> {
        self.copied += n;
        if self.copied > MAX_COPIED {
            return Err(self.err(format!("calls copy more than {MAX_COPIED} items (a list passed again and again); not loaded")));
        }
        Ok(())
    }

    /// Items of a tuple or list node (a copy, charged).
    fn items(&mut self, v: &V) -> Result<Vec<V>, String> {
        let n = match v {
            V::Node(i) => match self.nodes.get(*i) {
                Some(Node::Tuple(t)) | Some(Node::List(t)) | Some(Node::Set(t)) => t.len(),
                Some(Node::Dict(d)) => d.len(),
                _ => 0,
            },
            _ => 0,
        };
        self.charge(n)?;
        match v {
            V::Node(i) => match self.nodes.get(*i) {
                Some(Node::Tuple(t)) | Some(Node::List(t)) => Ok(t.clone()),
                _ => Err(self.err("expected a tuple of arguments")),
            },
            _ => Err(self.err("expected a tuple of arguments")),
        }
    }

    /// The tree of a call's argument (at most 65536 values, charged as copies).
    fn small_tree(&mut self, v: &V) -> Result<Value, String> {
        let start = MAX_TREE_VALUES - (1 << 16);
        let mut budget = Budget { values: start, bytes: MAX_TREE_BYTES - (1 << 24) };
        let t = self.tree(v, 0, &mut budget, &mut Vec::new());
        self.charge(budget.values - start)?;
        t
    }

    /// A call of an allowlisted global with `args` (REDUCE / NEWOBJ), interpreted.
    fn call(&mut self, callable: V, args: V) -> Result<V, String> {
        let V::Global(name, known) = callable else {
            return Err(self.err("a call of something that is not an allowlisted global"));
        };
        let args = self.items(&args)?;
        use Known::*;
        match known {
            RebuildTensor | RebuildTensorV2 | RebuildTensorV3 => {
                let values: Vec<Value> = args.iter().map(|a| self.small_tree(a)).collect::<Result<_, _>>()?;
                let t = TensorRef::rebuild(&name, &values).map_err(|e| self.err(e))?;
                Ok(V::Tensor(Rc::new(t)))
            }
            RebuildParameter | RebuildParameterWithState => {
                let (Some(V::Tensor(t)), Some(grad)) = (args.first(), args.get(1)) else {
                    return Err(self.err(format!("{name} without a tensor")));
                };
                let mut t = (**t).clone();
                t.parameter = true;
                t.requires_grad = matches!(grad, V::Bool(true));
                if known == RebuildParameterWithState
                    && let Some(s) = args.get(3)
                {
                    self.build(&V::Tensor(Rc::new(t.clone())), s.clone())?;
                }
                Ok(V::Tensor(Rc::new(t)))
            }
            RebuildFromTypeV2 => {
                // (func, new_type, args, state): a tensor rebuilt by `func`, as `new_type`.
                let [func, new_type, fargs, state] = args.as_slice() else {
                    return Err(self.err("_rebuild_from_type_v2 with other than 4 arguments"));
                };
                match new_type {
                    V::Global(n, Constant) if &**n == "torch.Tensor" || &**n == "torch.nn.parameter.Parameter" => {}
                    V::Global(n, _) => return Err(refusal(n)),
                    _ => return Err(self.err("_rebuild_from_type_v2 of something not a class")),
                }
                // Only the plain rebuild functions (no nesting, so no unbounded recursion).
                if !matches!(func, V::Global(_, RebuildTensor | RebuildTensorV2 | RebuildTensorV3 | RebuildParameter | RebuildParameterWithState)) {
                    return Err(self.err("_rebuild_from_type_v2 of something other than a tensor rebuild function"));
                }
                let t = self.call(func.clone(), fargs.clone())?;
                self.build(&t, state.clone())?;
                Ok(t)
            }
            OrderedDict | Counter => {
                let mut items = Vec::new();
                if let Some(a) = args.first() {
                    match a {
                        V::Node(i) => match self.nodes.get(*i) {
                            Some(Node::Dict(d)) => {
                                let d = d.clone();
                                self.charge(d.len())?;
                                items.extend(d)
                            }
                            Some(Node::List(l)) | Some(Node::Tuple(l)) => {
                                for p in l.clone() {
                                    match self.items(&p)?.as_slice() {
                                        [k, v] => items.push((k.clone(), v.clone())),
                                        _ => return Err(self.err(format!("{name} of something not pairs"))),
                                    }
                                }
                            }
                            _ => return Err(self.err(format!("{name} of something not a mapping"))),
                        },
                        V::None => {}
                        _ => return Err(self.err(format!("{name} of something not a mapping"))),
                    }
                }
                self.node(Node::Dict(items))
            }
            Set | FrozenSet => {
                let items = match args.first() {
                    Some(a) => self.items(a).or_else(|_| match a {
                        V::Node(i) => match self.nodes.get(*i) {
                            Some(Node::Set(s)) => Ok(s.clone()),
                            _ => Err(self.err("set of something not a sequence")),
                        },
                        _ => Err(self.err("set of something not a sequence")),
                    })?,
                    None => Vec::new(),
                };
                self.node(Node::Set(items))
            }
            ByteArray => match args.first() {
                Some(V::Bytes(b)) => Ok(V::Bytes(b.clone())),
                None => Ok(V::Bytes(Rc::new(Vec::new()))),
                _ => Err(self.err("bytearray of something not bytes")),
            },
            CodecsEncode => match (args.first(), args.get(1)) {
                (Some(V::Str(s)), Some(V::Str(enc))) if &**enc == "latin1" || &**enc == "latin-1" => {
                    let b: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect();
                    Ok(V::Bytes(Rc::new(b.ok_or_else(|| self.err("_codecs.encode: a character outside latin-1"))?)))
                }
                _ => Err(self.err("_codecs.encode other than (str, 'latin1')")),
            },
            TorchSize => {
                let items = match args.first() {
                    Some(a) => self.items(a)?,
                    None => Vec::new(),
                };
                self.node(Node::Tuple(items))
            }
            NumpyScalar => {
                let (Some(dtype), Some(V::Bytes(b))) = (args.first(), args.get(1)) else {
                    return Err(self.err("numpy scalar without (dtype, bytes)"));
                };
                let dtype = self.small_tree(dtype)?;
                match numpy_scalar(&dtype, b).map_err(|e| self.err(e))? {
                    Value::Float(f) => Ok(V::Float(f)),
                    Value::Int(i) => Ok(V::Int(i)),
                    Value::Bool(x) => Ok(V::Bool(x)),
                    _ => Err(self.err("numpy scalar")),
                }
            }
            StorageType(_) => Err(self.err(format!("a call of {name}; a checkpoint only names storage types"))),
            DataClass => {
                // numpy's `_reconstruct(numpy.ndarray, …)` makes an instance of its first argument.
                let class = match args.first() {
                    Some(V::Global(cls, DataClass)) if name.ends_with("._reconstruct") => cls.clone(),
                    _ => name,
                };
                self.node(Node::Object { class, args, state: None })
            }
            Constant => Err(self.err(format!("a call of {name}, which torch.save never writes"))),
        }
    }

    /// Turns a value into a tree, within `budget`; `path` holds the nodes being expanded (a
    /// node inside itself is a cycle).
    fn tree(&self, v: &V, depth: usize, budget: &mut Budget, path: &mut Vec<usize>) -> Result<Value, String> {
        budget.values += 1;
        if budget.values > MAX_TREE_VALUES {
            return Err(format!("the pickle expands to more than {MAX_TREE_VALUES} values (through shared references); not loaded"));
        }
        if depth > MAX_DEPTH {
            return Err(format!("containers nested more than {MAX_DEPTH} deep"));
        }
        let mut count_bytes = |n: usize| {
            budget.bytes += n;
            if budget.bytes > MAX_TREE_BYTES {
                Err(format!("the pickle expands to more than {MAX_TREE_BYTES} bytes of strings (through shared references); not loaded"))
            } else {
                Ok(())
            }
        };
        Ok(match v {
            V::None => Value::None,
            V::Bool(b) => Value::Bool(*b),
            V::Int(i) => Value::Int(*i),
            V::BigInt(b) => {
                count_bytes(b.len())?;
                Value::BigInt(b.to_vec())
            }
            V::Float(f) => Value::Float(*f),
            V::Str(s) => {
                count_bytes(s.len())?;
                Value::Str(s.to_string())
            }
            V::Bytes(b) => {
                count_bytes(b.len())?;
                Value::Bytes(b.to_vec())
            }
            V::Global(g, _) => Value::Global(g.to_string()),
            V::Storage(s) => Value::Storage(s.clone()),
            V::Tensor(t) => Value::Tensor((**t).clone()),
            V::Node(i) => {
                if path.contains(i) {
                    return Err("a container that holds itself (a cycle); not a checkpoint's data".into());
                }
                path.push(*i);
                let node = self.nodes.get(*i).ok_or("bad node")?;
                let mut list = |items: &[V], budget: &mut Budget| -> Result<Vec<Value>, String> {
                    items.iter().map(|x| self.tree(x, depth + 1, budget, path)).collect()
                };
                let out = match node {
                    Node::List(items) => Value::List(list(items, budget)?),
                    Node::Tuple(items) => Value::Tuple(list(items, budget)?),
                    Node::Set(items) => Value::Set(list(items, budget)?),
                    Node::Dict(items) => {
                        let mut out = Vec::with_capacity(items.len().min(1 << 16));
                        for (k, v) in items {
                            let k = self.tree(k, depth + 1, budget, path)?;
                            let v = self.tree(v, depth + 1, budget, path)?;
                            out.push((k, v));
                        }
                        Value::Dict(out)
                    }
                    Node::Object { class, args, state } => {
                        let args = list(args, budget)?;
                        let state = match state {
                            Some(s) => Some(Box::new(self.tree(s, depth + 1, budget, path)?)),
                            None => None,
                        };
                        Value::Object { class: class.to_string(), args, state }
                    }
                };
                path.pop();
                out
            }
        })
    }
}

/// The error for a global outside the allowlist.
pub fn refusal(full: &str) -> String {
    let looks_like_class = full.rsplit('.').next().is_some_and(|n| n.chars().next().is_some_and(|c| c.is_ascii_uppercase()));
    let hint = if looks_like_class && !full.starts_with("builtins.") && !full.starts_with("os.") && !full.starts_with("posix.") && !full.starts_with("subprocess.") {
        " (an object of the program that saved it; a checkpoint's weights are read from a state dict of tensors, saved with `torch.save({'model_state_dict': model.state_dict()}, …)`)"
    } else {
        ""
    };
    format!("its pickle asks for `{full}`, which a checkpoint never needs; not loaded{hint}")
}

fn pairs(items: Vec<V>) -> Option<Vec<(V, V)>> {
    if !items.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Some(out)
}

/// LONG1/LONG4: little-endian two's complement.
fn long_from_bytes(b: Vec<u8>) -> V {
    if b.is_empty() {
        return V::Int(0);
    }
    if b.len() <= 8 {
        let neg = b[b.len() - 1] & 0x80 != 0;
        let mut a = [if neg { 0xff } else { 0 }; 8];
        a[..b.len()].copy_from_slice(&b);
        return V::Int(i64::from_le_bytes(a));
    }
    V::BigInt(Rc::new(b))
}

/// A numpy scalar (`numpy.core.multiarray.scalar(dtype, bytes)`) as a number.
fn numpy_scalar(dtype: &Value, b: &[u8]) -> Result<Value, String> {
    let Value::Object { class, args, state } = dtype else {
        return Err("numpy scalar without a dtype".into());
    };
    if class != "numpy.dtype" {
        return Err(format!("numpy scalar with a dtype of class {class}"));
    }
    let code = args.first().and_then(Value::as_str).ok_or("numpy dtype without a type code")?;
    // The byte order is the state's second item ('<', '>', '|', '=').
    let big = match state.as_deref() {
        Some(Value::Tuple(s)) => matches!(s.get(1).and_then(Value::as_str), Some(">")),
        _ => false,
    };
    let mut bytes = b.to_vec();
    if big {
        bytes.reverse();
    }
    let want = |n: usize| -> Result<[u8; 8], String> {
        if bytes.len() != n {
            return Err(format!("numpy scalar of type {code} with {} bytes", bytes.len()));
        }
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(&bytes);
        Ok(a)
    };
    let sign = |a: [u8; 8], n: usize| -> i64 {
        let shift = 64 - 8 * n as u32;
        (i64::from_le_bytes(a) << shift) >> shift
    };
    Ok(match code {
        "f8" => Value::Float(f64::from_le_bytes(want(8)?)),
        "f4" => {
            let a = want(4)?;
            Value::Float(f64::from(f32::from_le_bytes([a[0], a[1], a[2], a[3]])))
        }
        "f2" => {
            let a = want(2)?;
            Value::Float(f64::from(super::tensor::f16_to_f32(u16::from_le_bytes([a[0], a[1]]))))
        }
        "i8" | "i4" | "i2" | "i1" => {
            let n: usize = code[1..].parse().unwrap_or(8);
            Value::Int(sign(want(n)?, n))
        }
        "u4" | "u2" | "u1" => {
            let n: usize = code[1..].parse().unwrap_or(4);
            Value::Int(i64::from_le_bytes(want(n)?))
        }
        "u8" => {
            let v = u64::from_le_bytes(want(8)?);
            i64::try_from(v).map(Value::Int).unwrap_or(Value::Float(v as f64))
        }
        "b1" => Value::Bool(want(1)?[0] != 0),
        other => return Err(format!("numpy scalar of type {other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(data: &[u8]) -> Result<Value, String> {
        let mut pl = |_: &Value| -> Result<Arc<Storage>, String> { Err("no storages here".into()) };
        load(data, &mut pl)
    }

    #[test]
    fn scalars_and_containers() {
        // Python: pickle.dumps({'a': [1, -2, 3.5, None, True], 'b': (b'xy', 'é')}, protocol=2)
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00N\x88eX\x01\x00\x00\x00bq\x03c_codecs\nencode\nq\x04X\x02\x00\x00\x00xyq\x05X\x06\x00\x00\x00latin1q\x06\x86q\x07Rq\x08X\x02\x00\x00\x00\xc3\xa9q\t\x86q\nu.";
        let v = run(data).expect("reads");
        let a = v.get("a").expect("reads");
        match a {
            Value::List(items) => {
                assert_eq!(items[0].as_int(), Some(1));
                assert_eq!(items[1].as_int(), Some(-2));
                assert!(matches!(items[2], Value::Float(f) if f == 3.5));
                assert!(matches!(items[3], Value::None));
                assert!(matches!(items[4], Value::Bool(true)));
            }
            other => panic!("{other:?}"),
        }
        match v.get("b").expect("reads") {
            Value::Tuple(t) => {
                assert!(matches!(&t[0], Value::Bytes(b) if b == b"xy"));
                assert_eq!(t[1].as_str(), Some("é"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_unknown_globals() {
        let e = run(b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00echo\x85R.").expect_err("refused");
        assert!(e.contains("`posix.system`") && e.contains("never needs"), "{e}");
        let e = run(b"\x80\x02c__builtin__\neval\n.").expect_err("refused");
        assert!(e.contains("`builtins.eval`"), "{e}");
        let e = run(b"\x80\x04\x8c\nsubprocess\x8c\x05Popen\x93.").expect_err("refused");
        assert!(e.contains("`subprocess.Popen`"), "{e}");
    }

    #[test]
    fn exponential_sharing_is_bounded() {
        // l0 = []; l1 = [l0, l0]; l2 = [l1, l1]; … 40 levels: 2^40 values if expanded.
        let mut p = b"\x80\x02]q\x00".to_vec();
        for i in 0..40u8 {
            p.extend_from_slice(&[b'h', i, b'h', i, 0x86, b'q', i + 1]);
        }
        p.push(b'.');
        let e = run(&p).expect_err("refused");
        assert!(e.contains("expands to more than"), "{e}");
    }

    #[test]
    fn cycles_and_depth_are_refused() {
        // l = []; l.append(l)
        let e = run(b"\x80\x02]q\x00h\x00a.").expect_err("refused");
        assert!(e.contains("cycle"), "{e}");
        let mut p = b"\x80\x02".to_vec();
        p.extend(std::iter::repeat_n(b']', 1000));
        p.extend(std::iter::repeat_n(b'a', 999));
        p.push(b'.');
        let e = run(&p).expect_err("refused");
        assert!(e.contains("nested"), "{e}");
    }

    #[test]
    fn huge_lengths_do_not_allocate() {
        let e = run(b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f").expect_err("refused");
        assert!(e.contains("truncated") || e.contains("too large"), "{e}");
        let e = run(b"\x80\x02X\xff\xff\xff\xffab").expect_err("refused");
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn repeated_copies_are_bounded() {
        // l = [(1, 2)] * 65536 (shared pairs), then OrderedDict(l) 300 times: 2·10^7 items.
        let mut p = b"\x80\x02K\x01K\x02\x86q\x00]q\x01(".to_vec();
        for _ in 0..65536 {
            p.extend_from_slice(b"h\x00");
        }
        p.extend_from_slice(b"e");
        for _ in 0..300 {
            p.extend_from_slice(b"ccollections\nOrderedDict\nh\x01\x85R0");
        }
        p.push(b'.');
        let e = run(&p).expect_err("refused");
        assert!(e.contains("calls copy more than"), "{e}");
    }

    #[test]
    fn nested_rebuild_from_type_is_refused() {
        // _rebuild_from_type_v2(_rebuild_from_type_v2, torch.Tensor, (…), {})
        let p = b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\nq\x00(h\x00ctorch\nTensor\n)}tR.";
        let e = run(p).expect_err("refused");
        assert!(e.contains("other than a tensor rebuild function"), "{e}");
    }

    #[test]
    fn big_ints() {
        // LONG1 of 9 bytes, and of -1.
        let v = run(b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01\x8a\x01\xff\x86.").expect("reads");
        match v {
            Value::Tuple(t) => {
                assert!(matches!(&t[0], Value::BigInt(b) if b.len() == 9));
                assert_eq!(t[1].as_int(), Some(-1));
            }
            other => panic!("{other:?}"),
        }
    }
}
