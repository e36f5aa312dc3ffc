//! TensorBoard event files (`events.out.tfevents.*`): length-prefixed records, each with masked
//! CRC32C checks of its length and its data, holding `Event` protocol buffers whose summaries carry
//! scalars (as `simple_value`, or as a rank-0 tensor in TF2 / PyTorch writers).
//!
//! Only what scalar curves need is decoded: `Event.step` (2), `Event.summary` (5) →
//! `Summary.value` (1) → `Value.tag` (1), `Value.simple_value` (2), `Value.tensor` (8) →
//! `TensorProto.tensor_content` (4), `float_val` (5), `double_val` (6).

use super::{Format, LogOptions, ParsedLog, Skipped, TokenSource};
use crate::data::{Curve, CurvePoint, InputError, Location};
use std::collections::BTreeMap;

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), a byte at a time from a table built at
/// compile time: event files are small, and the browser has no SSE4.2.
pub fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0x82f6_3b78 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    !data.iter().fold(!0u32, |crc, &b| TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8))
}

/// TensorBoard's CRC mask (from TensorFlow's `crc32c.h`).
pub fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One scalar: (step, tag, value).
type Scalar = (i64, String, f64);

/// Reads every scalar of an event file.
pub fn scalars(file: &str, bytes: &[u8]) -> Result<Vec<Scalar>, InputError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut record = 0u64;
    while pos < bytes.len() {
        let err = |msg: String| InputError::new(file, Location::Record(record), None, msg);
        let header = bytes.get(pos..pos + 12).ok_or_else(|| err("truncated record header".into()))?;
        let len_bytes = &header[..8];
        let len = u64::from_le_bytes(len_bytes.try_into().map_err(|_| err("bad length".into()))?) as usize;
        let len_crc = u32::from_le_bytes(header[8..12].try_into().map_err(|_| err("bad crc".into()))?);
        if masked_crc32c(len_bytes) != len_crc {
            return Err(err("length checksum mismatch (not a TensorBoard event file, or corrupt)".into()));
        }
        // Checked: a length field near 2^64 must not wrap around to a small range.
        let end = (pos + 12).checked_add(len).filter(|e| e.checked_add(4).is_some_and(|c| c <= bytes.len()));
        let Some(end) = end else {
            return Err(err(format!("truncated record: {len} bytes announced, {} left", bytes.len() - pos - 12)));
        };
        let data = &bytes[pos + 12..end];
        let data_crc = &bytes[end..end + 4];
        if masked_crc32c(data) != u32::from_le_bytes(data_crc.try_into().map_err(|_| err("bad crc".into()))?) {
            return Err(err("data checksum mismatch (corrupt record)".into()));
        }
        event(data, &mut out).map_err(|m| err(format!("malformed event: {m}")))?;
        pos = end + 4;
        record += 1;
    }
    Ok(out)
}

/// A protobuf field: number and value.
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

fn varint(b: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn fields(b: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < b.len() {
        let key = varint(b, &mut pos)?;
        let (num, wire) = (key >> 3, key & 7);
        let f = match wire {
            0 => Field::Varint(varint(b, &mut pos)?),
            1 => {
                let s = b.get(pos..pos + 8).ok_or("truncated fixed64")?;
                pos += 8;
                Field::Fixed64(u64::from_le_bytes(s.try_into().map_err(|_| "fixed64")?))
            }
            2 => {
                let len = usize::try_from(varint(b, &mut pos)?).map_err(|_| "length too large")?;
                let end = pos.checked_add(len).filter(|&e| e <= b.len()).ok_or("truncated bytes")?;
                let s = &b[pos..end];
                pos = end;
                Field::Bytes(s)
            }
            5 => {
                let s = b.get(pos..pos + 4).ok_or("truncated fixed32")?;
                pos += 4;
                Field::Fixed32(u32::from_le_bytes(s.try_into().map_err(|_| "fixed32")?))
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        out.push((num, f));
    }
    Ok(out)
}

fn event(b: &[u8], out: &mut Vec<Scalar>) -> Result<(), String> {
    let mut step = 0i64;
    let mut summaries = Vec::new();
    for (num, f) in fields(b)? {
        match (num, f) {
            (2, Field::Varint(v)) => step = v as i64,
            (5, Field::Bytes(s)) => summaries.push(s),
            _ => {}
        }
    }
    for s in summaries {
        for (num, f) in fields(s)? {
            if let (1, Field::Bytes(v)) = (num, f) {
                if let Some((tag, value)) = summary_value(v)? {
                    out.push((step, tag, value));
                }
            }
        }
    }
    Ok(())
}

fn summary_value(b: &[u8]) -> Result<Option<(String, f64)>, String> {
    let mut tag = None;
    let mut value = None;
    for (num, f) in fields(b)? {
        match (num, f) {
            (1, Field::Bytes(t)) => tag = Some(String::from_utf8_lossy(t).into_owned()),
            (2, Field::Fixed32(v)) => value = Some(f64::from(f32::from_bits(v))),
            (8, Field::Bytes(t)) => value = value.or(tensor_scalar(t)?),
            _ => {}
        }
    }
    Ok(tag.zip(value))
}

fn tensor_scalar(b: &[u8]) -> Result<Option<f64>, String> {
    let mut dtype = 0;
    let mut content: Option<&[u8]> = None;
    let mut value = None;
    for (num, f) in fields(b)? {
        match (num, f) {
            (1, Field::Varint(d)) => dtype = d,
            (4, Field::Bytes(c)) => content = Some(c),
            (5, Field::Fixed32(v)) => value = Some(f64::from(f32::from_bits(v))),
            (5, Field::Bytes(p)) if p.len() >= 4 => value = Some(f64::from(f32::from_le_bytes([p[0], p[1], p[2], p[3]]))),
            (6, Field::Fixed64(v)) => value = Some(f64::from_bits(v)),
            (6, Field::Bytes(p)) if p.len() >= 8 => value = Some(f64::from_le_bytes(p[..8].try_into().map_err(|_| "double")?)),
            _ => {}
        }
    }
    // DT_FLOAT = 1, DT_DOUBLE = 2.
    Ok(value.or_else(|| match (dtype, content) {
        (1, Some(c)) if c.len() == 4 => Some(f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        (2, Some(c)) if c.len() == 8 => c.try_into().ok().map(f64::from_le_bytes),
        _ => None,
    }))
}

/// Parses an event file into one curve for the chosen tag (`--metric`; default: the only tag
/// naming a loss, preferring an eval one). Tokens come from a tag naming tokens logged at the same
/// steps, else step × tokens-per-step.
pub fn parse(file: &str, bytes: &[u8], o: &LogOptions) -> Result<ParsedLog, InputError> {
    super::check_options(file, o)?;
    let all = scalars(file, bytes)?;
    let mut tags: Vec<&str> = all.iter().map(|s| s.1.as_str()).collect();
    tags.sort_unstable();
    tags.dedup();
    let metric = match &o.metric {
        Some(m) if tags.contains(&m.as_str()) => m.clone(),
        Some(m) => {
            return Err(InputError::new(file, Location::File, Some(m), format!("no such scalar tag; the file has: {}", tags.join(", "))));
        }
        None => {
            let losses: Vec<&str> = tags.iter().copied().filter(|t| t.to_lowercase().contains("loss")).collect();
            let eval: Vec<&str> = losses.iter().copied().filter(|t| t.to_lowercase().contains("eval")).collect();
            match (eval.as_slice(), losses.as_slice()) {
                ([one], _) | ([], [one]) => one.to_string(),
                _ => {
                    return Err(InputError::new(file, Location::File, None, format!("choose the loss tag with --metric; the file has: {}", tags.join(", "))));
                }
            }
        }
    };
    let token_tag = tags.iter().find(|t| t.to_lowercase().contains("tokens")).map(|t| t.to_string());
    let tokens_at: BTreeMap<i64, f64> =
        token_tag.iter().flat_map(|tt| all.iter().filter(move |s| &s.1 == tt).map(|s| (s.0, s.2))).collect();
    let mut curve = Curve::new(o.run.clone().unwrap_or_else(|| file.rsplit(['/', '\\']).next().unwrap_or(file).to_string()));
    curve.split = Some(metric.clone());
    let mut skipped = Vec::new();
    let mut source = TokenSource::Logged;
    for (i, (step, _, loss)) in all.iter().filter(|s| s.1 == metric).enumerate() {
        let loc = || Location::Record(i as u64);
        let tokens = match (tokens_at.get(step), o.tokens_per_step) {
            (Some(t), _) if *t > 0.0 => *t,
            (_, Some(tps)) => {
                source = TokenSource::Steps;
                *step as f64 * tps
            }
            _ => {
                return Err(InputError::new(file, loc(), Some("step"), format!("step {step}: no token count logged; give --tokens-per-step")));
            }
        };
        if tokens <= 0.0 {
            skipped.push(Skipped { location: loc(), reason: format!("step {step}: no tokens yet") });
            continue;
        }
        let field = if source == TokenSource::Steps { "tokens_per_step".to_string() } else { token_tag.clone().unwrap_or_default() };
        let tokens = super::check_tokens(file, loc(), &field, tokens)?;
        if !((loss.is_finite() && *loss > 0.0) || (o.keep_non_finite && !loss.is_finite())) {
            return Err(InputError::new(file, loc(), Some(&metric), format!("step {step}: loss must be positive and finite, got {loss}")));
        }
        curve.points.push(CurvePoint { tokens, loss: *loss });
    }
    let log = ParsedLog { file: file.to_string(), format: Format::Tensorboard, curves: vec![curve], token_source: source, skipped, deduplicated: 0, warmup_dropped: 0 };
    super::finish(file, log, o)
}

/// Whether bytes look like an event file: a valid first record header.
pub fn looks_like(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && masked_crc32c(&bytes[..8]) == u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]])
}

/// Writes scalars as an event file (tests and fixtures).
pub fn write_scalars(scalars: &[(i64, &str, f32)]) -> Vec<u8> {
    fn key(num: u64, wire: u64, out: &mut Vec<u8>) {
        put_varint((num << 3) | wire, out);
    }
    fn put_varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn bytes_field(num: u64, data: &[u8], out: &mut Vec<u8>) {
        key(num, 2, out);
        put_varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }
    let mut file = Vec::new();
    let mut record = |data: &[u8]| {
        let len = (data.len() as u64).to_le_bytes();
        file.extend_from_slice(&len);
        file.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        file.extend_from_slice(data);
        file.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    };
    let mut version = Vec::new();
    bytes_field(3, b"brain.Event:2", &mut version);
    record(&version);
    for (step, tag, value) in scalars {
        let mut v = Vec::new();
        bytes_field(1, tag.as_bytes(), &mut v);
        key(2, 5, &mut v);
        v.extend_from_slice(&value.to_le_bytes());
        let mut summary = Vec::new();
        bytes_field(1, &v, &mut summary);
        let mut event = Vec::new();
        key(1, 1, &mut event);
        event.extend_from_slice(&1.7e9f64.to_le_bytes());
        key(2, 0, &mut event);
        put_varint(*step as u64, &mut event);
        bytes_field(5, &summary, &mut event);
        record(&event);
    }
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_answer() {
        // The CRC-32C check value (RFC 3720, iSCSI) of "123456789".
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
        // Against the crc32c crate on data of every length up to 300.
        let data: Vec<u8> = (0..300u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for n in 0..=data.len() {
            assert_eq!(crc32c(&data[..n]), ::crc32c::crc32c(&data[..n]), "length {n}");
        }
        // TensorFlow's mask: rotate right by 15, add 0xa282ead8.
        assert_eq!(masked_crc32c(b"123456789"), 0xe306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8));
    }

    #[test]
    fn reads_scalars_and_tokens() {
        let bytes = write_scalars(&[(100, "eval/loss", 3.5), (100, "train/num_input_tokens_seen", 409_600.0), (200, "eval/loss", 3.0), (200, "train/num_input_tokens_seen", 819_200.0)]);
        assert!(looks_like(&bytes));
        let log = parse("events.out.tfevents.1", &bytes, &LogOptions::default()).expect("valid");
        let pts: Vec<(f64, f64)> = log.curves[0].points.iter().map(|p| (p.tokens, p.loss)).collect();
        assert_eq!(pts, vec![(409_600.0, 3.5), (819_200.0, 3.0)]);
    }

    /// Files written by PyTorch's SummaryWriter (`tests/fixtures/tensorboard/make_fixtures.py`):
    /// `simple_value` scalars and TF2-style rank-0 tensors, read back exactly as the writer
    /// stored them (float32), tokens from the logged `train/num_tokens`.
    #[test]
    fn reads_files_of_an_independent_writer() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tensorboard");
        let values: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("values.json")).unwrap()).unwrap();
        let tps = values["tokens_per_step"].as_f64().unwrap();
        for kind in ["simple", "tensor"] {
            let bytes = std::fs::read(root.join(kind).join("events.out.tfevents.fixture")).unwrap();
            assert!(looks_like(&bytes), "{kind}");
            let want = &values["runs"][kind];
            for (metric, split) in [("eval/loss", "eval/loss"), ("train/loss", "train/loss")] {
                let o = LogOptions { metric: Some(metric.into()), tokens_per_step: Some(tps), ..Default::default() };
                let log = parse(kind, &bytes, &o).unwrap_or_else(|e| panic!("{kind} {metric}: {e}"));
                let c = &log.curves[0];
                assert_eq!(c.split.as_deref(), Some(split));
                let expect: Vec<(f64, f64)> = want[metric].as_array().unwrap().iter().map(|p| (p[0].as_f64().unwrap() * tps, p[1].as_f64().unwrap())).collect();
                let got: Vec<(f64, f64)> = c.points.iter().map(|p| (p.tokens, p.loss)).collect();
                // Exact as float32 (serde_json's text-to-f64 may round the JSON's last digit differently).
                let f32s = |v: &[(f64, f64)]| v.iter().map(|&(t, l)| (t, l as f32)).collect::<Vec<_>>();
                assert_eq!(f32s(&got), f32s(&expect), "{kind} {metric}");
                // eval/loss has a token tag at its steps; train/loss falls back to steps × tps.
                let source = if metric == "eval/loss" { TokenSource::Logged } else { TokenSource::Steps };
                assert_eq!(log.token_source, source, "{kind} {metric}");
            }
        }
    }

    #[test]
    fn token_counts_that_overflow_are_refused() {
        let bytes = write_scalars(&[(1, "loss", 2.0), (2, "loss", 1.5)]);
        let e = parse("ev", &bytes, &LogOptions { tokens_per_step: Some(1e308), ..Default::default() }).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("tokens_per_step"), "{e}");
        let bytes = write_scalars(&[(1, "loss", 2.0), (1, "tokens", f32::INFINITY)]);
        let e = parse("ev", &bytes, &LogOptions::default()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("tokens"), "{e}");
    }

    #[test]
    fn corrupt_records_are_named() {
        let mut bytes = write_scalars(&[(1, "loss", 2.0)]);
        let n = bytes.len();
        bytes[n - 6] ^= 0xff;
        let e = parse("ev", &bytes, &LogOptions { tokens_per_step: Some(1.0), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("ev, record 1") && e.to_string().contains("checksum"), "{e}");
        let e = parse("ev", &bytes[..n - 2], &LogOptions::default()).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod fuzz {
    use super::*;
    use crate::fuzz::{Campaign, TEXT_DICTIONARY, assert_clean, inputs_from_env};

    /// Repairs each record's length (to what is left when it overruns) and both checksums, so
    /// mutated bytes reach the protobuf decoder instead of stopping at a checksum.
    pub(crate) fn fix_records(b: &mut Vec<u8>) {
        let mut pos = 0usize;
        while pos + 12 <= b.len() {
            let mut len = u64::from_le_bytes(b[pos..pos + 8].try_into().unwrap_or_default()) as usize;
            let left = b.len() - pos - 12;
            if len.checked_add(4).is_none_or(|n| n > left) {
                if left < 4 {
                    return;
                }
                len = left - 4;
                b[pos..pos + 8].copy_from_slice(&(len as u64).to_le_bytes());
            }
            let crc = masked_crc32c(&b[pos..pos + 8]);
            b[pos + 8..pos + 12].copy_from_slice(&crc.to_le_bytes());
            let data_crc = masked_crc32c(&b[pos + 12..pos + 12 + len]);
            b[pos + 12 + len..pos + 16 + len].copy_from_slice(&data_crc.to_le_bytes());
            pos += 16 + len;
        }
    }

    pub(crate) fn seeds() -> Vec<Vec<u8>> {
        vec![
            write_scalars(&[(100, "eval/loss", 3.5), (100, "train/num_input_tokens_seen", 409_600.0), (200, "eval/loss", 3.0), (200, "train/num_input_tokens_seen", 819_200.0)]),
            write_scalars(&[(1, "loss", 2.0), (2, "loss", 1.5), (3, "train/loss", 1.4), (3, "eval_loss", 1.6)]),
            write_scalars(&[(10, "lm_loss", 5.0)]),
        ]
    }

    pub(crate) fn run(inputs: u64) -> crate::fuzz::Outcome {
        let c = Campaign { name: "tensorboard records", seeds: seeds(), dictionary: TEXT_DICTIONARY, fixup: Some(&fix_records) };
        let options = [LogOptions::default(), LogOptions { tokens_per_step: Some(1024.0), metric: Some("loss".into()), ..Default::default() }];
        c.run(inputs, 11, |bytes| {
            let mut accepted = false;
            for o in &options {
                if let Ok(log) = parse("events.out.tfevents.fuzz", bytes, o) {
                    for p in log.curves.iter().flat_map(|c| &c.points) {
                        if !(p.tokens.is_finite() && p.tokens > 0.0 && p.loss.is_finite() && p.loss > 0.0) {
                            return Err(format!("checkpoint tokens {} loss {}", p.tokens, p.loss));
                        }
                    }
                    accepted = true;
                }
            }
            Ok(accepted)
        })
    }

    #[test]
    fn event_files_survive_the_fuzzer() {
        assert_clean(&[run(inputs_from_env(3000))]);
    }
}
