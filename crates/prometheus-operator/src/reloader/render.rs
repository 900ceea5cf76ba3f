//! Rendering the config: gunzip, `$(VAR)` expansion from the environment, and an atomic
//! write where Prometheus reads it.

use std::collections::{BTreeSet, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tracing::{debug, error, info, warn};

use super::http::ReloaderMetrics;

/// Largest config accepted after gunzip. The Secret holding it is capped at 1 MiB, so this
/// only guards against a corrupt or hostile file filling memory.
const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;

/// The result of [`expand_env`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    /// The text with every known `$(VAR)` replaced.
    pub text: String,
    /// Names referenced as `$(NAME)` that `lookup` did not know; left as written.
    pub unknown: BTreeSet<String>,
}

/// Length of the variable name starting at `start` when it is followed by `)`.
fn reference_name(bytes: &[u8], start: usize) -> Option<usize> {
    let first = *bytes.get(start)?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let len = bytes[start..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count();
    (bytes.get(start + len) == Some(&b')')).then_some(len)
}

/// Expands Kubernetes-style `$(NAME)` references (NAME: letters, digits and `_`, not starting
/// with a digit). `$$(NAME)` is an escape for a literal `$(NAME)`; every other `$` is kept, so
/// Prometheus' own `$1` and `${1}` pass through untouched.
pub fn expand_env(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Expanded {
    let bytes = input.as_bytes();
    let mut text = String::with_capacity(input.len());
    let mut unknown = BTreeSet::new();
    let mut copied = 0;
    let mut i = 0;
    // Indices only ever land on ASCII `$`, `(` and `)`, so every slice is on a char boundary.
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'$')
            && bytes.get(i + 2) == Some(&b'(')
            && let Some(len) = reference_name(bytes, i + 3)
        {
            // Drop one `$` and copy the reference literally.
            text.push_str(&input[copied..i]);
            let end = i + 3 + len + 1;
            text.push_str(&input[i + 1..end]);
            copied = end;
            i = end;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'(')
            && let Some(len) = reference_name(bytes, i + 2)
        {
            let name = &input[i + 2..i + 2 + len];
            let end = i + 2 + len + 1;
            text.push_str(&input[copied..i]);
            match lookup(name) {
                Some(value) => text.push_str(&value),
                None => {
                    text.push_str(&input[i..end]);
                    unknown.insert(name.to_string());
                }
            }
            copied = end;
            i = end;
            continue;
        }
        i += 1;
    }
    text.push_str(&input[copied..]);
    Expanded { text, unknown }
}

/// The config text from the file's bytes: gunzipped when the name ends in `.gz`.
pub fn decode_config(path: &Path, raw: &[u8]) -> anyhow::Result<String> {
    let gzipped = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".gz"));
    let bytes = if gzipped {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw)
            .take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut out)
            .with_context(|| format!("cannot gunzip {}", path.display()))?;
        if out.len() as u64 > MAX_CONFIG_BYTES {
            anyhow::bail!(
                "{} is larger than {MAX_CONFIG_BYTES} bytes once gunzipped",
                path.display()
            );
        }
        out
    } else {
        raw.to_vec()
    };
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))
}

/// Gzips a config the way [`decode_config`] expects it (for the controller that writes the
/// Secret, and for tests).
pub fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data)?;
    encoder.finish()
}

pub(super) fn hash_of(value: &impl Hash) -> u64 {
    // SipHash with fixed keys: stable within the process, which is all change detection needs.
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Writes `data` to `path` through a temporary file in the same directory and a rename, so
/// Prometheus never reads a half-written config.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".to_string());
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The value of `$(name)`: from `env`, except that a missing `SHARD` is shard 0. A pod
/// without `SHARD` belongs to a Prometheus that had one shard, whose StatefulSet became
/// shard 0: until the pod is replaced with `SHARD` set, it keeps shard 0's targets instead
/// of none.
pub fn lookup(name: &str, env: impl Fn(&str) -> Option<String>) -> Option<String> {
    env(name).or_else(|| (name == crate::config::SHARD_ENV).then(|| "0".to_string()))
}

/// Reads, expands and writes the config; remembers what it already warned about.
pub(super) struct Renderer {
    input: PathBuf,
    output: Option<PathBuf>,
    warned_unknown: HashSet<String>,
    last_error: Option<String>,
}

impl Renderer {
    /// Renders `input` into `output` (or only hashes it, without `output`).
    pub(super) fn new(input: PathBuf, output: Option<PathBuf>) -> Self {
        Renderer {
            input,
            output,
            warned_unknown: HashSet::new(),
            last_error: None,
        }
    }

    /// Renders the config and writes it when it changed; returns a hash of the rendered text.
    pub(super) fn render(&mut self, metrics: &ReloaderMetrics) -> anyhow::Result<u64> {
        let raw = std::fs::read(&self.input)
            .with_context(|| format!("cannot read --config-file {}", self.input.display()))?;
        let text = decode_config(&self.input, &raw)?;
        let expanded = expand_env(&text, |name| lookup(name, |n| std::env::var(n).ok()));
        for name in expanded.unknown {
            if self.warned_unknown.insert(name.clone()) {
                warn!(variable = %name, "the config references $({name}), which is not in the environment; left as written");
            }
        }
        if let Some(out) = &self.output {
            let current = std::fs::read(out).ok();
            if current.as_deref() != Some(expanded.text.as_bytes()) {
                write_atomic(out, expanded.text.as_bytes())
                    .with_context(|| format!("cannot write --config-envsubst-file {}", out.display()))?;
                metrics.config_writes.inc();
                info!(path = %out.display(), bytes = expanded.text.len(), "wrote the rendered config");
            }
        }
        Ok(hash_of(&expanded.text))
    }

    /// [`Renderer::render`], logging a failure once per distinct error.
    pub(super) fn poll(&mut self, metrics: &ReloaderMetrics) -> Option<u64> {
        match self.render(metrics) {
            Ok(digest) => {
                if self.last_error.take().is_some() {
                    info!("the config renders again");
                }
                Some(digest)
            }
            Err(e) => {
                metrics.config_errors.inc();
                let msg = format!("{e:#}");
                if self.last_error.as_deref() != Some(msg.as_str()) {
                    error!(error = %msg, "cannot render the config; keeping the last rendered one");
                } else {
                    debug!(error = %msg, "config still cannot be rendered");
                }
                self.last_error = Some(msg);
                None
            }
        }
    }
}
