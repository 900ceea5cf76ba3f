//! User relabelings: validated as Prometheus' `relabel.Config.Validate` does (with the stricter
//! 2.x label-name rules, so the result loads in 2.53 and 3.x alike), then written out.

use std::sync::LazyLock;

use regex::Regex;

use super::names::is_label_name;
use super::regex_compat::check_relabel_regex;
use super::yaml::Node;
use super::{Problem, Reason};
use crate::crd::common::RelabelConfig;

/// Prometheus' `relabelTarget`: label names with `$1`/`${name}` references.
static RELABEL_TARGET: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{[0-9A-Za-z_]+\}|[0-9A-Za-z_]+))+[0-9A-Za-z_]*)+$").ok()
});

fn is_relabel_target(s: &str) -> bool {
    RELABEL_TARGET.as_ref().is_some_and(|re| re.is_match(s))
}

const ACTIONS: [&str; 11] = [
    "replace",
    "keep",
    "drop",
    "keepequal",
    "dropequal",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
];

/// A relabeling built by the generator itself: `action`, `source_labels`, `regex`.
pub(crate) fn filter(action: &'static str, sources: Vec<String>, regex: impl Into<Node>) -> Node {
    Node::map()
        .with("action", action)
        .with("source_labels", Node::strs(sources))
        .with("regex", regex)
}

/// A relabeling copying `source` into `target`.
pub(crate) fn copy(source: &'static str, target: &'static str) -> Node {
    Node::map()
        .with("source_labels", Node::strs([source]))
        .with("target_label", target)
}

/// A relabeling setting `target` to a fixed value.
pub(crate) fn set(target: impl Into<Node>, value: impl Into<Node>) -> Node {
    Node::map()
        .with("target_label", target)
        .with("replacement", value)
}

/// Validates and writes `rc`; `field` names it in errors (e.g. `endpoints[0].relabelings[2]`).
pub(crate) fn relabel(rc: &RelabelConfig, field: &str) -> Result<Node, Problem> {
    let bad = |msg: String| Problem::new(Reason::InvalidRelabeling, format!("{field}: {msg}"));
    let action = rc.action.as_deref().unwrap_or("replace").to_ascii_lowercase();
    let action = ACTIONS.iter().find(|a| **a == action).ok_or_else(|| {
        bad(format!(
            "unknown action {:?}",
            rc.action.as_deref().unwrap_or_default()
        ))
    })?;
    for l in &rc.source_labels {
        if !is_label_name(l) {
            return Err(Problem::new(
                Reason::InvalidLabelName,
                format!("{field}: source label {l:?} is not a valid label name"),
            ));
        }
    }
    // Empty strings mean "unset", as upstream treats them.
    let regex = rc.regex.as_deref().filter(|r| !r.is_empty());
    if let Some(re) = regex {
        check_relabel_regex(re).map_err(|e| bad(format!("invalid regex {re:?}: {e}")))?;
    }
    let target = rc.target_label.as_deref().filter(|t| !t.is_empty());
    let modulus = rc.modulus.filter(|m| *m != 0);
    let separator = rc.separator.as_deref();
    let replacement = rc.replacement.as_deref();
    let default_replacement = replacement.is_none_or(|r| r == "$1");
    let default_separator = separator.is_none_or(|s| s == ";");
    let default_regex = regex.is_none_or(|r| r == "(.*)");

    let needs_target = |target: Option<&str>| -> Result<(), Problem> {
        match target {
            None => Err(bad(format!("action {action} needs targetLabel"))),
            Some(t) if !is_label_name(t) => {
                Err(bad(format!("{t:?} is not a valid targetLabel for {action}")))
            }
            Some(_) => Ok(()),
        }
    };
    match *action {
        "replace" => match target {
            None => return Err(bad("action replace needs targetLabel".into())),
            Some(t) if t.contains('$') && !is_relabel_target(t) => {
                return Err(bad(format!("{t:?} is not a valid targetLabel for replace")));
            }
            Some(t) if !t.contains('$') && !is_label_name(t) => {
                return Err(bad(format!("{t:?} is not a valid targetLabel for replace")));
            }
            Some(_) => {}
        },
        "hashmod" => {
            needs_target(target)?;
            if modulus.is_none() {
                return Err(bad("action hashmod needs a non-zero modulus".into()));
            }
        }
        "lowercase" | "uppercase" => {
            needs_target(target)?;
            if !default_replacement {
                return Err(bad(format!("replacement cannot be set for action {action}")));
            }
        }
        "keepequal" | "dropequal" => {
            needs_target(target)?;
            if !default_regex || modulus.is_some() || !default_separator || !default_replacement {
                return Err(bad(format!(
                    "action {action} takes only sourceLabels and targetLabel"
                )));
            }
        }
        "labelmap" if !is_relabel_target(replacement.unwrap_or("$1")) => {
            return Err(bad(format!(
                "{:?} is not a valid replacement for labelmap",
                replacement.unwrap_or("")
            )));
        }
        "labeldrop" | "labelkeep"
            if !rc.source_labels.is_empty()
                || target.is_some()
                || modulus.is_some()
                || !default_separator
                || !default_replacement =>
        {
            return Err(bad(format!("action {action} takes only a regex")));
        }
        _ => {}
    }

    // Same field order as upstream prometheus-operator.
    let mut node = Node::map();
    if !rc.source_labels.is_empty() {
        node.push("source_labels", Node::strs(rc.source_labels.iter().cloned()));
    }
    if let Some(s) = separator {
        node.push("separator", s.to_string());
    }
    if let Some(t) = target {
        node.push("target_label", t.to_string());
    }
    if let Some(r) = regex {
        node.push("regex", r.to_string());
    }
    if let Some(m) = modulus {
        node.push("modulus", m);
    }
    if let Some(r) = replacement {
        node.push("replacement", r.to_string());
    }
    node.push("action", *action);
    Ok(node)
}

/// Validates and writes a list of relabelings named `field`.
pub(crate) fn relabel_all(list: &[RelabelConfig], field: &str) -> Result<Vec<Node>, Problem> {
    list.iter()
        .enumerate()
        .map(|(i, rc)| relabel(rc, &format!("{field}[{i}]")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(action: &str) -> RelabelConfig {
        RelabelConfig {
            action: Some(action.into()),
            ..Default::default()
        }
    }

    #[test]
    fn validates_like_prometheus() {
        let ok = |r: RelabelConfig| relabel(&r, "r").is_ok();
        assert!(ok(RelabelConfig {
            target_label: Some("a".into()),
            ..rc("Replace")
        }));
        assert!(ok(RelabelConfig {
            target_label: Some("${1}_x".into()),
            ..rc("replace")
        }));
        assert!(!ok(rc("replace")));
        assert!(!ok(rc("explode")));
        assert!(!ok(RelabelConfig {
            target_label: Some("a".into()),
            ..rc("hashmod")
        }));
        assert!(ok(RelabelConfig {
            target_label: Some("a".into()),
            modulus: Some(3),
            ..rc("hashmod")
        }));
        assert!(ok(RelabelConfig {
            regex: Some("tmp_.*".into()),
            ..rc("labeldrop")
        }));
        assert!(!ok(RelabelConfig {
            source_labels: vec!["a".into()],
            ..rc("labeldrop")
        }));
        assert!(!ok(RelabelConfig {
            target_label: Some("b".into()),
            regex: Some("x".into()),
            ..rc("keepequal")
        }));
        assert!(!ok(RelabelConfig {
            source_labels: vec!["a.b".into()],
            ..rc("keep")
        }));
        assert!(!ok(RelabelConfig {
            regex: Some("a{1001}".into()),
            ..rc("keep")
        }));
        assert!(!ok(RelabelConfig {
            replacement: Some("a-b".into()),
            ..rc("labelmap")
        }));
    }
}
