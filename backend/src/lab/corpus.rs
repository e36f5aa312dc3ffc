//! Training text: plain text, JSONL with a `text` field, or pre-tokenized `.bin` files (u16
//! little-endian token ids, the nanoGPT layout), split deterministically into train and held-out.
//!
//! The split is by document when there are at least [`MIN_DOCS_FOR_DOC_SPLIT`] documents (every
//! tenth document, in file-name then record order, is held out), so no passage is in both halves;
//! with fewer documents the last tenth of each is held out. Built-in models read bytes: the
//! byte-level tokenizer maps each byte to its own id (vocabulary 256). A Hugging Face parent
//! reads the same text through its own `tokenizer.json` (no special tokens added).

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Documents needed before the split goes by whole documents.
pub const MIN_DOCS_FOR_DOC_SPLIT: usize = 10;

/// A corpus, tokenized and split.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// What it was read from.
    pub source: String,
    /// SHA-256 of the token stream (train then held-out), to key caches.
    pub sha256: String,
    pub train: Vec<u32>,
    pub held_out: Vec<u32>,
    /// One more than the largest token id.
    pub vocab: u32,
    pub documents: usize,
}

/// Why a corpus could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: line {line}: {message}")]
    Line { path: String, line: usize, message: String },
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("corpus {path}: {message}")]
    Corpus { path: String, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CorpusError + '_ {
    move |source| CorpusError::Io { path: path.display().to_string(), source }
}

/// How text becomes token ids.
#[derive(Debug, Clone, Copy)]
pub enum TextTokenizer<'a> {
    /// One id per byte (the built-in parents).
    Bytes,
    /// A Hugging Face tokenizer.
    Hf(&'a tokenizers::Tokenizer),
}

impl TextTokenizer<'_> {
    fn encode(&self, text: &str, path: &str) -> Result<Vec<u32>, CorpusError> {
        match self {
            TextTokenizer::Bytes => Ok(text.bytes().map(u32::from).collect()),
            TextTokenizer::Hf(t) => t
                .encode(text, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| CorpusError::File { path: path.to_string(), message: format!("tokenizing: {e}") }),
        }
    }
}

/// Reads one file into documents of token ids.
fn read_file(path: &Path, tok: TextTokenizer<'_>, docs: &mut Vec<Vec<u32>>) -> Result<(), CorpusError> {
    let name = path.display().to_string();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let bytes = std::fs::read(path).map_err(io(path))?;
    match ext.as_str() {
        "jsonl" => {
            let text = std::str::from_utf8(&bytes).map_err(|e| CorpusError::File { path: name.clone(), message: format!("not UTF-8: {e}") })?;
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let value: serde_json::Value =
                    serde_json::from_str(line).map_err(|e| CorpusError::Line { path: name.clone(), line: i + 1, message: format!("not JSON: {e}") })?;
                let text = value.get("text").and_then(|t| t.as_str()).ok_or_else(|| CorpusError::Line {
                    path: name.clone(),
                    line: i + 1,
                    message: "field `text` is missing or not a string".into(),
                })?;
                docs.push(tok.encode(text, &name)?);
            }
        }
        "bin" => {
            if bytes.len() % 2 != 0 {
                return Err(CorpusError::File { path: name, message: format!("a pre-tokenized .bin holds u16 token ids; {} bytes is odd", bytes.len()) });
            }
            docs.push(bytes.chunks_exact(2).map(|c| u32::from(u16::from_le_bytes([c[0], c[1]]))).collect());
        }
        _ => match tok {
            TextTokenizer::Bytes => docs.push(bytes.into_iter().map(u32::from).collect()),
            TextTokenizer::Hf(_) => {
                let text = String::from_utf8(bytes).map_err(|e| CorpusError::File { path: name.clone(), message: format!("not UTF-8: {e}") })?;
                docs.push(tok.encode(&text, &name)?);
            }
        },
    }
    Ok(())
}

fn corpus_files(path: &Path) -> Result<Vec<PathBuf>, CorpusError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io(path))? {
        let p = entry.map_err(io(path))?.path();
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if p.is_file() && matches!(ext, "txt" | "jsonl" | "bin" | "md") {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(CorpusError::Corpus { path: path.display().to_string(), message: "no .txt, .md, .jsonl or .bin files".into() });
    }
    Ok(files)
}

/// Reads a file or a directory of files as bytes and splits it.
pub fn load(path: &Path) -> Result<Corpus, CorpusError> {
    load_with(path, TextTokenizer::Bytes)
}

/// Reads a file or a directory of files with a tokenizer and splits it.
pub fn load_with(path: &Path, tok: TextTokenizer<'_>) -> Result<Corpus, CorpusError> {
    let mut docs = Vec::new();
    for f in corpus_files(path)? {
        read_file(&f, tok, &mut docs)?;
    }
    docs.retain(|d| !d.is_empty());
    let (mut train, mut held_out) = (Vec::new(), Vec::new());
    if docs.len() >= MIN_DOCS_FOR_DOC_SPLIT {
        for (i, d) in docs.iter().enumerate() {
            if i % 10 == 9 { &mut held_out } else { &mut train }.extend_from_slice(d);
        }
    } else {
        for d in &docs {
            let cut = d.len() - d.len() / 10;
            train.extend_from_slice(&d[..cut]);
            held_out.extend_from_slice(&d[cut..]);
        }
    }
    let mut sha = Sha256::new();
    for t in train.iter().chain(&held_out) {
        sha.update(t.to_le_bytes());
    }
    let vocab = train.iter().chain(&held_out).max().map_or(0, |m| m + 1);
    let corpus = Corpus { source: path.display().to_string(), sha256: format!("{:x}", sha.finalize()), train, held_out, vocab, documents: docs.len() };
    if corpus.train.is_empty() || corpus.held_out.is_empty() {
        return Err(CorpusError::Corpus { path: corpus.source, message: "too little text for a train and a held-out split".into() });
    }
    Ok(corpus)
}

impl Corpus {
    /// Checks the corpus fits a model's vocabulary and context.
    pub fn check(&self, vocab_size: u64, window: usize) -> Result<(), CorpusError> {
        if u64::from(self.vocab) > vocab_size {
            return Err(CorpusError::Corpus {
                path: self.source.clone(),
                message: format!("token id {} exceeds the model's vocabulary of {vocab_size}", self.vocab - 1),
            });
        }
        let shortest = self.train.len().min(self.held_out.len());
        if shortest < window * 4 {
            return Err(CorpusError::Corpus {
                path: self.source.clone(),
                message: format!("the smaller split has {shortest} tokens; at least {} are needed for windows of {window}", window * 4),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_by_document_and_by_tail() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<String> = (0..20).map(|i| format!("{{\"text\": \"document number {i:02}\"}}")).collect();
        std::fs::write(dir.path().join("a.jsonl"), lines.join("\n")).unwrap();
        let c = load(&dir.path().join("a.jsonl")).unwrap();
        assert_eq!(c.documents, 20);
        // Documents 9 and 19 are held out, whole.
        assert_eq!(String::from_utf8(c.held_out.iter().map(|&t| t as u8).collect()).unwrap(), "document number 09document number 19");

        std::fs::write(dir.path().join("b.txt"), "x".repeat(1000)).unwrap();
        let c = load(&dir.path().join("b.txt")).unwrap();
        assert_eq!((c.train.len(), c.held_out.len()), (900, 100));
        assert_eq!(c.vocab, u32::from(b'x') + 1);
    }

    #[test]
    fn bad_files_name_the_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(&p, "{\"text\": \"ok\"}\n{\"body\": \"no\"}\n").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("c.jsonl: line 2") && e.contains("`text`"), "{e}");
        let p = dir.path().join("d.bin");
        std::fs::write(&p, [1u8, 2, 3]).unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("odd"));
        let c = {
            std::fs::write(&p, [1u8, 2, 3, 4].repeat(100)).unwrap();
            load(&p).unwrap()
        };
        assert_eq!(c.train[0], 0x0201);
        assert!(c.check(256, 8).unwrap_err().to_string().contains("exceeds the model's vocabulary"));
    }
}
