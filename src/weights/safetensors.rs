//! A strict safetensors reader: the header is untrusted input (files come from anywhere, in
//! the browser straight off the network), so every length, offset and shape is checked
//! before anything is sliced, and errors name the tensor.
//!
//! Layout: u64 little-endian header length N, N bytes of JSON
//! `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}`, then the data;
//! offsets are relative to the end of the header.

use std::collections::BTreeMap;

use serde_json::Value;

use super::error::WeightsError;

/// The largest header we accept. Real ones are well under 1 MiB even for SDXL's UNet;
/// the cap stops a hostile length from allocating gigabytes.
pub const MAX_HEADER_BYTES: u64 = 64 << 20;

/// Element types we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafeDType {
    F32,
    F16,
    BF16,
    I64,
    I32,
    U8,
}

impl SafeDType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "F32" => Self::F32,
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            "I64" => Self::I64,
            "I32" => Self::I32,
            "U8" => Self::U8,
            _ => return None,
        })
    }

    /// Whether `decode_f32` reads it.
    pub fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F16 | Self::BF16)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::I64 => 8,
            Self::U8 => 1,
        }
    }
}

/// One tensor's entry: where its bytes are, relative to the start of the data section.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub dtype: SafeDType,
    pub shape: Vec<usize>,
    pub begin: u64,
    pub end: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A parsed header.
#[derive(Debug, Clone)]
pub struct Header {
    /// Bytes before the data section (8 + N).
    pub data_start: u64,
    /// Tensors by name, sorted.
    pub tensors: BTreeMap<String, TensorInfo>,
    pub metadata: BTreeMap<String, String>,
}

fn bad(file: &str, msg: String) -> WeightsError {
    WeightsError::Safetensors { file: file.into(), message: msg }
}

/// Reads the header length from the first 8 bytes and checks it against the file size.
pub fn header_len(file: &str, first8: &[u8], file_size: u64) -> Result<u64, WeightsError> {
    if first8.len() < 8 {
        return Err(bad(file, format!("{} bytes is too short for a safetensors file", first8.len())));
    }
    let n = u64::from_le_bytes(first8[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER_BYTES || n.saturating_add(8) > file_size {
        return Err(bad(file, format!("header length {n} is impossible for a {file_size}-byte file")));
    }
    Ok(n)
}

/// Parses and validates a header. `header` is the N JSON bytes; `file_size` the whole file.
pub fn parse_header(file: &str, header: &[u8], file_size: u64) -> Result<Header, WeightsError> {
    let data_start = 8 + header.len() as u64;
    let data_len = file_size.checked_sub(data_start).ok_or_else(|| bad(file, "file ends inside its header".into()))?;
    let json: Value = serde_json::from_slice(header).map_err(|e| bad(file, format!("header is not JSON: {e}")))?;
    let obj = json.as_object().ok_or_else(|| bad(file, "header is not a JSON object".into()))?;
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, v) in obj {
        if name == "__metadata__" {
            for (k, v) in v.as_object().into_iter().flatten() {
                metadata.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
            continue;
        }
        let t = |m: &str| bad(file, format!("tensor '{name}': {m}"));
        let dtype_s = v["dtype"].as_str().ok_or_else(|| t("no dtype"))?;
        let dtype = SafeDType::parse(dtype_s).ok_or_else(|| t(&format!("unsupported dtype {dtype_s}")))?;
        let shape = v["shape"]
            .as_array()
            .ok_or_else(|| t("no shape"))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()).ok_or_else(|| t("shape has a non-integer dimension")))
            .collect::<Result<Vec<usize>, _>>()?;
        let offsets = v["data_offsets"].as_array().filter(|a| a.len() == 2).ok_or_else(|| t("data_offsets must be [begin, end]"))?;
        let (begin, end) = match (offsets[0].as_u64(), offsets[1].as_u64()) {
            (Some(b), Some(e)) if b <= e => (b, e),
            _ => return Err(t("data_offsets are not increasing integers")),
        };
        if end > data_len {
            return Err(t(&format!("data ends at {end}, past the file's {data_len} data bytes")));
        }
        let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| t("shape overflows"))?;
        let want = numel.checked_mul(dtype.size()).ok_or_else(|| t("shape overflows"))? as u64;
        if end - begin != want {
            return Err(t(&format!("{} bytes for shape {shape:?} {dtype_s} (needs {want})", end - begin)));
        }
        tensors.insert(name.clone(), TensorInfo { dtype, shape, begin, end });
    }
    // Overlapping tensors mean a corrupt or malicious file.
    let mut spans: Vec<(&String, u64, u64)> = tensors.iter().map(|(n, t)| (n, t.begin, t.end)).collect();
    spans.sort_by_key(|s| (s.1, s.2));
    for w in spans.windows(2) {
        if w[1].1 < w[0].2 {
            return Err(bad(file, format!("tensors '{}' and '{}' overlap", w[0].0, w[1].0)));
        }
    }
    Ok(Header { data_start, tensors, metadata })
}

/// Parses a whole safetensors file held in memory.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Header, WeightsError> {
    let n = header_len(file, bytes, bytes.len() as u64)?;
    parse_header(file, &bytes[8..8 + n as usize], bytes.len() as u64)
}

/// Decodes little-endian values of a float dtype to f32 (any whole number of values, so
/// a tensor can arrive in pieces); None for integer dtypes.
pub fn decode_f32(dtype: SafeDType, raw: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        SafeDType::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        SafeDType::F16 => raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        SafeDType::BF16 => raw.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        _ => return None,
    })
}

/// Converts one tensor's raw bytes to f32 (float dtypes only).
pub fn to_f32(file: &str, name: &str, info: &TensorInfo, raw: &[u8]) -> Result<Vec<f32>, WeightsError> {
    decode_f32(info.dtype, raw).ok_or_else(|| not_float(file, name, info.dtype))
}

/// The error for a tensor the converters cannot read as floats.
pub fn not_float(file: &str, name: &str, dtype: SafeDType) -> WeightsError {
    bad(file, format!("tensor '{name}' is {dtype:?}, not a float type"))
}

/// Decodes little-endian values of an integer dtype; None for float dtypes.
pub fn decode_i64(dtype: SafeDType, raw: &[u8]) -> Option<Vec<i64>> {
    Some(match dtype {
        SafeDType::I64 => raw.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect(),
        SafeDType::I32 => raw.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect(),
        SafeDType::U8 => raw.iter().map(|&b| b as i64).collect(),
        _ => return None,
    })
}

/// A tensor's values to write.
#[derive(Debug, Clone, Copy)]
pub enum Values<'a> {
    F32(&'a [f32]),
    /// torch's default integer type (code indices, token ids).
    I64(&'a [i64]),
}

/// Writes a safetensors file (f32 tensors), for tests and tools.
pub fn write_f32(tensors: &[(&str, &[usize], &[f32])]) -> Vec<u8> {
    let tensors: Vec<(&str, &[usize], Values)> = tensors.iter().map(|&(n, s, v)| (n, s, Values::F32(v))).collect();
    write(&tensors)
}

/// Writes a safetensors file of f32 and i64 tensors.
pub fn write(tensors: &[(&str, &[usize], Values)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (name, shape, data) in tensors {
        let (dtype, len) = match data {
            Values::F32(v) => ("F32", 4 * v.len() as u64),
            Values::I64(v) => ("I64", 8 * v.len() as u64),
        };
        header.insert(name.to_string(), serde_json::json!({ "dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len] }));
        offset += len;
    }
    let mut h = serde_json::to_vec(&header).expect("json");
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    for (_, _, data) in tensors {
        match data {
            Values::F32(v) => out.extend(bytemuck::cast_slice::<f32, u8>(v)),
            Values::I64(v) => out.extend(bytemuck::cast_slice::<i64, u8>(v)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        write_f32(&[("a.weight", &[2, 3], &[1., 2., 3., 4., 5., 6.]), ("b", &[1], &[7.])])
    }

    #[test]
    fn round_trips_a_written_file() {
        let bytes = sample();
        let h = parse("x.safetensors", &bytes).unwrap();
        let a = &h.tensors["a.weight"];
        assert_eq!(a.shape, vec![2, 3]);
        let raw = &bytes[(h.data_start + a.begin) as usize..(h.data_start + a.end) as usize];
        assert_eq!(to_f32("x", "a.weight", a, raw).unwrap(), vec![1., 2., 3., 4., 5., 6.]);
    }

    #[test]
    fn lying_headers_are_refused_with_the_tensor_named() {
        let mut bytes = sample();
        // A header length far past the file.
        let mut huge = bytes.clone();
        huge[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(parse("x", &huge).unwrap_err().to_string().contains("impossible"));
        // Offsets past the data: truncate the file.
        bytes.truncate(bytes.len() - 4);
        let err = parse("x", &bytes).unwrap_err().to_string();
        assert!(err.contains("'b'") && err.contains("past the file"), "{err}");
        // A shape that disagrees with the byte count.
        let header = br#"{"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
        let mut f = (header.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(header);
        f.extend_from_slice(&[0; 8]);
        let err = parse("x", &f).unwrap_err().to_string();
        assert!(err.contains("'t'") && err.contains("needs 12"), "{err}");
        // Overlaps.
        let header = br#"{"p":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"q":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
        let mut f = (header.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(header);
        f.extend_from_slice(&[0; 8]);
        assert!(parse("x", &f).unwrap_err().to_string().contains("overlap"));
        // Shapes whose product overflows.
        let header = br#"{"o":{"dtype":"F32","shape":[18446744073709551615,4],"data_offsets":[0,0]}}"#;
        let mut f = (header.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(header);
        assert!(parse("x", &f).unwrap_err().to_string().contains("overflows"));
    }
}
