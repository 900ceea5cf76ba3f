//! PromQL checks for rule expressions, and the namespace-label enforcement.
//!
//! Expressions are parsed with `promql-parser`, then only the language both Prometheus 2.53 and
//! 3.x understand is let through: the stable functions and aggregations (no experimental ones
//! such as `limitk` or `mad_over_time`, no `holt_winters`, which 3.x removed), no `or` inside
//! selectors, legacy label names, and regexes Go compiles the same way. The rule file then gets
//! the *canonical* text printed back from the syntax tree — what Prometheus' UI shows anyway —
//! so syntax only one parser accepts (such as `[300]` for `[5m]`) never reaches Prometheus; the
//! printed text must parse back to the same tree or the rule is refused.

use std::panic::{AssertUnwindSafe, catch_unwind};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr, LabelModifier, VectorMatchCardinality, VectorSelector};

use super::names::{is_label_name, is_metric_name};
use super::regex_compat::check_matcher_regex;

/// Functions that exist, unflagged, in Prometheus 2.53 and 3.x alike.
const FUNCTIONS: [&str; 72] = [
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Aggregation operators of both versions (`limitk` and `limit_ratio` are experimental in 3.x).
const AGGREGATIONS: [&str; 12] = [
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
];

/// Bounds that keep every recursive walk over the syntax tree (ours and the parser's) shallow.
const MAX_NESTING: usize = 64;
const MAX_OPERATORS: usize = 512;

/// Checks `expr` and returns the canonical text to write into the rule file. With `enforce` =
/// `Some((label, namespace))`, every selector gets `label="namespace"` (replacing any matcher on
/// that label), as upstream does with prom-label-proxy.
pub(crate) fn check(expr: &str, enforce: Option<(&str, &str)>) -> Result<String, String> {
    if expr.trim().is_empty() {
        return Err("expression is empty".into());
    }
    check_complexity(expr)?;
    let mut ast = parse(expr)?;
    walk(&mut ast, enforce)?;
    let printed = catch_unwind(AssertUnwindSafe(|| ast.to_string()))
        .map_err(|_| "expression cannot be printed back".to_string())?;
    // Go's PromQL lexer reads U+FFFD as a decoding error ("invalid UTF-8 rune").
    if printed.contains('\u{FFFD}') {
        return Err("the character U+FFFD is not accepted by Prometheus' PromQL parser".into());
    }
    match parse(&printed) {
        Ok(again) if again == ast => Ok(printed),
        _ => Err(format!(
            "expression cannot be written back faithfully (it prints as {printed:?})"
        )),
    }
}

/// Checks a series selector as `/federate` takes it in `match[]` (a bare vector selector:
/// no range, offset or `@`) and returns its canonical text.
pub(crate) fn series_selector(selector: &str) -> Result<String, String> {
    let printed = check(selector, None)?;
    match parse(&printed)? {
        Expr::VectorSelector(v) if v.offset.is_none() && v.at.is_none() => Ok(printed),
        _ => Err("is not a series selector such as {job=\"node\"} or up".into()),
    }
}

fn parse(expr: &str) -> Result<Expr, String> {
    match catch_unwind(|| parser::parse(expr)) {
        Ok(Ok(ast)) => Ok(ast),
        Ok(Err(e)) => Err(e.lines().next().unwrap_or("invalid expression").to_string()),
        Err(_) => Err("expression could not be parsed".into()),
    }
}

/// A rough lexical pass: bracket depth and operator count outside string literals.
fn check_complexity(expr: &str) -> Result<(), String> {
    let (mut depth, mut max_depth, mut ops) = (0usize, 0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if c == '\\' && q != '`' {
                    chars.next();
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' | '`' => quote = Some(c),
                '(' | '[' | '{' => {
                    depth += 1;
                    max_depth = max_depth.max(depth);
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                '+' | '-' | '*' | '/' | '%' | '^' | '<' | '>' | '=' | '!' => ops += 1,
                _ => {}
            },
        }
    }
    // Word operators (and, or, unless, atan2) chain as deep as symbols do.
    ops += expr
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| matches!(*w, "and" | "or" | "unless" | "atan2"))
        .count();
    if max_depth > MAX_NESTING {
        return Err(format!("expression nests deeper than {MAX_NESTING} levels"));
    }
    if ops > MAX_OPERATORS {
        return Err(format!("expression has more than {MAX_OPERATORS} operators"));
    }
    Ok(())
}

fn labels_ok(labels: &[String], what: &str) -> Result<(), String> {
    match labels.iter().find(|l| !is_label_name(l)) {
        Some(l) => Err(format!("{what} label {l:?} is not a valid label name")),
        None => Ok(()),
    }
}

fn walk(expr: &mut Expr, enforce: Option<(&str, &str)>) -> Result<(), String> {
    match expr {
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if !AGGREGATIONS.contains(&op.as_str()) {
                return Err(format!(
                    "aggregation {op} is not supported by every Prometheus version"
                ));
            }
            if let Some(m) = &a.modifier {
                let (LabelModifier::Include(l) | LabelModifier::Exclude(l)) = m;
                labels_ok(&l.labels, "grouping")?;
            }
            if let Some(p) = &mut a.param {
                walk(p, enforce)?;
            }
            walk(&mut a.expr, enforce)
        }
        Expr::Unary(u) => walk(&mut u.expr, enforce),
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier {
                if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                    return Err("fill modifiers are not supported by Prometheus".into());
                }
                if let Some(LabelModifier::Include(l) | LabelModifier::Exclude(l)) = &m.matching {
                    labels_ok(&l.labels, "matching")?;
                }
                if let VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) = &m.card {
                    labels_ok(&l.labels, "group")?;
                }
            }
            walk(&mut b.lhs, enforce)?;
            walk(&mut b.rhs, enforce)
        }
        Expr::Paren(p) => walk(&mut p.expr, enforce),
        Expr::Subquery(s) => walk(&mut s.expr, enforce),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::VectorSelector(vs) => selector(vs, enforce),
        Expr::MatrixSelector(ms) => selector(&mut ms.vs, enforce),
        Expr::Call(c) => {
            if !FUNCTIONS.contains(&c.func.name) {
                return Err(format!(
                    "function {} is not supported by every Prometheus version",
                    c.func.name
                ));
            }
            c.args.args.iter_mut().try_for_each(|a| walk(a, enforce))
        }
        Expr::Extension(_) => Err("unsupported expression".into()),
    }
}

fn selector(vs: &mut VectorSelector, enforce: Option<(&str, &str)>) -> Result<(), String> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err("`or` inside a selector is not supported by Prometheus".into());
    }
    if let Some(name) = &vs.name
        && !is_metric_name(name)
    {
        return Err(format!("metric name {name:?} is not a valid metric name"));
    }
    for m in &vs.matchers.matchers {
        if !is_label_name(&m.name) {
            return Err(format!("label {:?} is not a valid label name", m.name));
        }
        if let MatchOp::Re(_) | MatchOp::NotRe(_) = m.op {
            check_matcher_regex(&m.value).map_err(|e| format!("invalid regex {:?}: {e}", m.value))?;
        }
    }
    if let Some((label, ns)) = enforce {
        vs.matchers.matchers.retain(|m| m.name != label);
        vs.matchers.matchers.push(Matcher::new(MatchOp::Equal, label, ns));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_expressions_canonically() {
        assert_eq!(check("rate(foo[5m])", None).as_deref(), Ok("rate(foo[5m])"));
        assert_eq!(check("rate(foo[300])", None).as_deref(), Ok("rate(foo[5m])"));
        assert_eq!(
            check("sum(rate(x[5m])) by (job) > 0", None).as_deref(),
            Ok("sum by (job) (rate(x[5m])) > 0")
        );
        assert!(check("histogram_quantile(0.9, sum by (le) (rate(b_bucket[5m])))", None).is_ok());
        assert!(check("up{job=~\"a|b\"} == 0", None).is_ok());
    }

    #[test]
    fn rejects_what_some_prometheus_rejects() {
        for bad in [
            "",
            "rate(foo)",
            "foo{a=\"b\" or c=\"d\"}",
            "limitk(2, foo)",
            "mad_over_time(foo[5m])",
            "double_exponential_smoothing(foo[5m], 0.5, 0.5)",
            "holt_winters(foo[5m], 0.5, 0.5)",
            "info(foo)",
            "first_over_time(foo[5m])",
            "foo{a=~\"(?x)a\"}",
            "foo{\"a.b\"=\"x\"}",
            "1 == 1",
            "foo{",
        ] {
            assert!(check(bad, None).is_err(), "{bad}");
        }
        let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(check(&deep, None).is_err());
        let long = vec!["a"; 1000].join(" + ");
        assert!(check(&long, None).is_err());
    }

    #[test]
    fn enforces_namespace_label() {
        assert_eq!(
            check(
                "sum(rate(x{namespace=\"other\",a=\"b\"}[5m])) / on() group_left y",
                Some(("namespace", "team-a"))
            )
            .as_deref(),
            Ok(
                "sum(rate(x{a=\"b\",namespace=\"team-a\"}[5m])) / on () group_left () y{namespace=\"team-a\"}"
            )
        );
    }
}
