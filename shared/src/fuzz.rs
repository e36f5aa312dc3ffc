//! A seeded fuzzer for the parsers that take outside bytes, on stable Rust: structured mutations
//! of real samples (bit flips, inserted and deleted ranges, spliced samples, a dictionary of the
//! values parsers trip on), each input run under `catch_unwind` while a watchdog looks for hangs.
//!
//! Every crate's parsers have a short campaign in their tests; `bash bench/fuzz.sh` runs the same
//! campaigns with a million inputs each (`P2LAW_FUZZ_INPUTS`). A target returns `Err(message)`
//! when a parser *accepted* an input but produced something invalid (a non-finite loss, say): that
//! is a finding like a panic.

use rand::{Rng, SeedableRng};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Inputs one campaign runs: `P2LAW_FUZZ_INPUTS` when set, else `default`.
pub fn inputs_from_env(default: u64) -> u64 {
    std::env::var("P2LAW_FUZZ_INPUTS").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

thread_local! {
    /// Set while a fuzz target runs on this thread: its panics are counted, not printed.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Where the last quiet panic happened.
    static WHERE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Installs (once) a panic hook that stays silent for fuzz targets and defers to the previous
/// hook everywhere else.
fn quiet_hook() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(std::cell::Cell::get) {
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
                WHERE.with(|w| *w.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// An input running longer than this is a hang: the campaign prints it and aborts the process.
pub const HANG: Duration = Duration::from_secs(10);

/// Inputs never grow past this.
pub const MAX_INPUT: usize = 1 << 20;

/// Values that parsers of text formats trip on: non-finite and huge numbers, signs, the
/// characters that delimit CSV and JSON, a byte-order mark, invalid UTF-8.
pub const TEXT_DICTIONARY: &[&[u8]] = &[
    b"NaN", b"nan", b"inf", b"-inf", b"Infinity", b"-Infinity", b"1e308", b"1e309", b"-1e308", b"1e-400", b"-1", b"-0", b"0", b"0.0",
    b"18446744073709551616", b"9223372036854775808", b"-9223372036854775809", b"4294967296", b"1.7976931348623157e308",
    b"\"", b"\"\"", b",", b",,", b"\n", b"\r\n", b"\r", b"{", b"}", b"[", b"]", b":", b"null", b"true", b"false", b"\\", b"\\u0000",
    b"\xef\xbb\xbf", b"\xff\xfe", b"\xc3\x28", b"\xf0\x9f\x98\x80", b" - ", b"__MIN", b"__MAX", b"step", b"tokens", b"loss", b"eval_loss",
    b"log_history", b"num_input_tokens_seen", b"\"loss\": NaN", b"\"step\": -1", b"1e18", b"0x10",
];

/// What one campaign found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub inputs: u64,
    /// Inputs the parser accepted (the rest it refused with an error, as it should bad input).
    pub accepted: u64,
    pub panics: u64,
    /// Accepted inputs whose result broke an invariant.
    pub invalid: u64,
    /// The first failing input and what happened.
    pub first_failure: Option<(Vec<u8>, String)>,
    pub slowest: Duration,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn failures(&self) -> u64 {
        self.panics + self.invalid
    }

    /// One line: inputs, accepted, panics, invalid results, slowest input, rate.
    pub fn summary(&self) -> String {
        format!(
            "fuzz {:<22} {:>9} inputs  {:>8} accepted  {} panics  {} invalid  slowest {:.1} ms  {:.0} inputs/s",
            self.name,
            self.inputs,
            self.accepted,
            self.panics,
            self.invalid,
            self.slowest.as_secs_f64() * 1e3,
            self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
        )
    }
}

/// A campaign: the samples to mutate, the dictionary, and an optional fix-up that repairs what
/// a format checks first (checksums, length fields) on some inputs so mutations reach deeper.
#[allow(missing_debug_implementations)]
pub struct Campaign<'a> {
    pub name: &'a str,
    pub seeds: Vec<Vec<u8>>,
    pub dictionary: &'a [&'a [u8]],
    pub fixup: Option<&'a (dyn Fn(&mut Vec<u8>) + Sync)>,
}

impl Campaign<'_> {
    /// Runs `inputs` inputs through `target` (`Ok(true)`: accepted, `Ok(false)`: refused,
    /// `Err`: accepted but invalid), seeded by `seed`.
    pub fn run(&self, inputs: u64, seed: u64, target: impl Fn(&[u8]) -> Result<bool, String>) -> Outcome {
        assert!(!self.seeds.is_empty(), "campaign {} has no seeds", self.name);
        quiet_hook();
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        let started_ms = Arc::new(AtomicU64::new(u64::MAX));
        let done = Arc::new(AtomicBool::new(false));
        let current: Arc<std::sync::Mutex<Vec<u8>>> = Arc::default();
        let origin = Instant::now();
        let watchdog = {
            let (started_ms, done, current, name) = (started_ms.clone(), done.clone(), current.clone(), self.name.to_string());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    let s = started_ms.load(Ordering::Relaxed);
                    if s != u64::MAX && origin.elapsed().as_millis() as u64 > s + HANG.as_millis() as u64 {
                        let input = current.lock().map(|v| v.clone()).unwrap_or_default();
                        eprintln!("fuzz {name}: an input has run for over {} s (a hang): {}", HANG.as_secs(), show(&input));
                        std::process::abort();
                    }
                }
            })
        };
        let mut out = Outcome { name: self.name.to_string(), inputs, accepted: 0, panics: 0, invalid: 0, first_failure: None, slowest: Duration::ZERO, elapsed: Duration::ZERO };
        for _ in 0..inputs {
            let mut input = self.mutate(&mut rng);
            if let Some(f) = self.fixup.filter(|_| rng.random_bool(0.5)) {
                f(&mut input);
            }
            if let Ok(mut c) = current.lock() {
                c.clone_from(&input);
            }
            let t = Instant::now();
            started_ms.store(origin.elapsed().as_millis() as u64, Ordering::Relaxed);
            QUIET.with(|q| q.set(true));
            let result = catch_unwind(AssertUnwindSafe(|| target(&input)));
            QUIET.with(|q| q.set(false));
            started_ms.store(u64::MAX, Ordering::Relaxed);
            out.slowest = out.slowest.max(t.elapsed());
            let failure = match result {
                Ok(Ok(true)) => {
                    out.accepted += 1;
                    None
                }
                Ok(Ok(false)) => None,
                Ok(Err(why)) => {
                    out.accepted += 1;
                    out.invalid += 1;
                    Some(format!("accepted but invalid: {why}"))
                }
                Err(panic) => {
                    out.panics += 1;
                    let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                    Some(format!("panicked at {}: {message}", WHERE.with(|w| w.borrow().clone())))
                }
            };
            if let (Some(why), None) = (failure, &out.first_failure) {
                out.first_failure = Some((input, why));
            }
        }
        done.store(true, Ordering::Relaxed);
        let _ = watchdog.join();
        out.elapsed = origin.elapsed();
        out
    }

    /// One input: a seed (or two spliced) under 1 to 8 stacked mutations; now and then random
    /// bytes alone.
    fn mutate(&self, rng: &mut rand_pcg::Pcg64) -> Vec<u8> {
        if rng.random_bool(0.02) {
            let n = rng.random_range(0..256);
            return (0..n).map(|_| rng.random()).collect();
        }
        let mut v = self.seeds[rng.random_range(0..self.seeds.len())].clone();
        // Mostly one mutation (most inputs stay close to valid and reach deep), sometimes up to 8.
        let stack = 1 + rng.random::<u32>().trailing_zeros().min(7);
        for _ in 0..stack {
            let len = v.len();
            let at = |rng: &mut rand_pcg::Pcg64| if len == 0 { 0 } else { rng.random_range(0..=len) };
            match rng.random_range(0..10) {
                0 if len > 0 => {
                    let i = rng.random_range(0..len);
                    v[i] ^= 1 << rng.random_range(0..8);
                }
                1 if len > 0 => {
                    let i = rng.random_range(0..len);
                    v[i] = rng.random();
                }
                2 => {
                    let i = at(rng);
                    let bytes: Vec<u8> = (0..rng.random_range(1..=16)).map(|_| rng.random()).collect();
                    v.splice(i..i, bytes);
                }
                3 if len > 0 => {
                    let i = rng.random_range(0..len);
                    let j = (i + rng.random_range(1..=len.min(64))).min(len);
                    v.drain(i..j);
                }
                4 if len > 0 => {
                    let i = rng.random_range(0..len);
                    let j = (i + rng.random_range(1..=len.min(256))).min(len);
                    let chunk = v[i..j].to_vec();
                    let k = at(rng);
                    v.splice(k..k, chunk);
                }
                5 | 6 if !self.dictionary.is_empty() => {
                    let word = self.dictionary[rng.random_range(0..self.dictionary.len())];
                    let i = at(rng);
                    if rng.random_bool(0.5) && i < len {
                        // Overwrite a token-sized stretch: a number becomes NaN, a quote a comma.
                        let j = (i + rng.random_range(1..=8)).min(len);
                        v.splice(i..j, word.iter().copied());
                    } else {
                        v.splice(i..i, word.iter().copied());
                    }
                }
                7 if len > 0 => v.truncate(rng.random_range(0..len)),
                8 => {
                    let other = &self.seeds[rng.random_range(0..self.seeds.len())];
                    let cut = at(rng).min(v.len());
                    let from = if other.is_empty() { 0 } else { rng.random_range(0..other.len()) };
                    v.truncate(cut);
                    v.extend_from_slice(&other[from..]);
                }
                _ => {
                    // Repeat a line or record-sized stretch many times (long inputs, deep nesting).
                    if len > 0 {
                        let i = rng.random_range(0..len);
                        let j = (i + rng.random_range(1..=len.min(32))).min(len);
                        let chunk = v[i..j].to_vec();
                        for _ in 0..rng.random_range(2..64) {
                            v.splice(i..i, chunk.iter().copied());
                        }
                    }
                }
            }
            v.truncate(MAX_INPUT);
        }
        v
    }
}

/// An input for a message: its length and start, escaped.
pub fn show(input: &[u8]) -> String {
    let head: String = input.iter().take(400).flat_map(|b| std::ascii::escape_default(*b)).map(char::from).collect();
    format!("{} bytes: b\"{head}{}\"", input.len(), if input.len() > 400 { "..." } else { "" })
}

/// Fails with the first finding of any campaign, after printing every summary.
pub fn assert_clean(outcomes: &[Outcome]) {
    for o in outcomes {
        eprintln!("{}", o.summary());
    }
    for o in outcomes {
        if let Some((input, why)) = &o.first_failure {
            panic!("fuzz {}: {} failures; first: {why} on {}", o.name, o.failures(), show(input));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_parser_is_caught_and_named() {
        let c = Campaign { name: "toy", seeds: vec![b"12,34\n".to_vec()], dictionary: TEXT_DICTIONARY, fixup: None };
        // A toy parser that indexes past the end when a line has one field.
        let out = c.run(300, 1, |b| {
            let text = String::from_utf8_lossy(b);
            let line = text.lines().next().unwrap_or_default();
            let fields: Vec<&str> = line.split(',').collect();
            Ok(!fields[1].is_empty())
        });
        assert!(out.panics > 0, "{}", out.summary());
        assert!(out.first_failure.as_ref().is_some_and(|(_, why)| why.contains("index out of bounds")));
        // The same campaign twice is the same inputs.
        let again = c.run(2000, 1, |b| Ok(b.len() % 2 == 0));
        let once = c.run(2000, 1, |b| Ok(b.len() % 2 == 0));
        assert_eq!((again.accepted, again.inputs), (once.accepted, once.inputs));
    }
}
