//! A tiny ordered YAML tree and its writer.
//!
//! Prometheus reads its configuration with Go's YAML 1.1 parser and rule files with a YAML 1.2
//! one, so the writer only produces what both read the same way: plain scalars for strings that
//! cannot be mistaken for anything else (no booleans such as `on`, no numbers, no timestamps),
//! double-quoted strings with escapes for everything else, and literal blocks for multi-line
//! text. Field order is the order of insertion, so the output is deterministic.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

/// A YAML value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    Str(Cow<'static, str>),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Seq(Vec<Node>),
    Map(Vec<(Cow<'static, str>, Node)>),
    /// A subtree used in many places (the same relabeling in every job), written as if it were
    /// inline; sharing it saves building and freeing thousands of copies.
    Shared(Arc<Node>),
}

impl Node {
    /// An empty mapping to push fields onto.
    pub(crate) fn map() -> Node {
        Node::Map(Vec::new())
    }

    /// Adds a field; a no-op on anything but a mapping.
    pub(crate) fn push(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Node>) {
        if let Node::Map(entries) = self {
            entries.push((key.into(), value.into()));
        }
    }

    /// Builder form of [`Node::push`].
    pub(crate) fn with(mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Node>) -> Node {
        self.push(key, value);
        self
    }

    /// A sequence of strings.
    pub(crate) fn strs<I, S>(items: I) -> Node
    where
        I: IntoIterator<Item = S>,
        S: Into<Cow<'static, str>>,
    {
        Node::Seq(items.into_iter().map(|s| Node::Str(s.into())).collect())
    }

    /// This node behind an `Arc`, to be cloned cheaply.
    pub(crate) fn shared(self) -> Node {
        match self {
            Node::Shared(_) => self,
            other => Node::Shared(Arc::new(other)),
        }
    }

    /// The node itself, looking through [`Node::Shared`].
    fn get(&self) -> &Node {
        let mut node = self;
        while let Node::Shared(inner) = node {
            node = inner;
        }
        node
    }

    /// Renders the node as a YAML document.
    pub(crate) fn to_yaml(&self) -> String {
        let mut out = String::with_capacity(4096);
        match self.get() {
            Node::Map(entries) if !entries.is_empty() => write_map(&mut out, entries, 0, false),
            Node::Seq(items) if !items.is_empty() => write_seq(&mut out, items, 0),
            other => {
                write_inline(&mut out, other, 0);
                out.push('\n');
            }
        }
        out
    }
}

impl From<&'static str> for Node {
    fn from(s: &'static str) -> Node {
        Node::Str(Cow::Borrowed(s))
    }
}

impl From<String> for Node {
    fn from(s: String) -> Node {
        Node::Str(Cow::Owned(s))
    }
}

impl From<Cow<'static, str>> for Node {
    fn from(s: Cow<'static, str>) -> Node {
        Node::Str(s)
    }
}

impl From<bool> for Node {
    fn from(b: bool) -> Node {
        Node::Bool(b)
    }
}

impl From<u64> for Node {
    fn from(n: u64) -> Node {
        Node::UInt(n)
    }
}

impl From<i64> for Node {
    fn from(n: i64) -> Node {
        Node::Int(n)
    }
}

impl From<Vec<Node>> for Node {
    fn from(items: Vec<Node>) -> Node {
        Node::Seq(items)
    }
}

fn indent(out: &mut String, n: usize) {
    const SPACES: &str = "                                                                ";
    let mut n = n;
    while n > 0 {
        let k = n.min(SPACES.len());
        out.push_str(&SPACES[..k]);
        n -= k;
    }
}

/// Whether the node is written on the same line as its key or dash.
fn is_inline(node: &Node) -> bool {
    match node.get() {
        Node::Seq(items) => items.is_empty(),
        Node::Map(entries) => entries.is_empty(),
        _ => true,
    }
}

/// Writes a scalar or an empty collection; `level` is the indentation of the owning line, used
/// by literal blocks.
fn write_inline(out: &mut String, node: &Node, level: usize) {
    match node.get() {
        Node::Str(s) => write_str(out, s, level),
        Node::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Node::UInt(n) => {
            let _ = write!(out, "{n}");
        }
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Seq(_) => out.push_str("[]"),
        Node::Map(_) | Node::Shared(_) => out.push_str("{}"),
    }
}

/// Writes the entries of a mapping at `level`; with `first_inline` the first key continues a
/// line already started (after `- `).
fn write_map(out: &mut String, entries: &[(Cow<'static, str>, Node)], level: usize, first_inline: bool) {
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 || !first_inline {
            indent(out, level);
        }
        write_key(out, key);
        out.push(':');
        if is_inline(value) {
            out.push(' ');
            write_inline(out, value, level);
            out.push('\n');
        } else {
            out.push('\n');
            match value.get() {
                Node::Seq(items) => write_seq(out, items, level),
                Node::Map(inner) => write_map(out, inner, level + 2, false),
                _ => {}
            }
        }
    }
}

fn write_seq(out: &mut String, items: &[Node], level: usize) {
    for item in items {
        indent(out, level);
        out.push('-');
        match item.get() {
            Node::Map(entries) if !entries.is_empty() => {
                out.push(' ');
                write_map(out, entries, level + 2, true);
            }
            Node::Seq(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, level + 2);
            }
            other => {
                out.push(' ');
                write_inline(out, other, level);
                out.push('\n');
            }
        }
    }
}

fn write_key(out: &mut String, key: &str) {
    if is_plain_safe(key) {
        out.push_str(key);
    } else {
        write_quoted(out, key);
    }
}

fn write_str(out: &mut String, s: &str, level: usize) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else if let Some(header) = literal_block_header(s) {
        out.push_str(header);
        for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
            out.push('\n');
            if !line.is_empty() {
                indent(out, level + 2);
                out.push_str(line);
            }
        }
    } else {
        write_quoted(out, s);
    }
}

/// Words YAML 1.1 reads as booleans or null when unquoted.
const RESERVED_WORDS: [&str; 9] = ["y", "yes", "n", "no", "true", "false", "on", "off", "null"];

/// A plain scalar is used only for identifier-like strings: a letter, `_` or `/` first, then
/// letters, digits and `_./:-`, never a trailing `:` and never a YAML 1.1 keyword.
fn is_plain_safe(s: &str) -> bool {
    let bytes = s.as_bytes();
    let Some(&first) = bytes.first() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == b'_' || first == b'/') {
        return false;
    }
    if bytes.last() == Some(&b':') {
        return false;
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b':' | b'-'))
    {
        return false;
    }
    !RESERVED_WORDS.iter().any(|w| w.eq_ignore_ascii_case(s))
}

/// Characters that must be escaped: everything YAML does not count as printable, plus the
/// characters YAML 1.1 treats as line breaks.
fn needs_escape(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}')
}

/// The header of a literal block (`|` or `|-`) when `s` can be written as one without loss.
fn literal_block_header(s: &str) -> Option<&'static str> {
    if !s.contains('\n') || s.starts_with([' ', '\n', '\t']) {
        return None;
    }
    if s.chars().any(|c| c != '\n' && needs_escape(c)) {
        return None;
    }
    // A line holding only spaces would be read as indentation; trailing spaces are fine.
    if s.split('\n')
        .any(|line| !line.is_empty() && line.trim_start_matches(' ').is_empty())
    {
        return None;
    }
    match s.strip_suffix('\n') {
        Some(rest) if rest.ends_with('\n') => None,
        Some(_) => Some("|"),
        None => Some("|-"),
    }
}

fn write_quoted(out: &mut String, s: &str) {
    out.push('"');
    // Copy runs of characters that need no escape in one go.
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escaped = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\t' => "\\t",
            '\r' => "\\r",
            c if needs_escape(c) => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{:04X}", c as u32);
        } else {
            out.push_str(escaped);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(node: &Node) -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(&node.to_yaml()).unwrap()
    }

    #[test]
    fn writes_block_style() {
        let node = Node::map()
            .with("global", Node::map().with("scrape_interval", "30s"))
            .with(
                "scrape_configs",
                vec![
                    Node::map()
                        .with("job_name", "serviceMonitor/a/b/0")
                        .with("honor_labels", false)
                        .with("sample_limit", 10u64)
                        .with("relabel_configs", Node::Seq(vec![])),
                ],
            );
        assert_eq!(
            node.to_yaml(),
            "global:\n  scrape_interval: \"30s\"\nscrape_configs:\n- job_name: serviceMonitor/a/b/0\n  \
             honor_labels: false\n  sample_limit: 10\n  relabel_configs: []\n"
        );
    }

    #[test]
    fn quotes_what_could_be_misread() {
        for s in [
            "yes", "No", "on", "OFF", "null", "~", "1", "1e3", "0x10", "-", "", " a", "a:", "a b", "$(X)",
        ] {
            let node = Node::map().with("k", s.to_string());
            let text = node.to_yaml();
            assert!(text.starts_with("k: \""), "{s:?} was not quoted: {text}");
        }
        assert_eq!(Node::map().with("k", "/metrics").to_yaml(), "k: /metrics\n");
    }

    #[test]
    fn shared_nodes_are_written_inline() {
        let shared = Node::map().with("a", "b").shared();
        let node = Node::map()
            .with("x", vec![shared.clone(), shared])
            .with("z", Node::map().shared());
        assert_eq!(node.to_yaml(), "x:\n- a: b\n- a: b\nz: {}\n");
    }

    #[test]
    fn literal_blocks_for_multiline_text() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let node = Node::map().with("tls_config", Node::map().with("ca", pem));
        let text = node.to_yaml();
        assert!(text.contains("ca: |\n    -----BEGIN"), "{text}");
        let v = roundtrip(&node);
        assert_eq!(v["tls_config"]["ca"].as_str(), Some(pem));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn any_string_survives(key in "\\PC{0,8}|[ -~]{0,8}", value in any::<String>(), v2 in "[ -~\n\t]{0,40}") {
            let key = format!("k{key}");
            let node = Node::map()
                .with(key.clone(), value.clone())
                .with("list", vec![Node::from(v2.clone()), Node::map().with("x", value.clone())]);
            let parsed = roundtrip(&node);
            let map = parsed.as_mapping().unwrap();
            prop_assert_eq!(map.get(key.as_str()).and_then(|v| v.as_str()), Some(value.as_str()));
            prop_assert_eq!(parsed["list"][0].as_str(), Some(v2.as_str()));
            prop_assert_eq!(parsed["list"][1]["x"].as_str(), Some(value.as_str()));
        }
    }
}
