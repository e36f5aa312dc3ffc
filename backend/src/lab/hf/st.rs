//! safetensors files, streamed one tensor at a time.
//!
//! Reading parses the header and then reads each tensor's byte range with a positioned read
//! straight into the buffer it is converted from, so a checkpoint is read once and the memory
//! beyond the model is one tensor's bytes. (Not a memory map: the workspace forbids `unsafe`, and
//! a map's touched pages would count against the same peak.) Writing lays out the header from
//! the tensors' shapes first, then streams each tensor's bytes, into a file that is renamed into
//! place when complete.

use super::HfError;
use super::config::DType;
use half::{bf16, f16};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Headers larger than this are refused (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// Parses a safetensors header: `head` is the file's first bytes (the 8-byte length, then at
/// least that many bytes of JSON), `len` the whole file's size. Every tensor's byte range is
/// checked to lie inside the file and to hold its shape, in checked arithmetic.
pub fn parse_header(name: &str, head: &[u8], len: u64) -> Result<BTreeMap<String, Info>, HfError> {
    let bad = |message: String| HfError::Weights { path: name.to_string(), tensor: "(header)".into(), message };
    let n = head.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).ok_or_else(|| bad(format!("{} bytes is too short for a safetensors file", head.len())))?;
    let json = usize::try_from(n).ok().filter(|&n| n as u64 <= MAX_HEADER).and_then(|n| head.get(8..8 + n));
    let Some(json) = json.filter(|_| n.saturating_add(8) <= len) else {
        return Err(bad(format!("header length {n} does not fit the file's {len} bytes")));
    };
    let header: Map<String, Value> = serde_json::from_slice(json).map_err(|e| bad(format!("header is not a JSON object: {e}")))?;
    let base = 8 + n;
    let mut tensors = BTreeMap::new();
    for (key, v) in header {
        if key == "__metadata__" {
            continue;
        }
        let terr = |message: String| HfError::Weights { path: name.to_string(), tensor: key.clone(), message };
        let dtype_name = v.get("dtype").and_then(|d| d.as_str()).unwrap_or("?");
        let dtype = DType::from_st(dtype_name).ok_or_else(|| terr(format!("dtype {dtype_name} is not supported (F32, F16 and BF16 are)")))?;
        let shape: Vec<usize> = v
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|s| s.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect())
            .ok_or_else(|| terr("`shape` is not a list of sizes".into()))?;
        let offsets: Vec<u64> = v
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|s| s.iter().map(Value::as_u64).collect())
            .filter(|o: &Vec<u64>| o.len() == 2)
            .ok_or_else(|| terr("`data_offsets` is not [begin, end]".into()))?;
        let want = shape.iter().try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64));
        let range = base.checked_add(offsets[0]).zip(base.checked_add(offsets[1]));
        match (want, range) {
            (Some(want), Some((start, end))) if offsets[1] >= offsets[0] && offsets[1] - offsets[0] == want && end <= len => {
                tensors.insert(key, Info { dtype, shape, start, end });
            }
            _ => return Err(terr(format!("data_offsets {offsets:?} do not hold {shape:?} of {dtype_name} inside the file ({len} bytes)"))),
        }
    }
    Ok(tensors)
}

#[derive(Debug, Clone)]
pub struct Info {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub start: u64,
    pub end: u64,
}

/// One open safetensors file.
#[derive(Debug)]
pub struct StFile {
    pub path: PathBuf,
    file: File,
    pub tensors: BTreeMap<String, Info>,
}

impl StFile {
    pub fn open(path: &Path) -> Result<Self, HfError> {
        let name = path.display().to_string();
        let bad = |message: String| HfError::Weights { path: name.clone(), tensor: "(header)".into(), message };
        let mut file = File::open(path).map_err(|source| HfError::Io { path: name.clone(), source })?;
        let len = file.metadata().map_err(|source| HfError::Io { path: name.clone(), source })?.len();
        let mut n = [0u8; 8];
        file.read_exact(&mut n).map_err(|_| bad(format!("{len} bytes is too short for a safetensors file")))?;
        let header_len = u64::from_le_bytes(n);
        if header_len > MAX_HEADER || header_len.saturating_add(8) > len {
            return Err(bad(format!("header length {header_len} does not fit the file's {len} bytes")));
        }
        let mut head = vec![0u8; 8 + header_len as usize];
        head[..8].copy_from_slice(&n);
        file.read_exact(&mut head[8..]).map_err(|source| HfError::Io { path: name.clone(), source })?;
        let tensors = parse_header(&name, &head, len)?;
        Ok(Self { path: path.to_path_buf(), file, tensors })
    }

    /// A tensor as f32, row-major in its stored shape, or transposed when it is a matrix and
    /// `transpose` is set.
    pub fn read_f32(&self, name: &str, transpose: bool) -> Result<Vec<f32>, HfError> {
        let info = &self.tensors[name];
        let mut bytes = vec![0u8; (info.end - info.start) as usize];
        let mut f = &self.file;
        f.seek(SeekFrom::Start(info.start))
            .and_then(|_| f.read_exact(&mut bytes))
            .map_err(|source| HfError::Io { path: self.path.display().to_string(), source })?;
        let values: Vec<f32> = match info.dtype {
            DType::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            DType::F16 => bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::BF16 => bytes.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        };
        drop(bytes);
        if transpose && info.shape.len() == 2 {
            Ok(transposed(&values, info.shape[0], info.shape[1]))
        } else {
            Ok(values)
        }
    }
}

/// `rows × cols` row-major → `cols × rows` row-major, in cache-sized tiles.
pub fn transposed(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const T: usize = 32;
    let mut out = vec![0.0f32; v.len()];
    for r0 in (0..rows).step_by(T) {
        for c0 in (0..cols).step_by(T) {
            for r in r0..(r0 + T).min(rows) {
                for c in c0..(c0 + T).min(cols) {
                    out[c * rows + r] = v[r * cols + c];
                }
            }
        }
    }
    out
}

/// Encodes f32 values in a storage dtype (round to nearest even for the half types).
pub fn encode(values: &[f32], dtype: DType, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(values.len() * dtype.size());
    match dtype {
        DType::F32 => values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::F16 => values.iter().for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        DType::BF16 => values.iter().for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
    }
}

/// A tensor to write: its name, shape, and a source of its f32 values (row-major in `shape`,
/// or, with `transpose`, row-major in `shape` reversed: a burn `[in, out]` weight written as
/// `[out, in]`).
pub struct Entry<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub transpose: bool,
    pub values: Box<dyn Fn() -> burn::tensor::TensorData + 'a>,
}

impl std::fmt::Debug for Entry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("name", &self.name).field("shape", &self.shape).finish_non_exhaustive()
    }
}

/// Writes `entries` (in order) as one safetensors file with `{"format": "pt"}` metadata, which
/// transformers requires. The file appears at `path` only when complete.
pub fn write(path: &Path, entries: &[Entry<'_>], dtype: DType) -> Result<u64, HfError> {
    write_until(path, entries, dtype, &std::sync::atomic::AtomicBool::new(false))
}

/// [`write`], stopping with [`HfError::Cancelled`] before the next tensor once `cancel` is set
/// (the partial file is removed).
pub fn write_until(path: &Path, entries: &[Entry<'_>], dtype: DType, cancel: &std::sync::atomic::AtomicBool) -> Result<u64, HfError> {
    let io = |source| HfError::Io { path: path.display().to_string(), source };
    let mut header = Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0u64;
    for e in entries {
        let size = e.shape.iter().product::<usize>() as u64 * dtype.size() as u64;
        header.insert(e.name.clone(), serde_json::json!({"dtype": dtype.st_name(), "shape": e.shape, "data_offsets": [offset, offset + size]}));
        offset += size;
    }
    let mut text = serde_json::to_vec(&Value::Object(header)).map_err(|e| io(std::io::Error::other(e)))?;
    // The data starts 8-byte aligned.
    while (text.len() % 8) != 0 {
        text.push(b' ');
    }
    let tmp = path.with_extension("safetensors.partial");
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io)?);
    w.write_all(&(text.len() as u64).to_le_bytes()).map_err(io)?;
    w.write_all(&text).map_err(io)?;
    let mut buf = Vec::new();
    for e in entries {
        crate::slow_point("export", cancel);
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            drop(w);
            let _ = std::fs::remove_file(&tmp);
            return Err(HfError::Cancelled);
        }
        let data = (e.values)();
        let values = data.as_slice::<f32>().map_err(|err| HfError::Weights { path: path.display().to_string(), tensor: e.name.clone(), message: format!("{err:?}") })?;
        if values.len() != e.shape.iter().product::<usize>() {
            return Err(HfError::Weights { path: path.display().to_string(), tensor: e.name.clone(), message: format!("{} values for shape {:?}", values.len(), e.shape) });
        }
        let flipped;
        let values = if e.transpose && e.shape.len() == 2 {
            flipped = transposed(values, e.shape[1], e.shape[0]);
            &flipped[..]
        } else {
            values
        };
        // In slices, so the encoded copy stays small next to the tensor.
        for part in values.chunks(1 << 20) {
            encode(part, dtype, &mut buf);
            w.write_all(&buf).map_err(io)?;
        }
    }
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(8 + text.len() as u64 + offset)
}
