//! The Alertmanager configuration, pure: rendering `spec.config` into alertmanager.yaml (with
//! Secret values filled in) and checking any alertmanager.yaml before it is used, the user's
//! from `spec.configSecret` included. A check names the exact place of each problem, e.g.
//! `route.routes[0]: receiver "pager" is not defined in receivers`.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::SecretKeySelector;
use serde_json::{Map, Value, json};

use crate::crd::{AlertmanagerConfiguration, InhibitRule, MuteTimeInterval, Receiver, Route};

/// Top-level keys Alertmanager 0.28 and 0.33 accept (unknown keys make it refuse the file).
const TOP_LEVEL_KEYS: &[&str] = &[
    "global",
    "route",
    "receivers",
    "inhibit_rules",
    "templates",
    "mute_time_intervals",
    "time_intervals",
    "tracing",
];

/// Every Secret key `cfg` reads, in order of appearance.
pub fn secret_refs(cfg: &AlertmanagerConfiguration) -> Vec<SecretKeySelector> {
    receiver_secret_refs(&cfg.receivers)
}

/// Every Secret key `receivers` read, in order of appearance.
pub fn receiver_secret_refs(receivers: &[Receiver]) -> Vec<SecretKeySelector> {
    let mut out = Vec::new();
    for r in receivers {
        out.extend(r.webhook_configs.iter().filter_map(|w| w.url_secret.clone()));
        out.extend(r.email_configs.iter().filter_map(|e| e.auth_password.clone()));
        out.extend(r.slack_configs.iter().map(|s| s.api_url.clone()));
        for p in &r.pagerduty_configs {
            out.extend(p.routing_key.clone());
            out.extend(p.service_key.clone());
        }
    }
    out
}

/// Renders `cfg` as alertmanager.yaml. `secret` answers the value of a Secret key or why it
/// has none. Every problem found is returned, each with its place in `spec.config`.
pub fn render(
    cfg: &AlertmanagerConfiguration,
    secret: &dyn Fn(&SecretKeySelector) -> Result<String, String>,
) -> Result<String, Vec<String>> {
    let mut problems = Vec::new();
    let route = route_value(&cfg.route, "route", &mut problems);
    let receivers: Vec<Value> = cfg
        .receivers
        .iter()
        .enumerate()
        .map(|(i, r)| receiver_value(r, &format!("receivers[{i}]"), secret, &mut problems))
        .collect();
    let mut doc = Map::new();
    doc.insert("route".into(), route);
    doc.insert("receivers".into(), Value::Array(receivers));
    if !cfg.inhibit_rules.is_empty() {
        let rules = cfg.inhibit_rules.iter().map(inhibit_value).collect();
        doc.insert("inhibit_rules".into(), Value::Array(rules));
    }
    for (i, t) in cfg.mute_time_intervals.iter().enumerate() {
        problems.extend(interval_problems(t, &format!("muteTimeIntervals[{i}]")));
    }
    if !cfg.mute_time_intervals.is_empty() {
        let intervals = cfg.mute_time_intervals.iter().map(time_interval_value).collect();
        doc.insert("time_intervals".into(), Value::Array(intervals));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let yaml = serde_yaml_ng::to_string(&Value::Object(doc)).map_err(|e| vec![e.to_string()])?;
    check(&yaml).map_err(|p| p.into_iter().map(|p| spec_names(&p)).collect::<Vec<_>>())?;
    Ok(yaml)
}

/// A problem found in rendered alertmanager.yaml, with the place named as in `spec.config`.
pub(super) fn spec_names(problem: &str) -> String {
    let (place, rest) = problem.split_once(": ").unwrap_or((problem, ""));
    let place = place
        .replace("inhibit_rules", "inhibitRules")
        .replace("source_matchers", "sourceMatchers")
        .replace("target_matchers", "targetMatchers")
        .replace("mute_time_intervals", "muteTimeIntervals")
        .replace("active_time_intervals", "activeTimeIntervals")
        .replace("time_intervals", "muteTimeIntervals");
    if rest.is_empty() {
        place
    } else {
        format!("{place}: {rest}")
    }
}

fn put(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(key.into(), v);
    }
}

fn strings(v: &[String]) -> Option<Value> {
    (!v.is_empty()).then(|| json!(v))
}

pub(super) fn route_value(r: &Route, path: &str, problems: &mut Vec<String>) -> Value {
    let mut m = Map::new();
    put(&mut m, "receiver", r.receiver.clone().map(Value::from));
    put(&mut m, "group_by", strings(&r.group_by));
    put(&mut m, "group_wait", r.group_wait.clone().map(Value::from));
    put(
        &mut m,
        "group_interval",
        r.group_interval.clone().map(Value::from),
    );
    put(
        &mut m,
        "repeat_interval",
        r.repeat_interval.clone().map(Value::from),
    );
    put(&mut m, "matchers", strings(&r.matchers));
    if r.r#continue {
        m.insert("continue".into(), Value::Bool(true));
    }
    put(&mut m, "mute_time_intervals", strings(&r.mute_time_intervals));
    put(&mut m, "active_time_intervals", strings(&r.active_time_intervals));
    let children: Vec<Value> = r
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, child)| {
            let at = format!("{path}.routes[{i}]");
            match serde_json::from_value::<Route>(child.clone()) {
                Ok(child) => Some(route_value(&child, &at, problems)),
                Err(e) => {
                    problems.push(format!("{at}: not a route: {e}"));
                    None
                }
            }
        })
        .collect();
    if !children.is_empty() {
        m.insert("routes".into(), Value::Array(children));
    }
    Value::Object(m)
}

pub(super) fn receiver_value(
    r: &Receiver,
    path: &str,
    secret: &dyn Fn(&SecretKeySelector) -> Result<String, String>,
    problems: &mut Vec<String>,
) -> Value {
    let from_secret = |sel: &SecretKeySelector, at: String, problems: &mut Vec<String>| -> Value {
        match secret(sel) {
            Ok(v) => Value::from(v),
            Err(why) => {
                problems.push(format!("{at}: {why}"));
                Value::Null
            }
        }
    };
    let mut m = Map::new();
    m.insert("name".into(), Value::from(r.name.clone()));
    let mut webhooks = Vec::new();
    for (i, w) in r.webhook_configs.iter().enumerate() {
        let at = format!("{path}.webhookConfigs[{i}]");
        let url = match (&w.url, &w.url_secret) {
            (Some(u), None) if !u.is_empty() => Value::from(u.clone()),
            (None, Some(sel)) => from_secret(sel, format!("{at}.urlSecret"), problems),
            _ => {
                problems.push(format!("{at}: set exactly one of url and urlSecret"));
                Value::Null
            }
        };
        let mut c = Map::new();
        c.insert("url".into(), url);
        put(&mut c, "send_resolved", w.send_resolved.map(Value::from));
        put(&mut c, "max_alerts", w.max_alerts.map(Value::from));
        webhooks.push(Value::Object(c));
    }
    let mut emails = Vec::new();
    for (i, e) in r.email_configs.iter().enumerate() {
        let mut c = Map::new();
        c.insert("to".into(), Value::from(e.to.clone()));
        c.insert("from".into(), Value::from(e.from.clone()));
        c.insert("smarthost".into(), Value::from(e.smarthost.clone()));
        put(&mut c, "auth_username", e.auth_username.clone().map(Value::from));
        if let Some(sel) = &e.auth_password {
            let v = from_secret(sel, format!("{path}.emailConfigs[{i}].authPassword"), problems);
            c.insert("auth_password".into(), v);
        }
        put(&mut c, "require_tls", e.require_tls.map(Value::from));
        put(&mut c, "send_resolved", e.send_resolved.map(Value::from));
        emails.push(Value::Object(c));
    }
    let mut slacks = Vec::new();
    for (i, s) in r.slack_configs.iter().enumerate() {
        let mut c = Map::new();
        let url = from_secret(&s.api_url, format!("{path}.slackConfigs[{i}].apiUrl"), problems);
        c.insert("api_url".into(), url);
        put(&mut c, "channel", s.channel.clone().map(Value::from));
        put(&mut c, "title", s.title.clone().map(Value::from));
        put(&mut c, "text", s.text.clone().map(Value::from));
        put(&mut c, "send_resolved", s.send_resolved.map(Value::from));
        slacks.push(Value::Object(c));
    }
    let mut pagerduties = Vec::new();
    for (i, p) in r.pagerduty_configs.iter().enumerate() {
        let at = format!("{path}.pagerdutyConfigs[{i}]");
        let mut c = Map::new();
        match (&p.routing_key, &p.service_key) {
            (Some(sel), None) => {
                let v = from_secret(sel, format!("{at}.routingKey"), problems);
                c.insert("routing_key".into(), v);
            }
            (None, Some(sel)) => {
                let v = from_secret(sel, format!("{at}.serviceKey"), problems);
                c.insert("service_key".into(), v);
            }
            _ => problems.push(format!("{at}: set exactly one of routingKey and serviceKey")),
        }
        put(&mut c, "url", p.url.clone().map(Value::from));
        put(&mut c, "severity", p.severity.clone().map(Value::from));
        put(&mut c, "send_resolved", p.send_resolved.map(Value::from));
        pagerduties.push(Value::Object(c));
    }
    for (key, list) in [
        ("webhook_configs", webhooks),
        ("email_configs", emails),
        ("slack_configs", slacks),
        ("pagerduty_configs", pagerduties),
    ] {
        if !list.is_empty() {
            m.insert(key.into(), Value::Array(list));
        }
    }
    Value::Object(m)
}

/// A named set of time intervals in Alertmanager's `time_intervals` form.
pub(super) fn time_interval_value(t: &MuteTimeInterval) -> Value {
    let intervals: Vec<Value> = t
        .time_intervals
        .iter()
        .map(|i| {
            let mut m = Map::new();
            if !i.times.is_empty() {
                let times = i
                    .times
                    .iter()
                    .map(|r| json!({"start_time": r.start_time, "end_time": r.end_time}))
                    .collect();
                m.insert("times".into(), Value::Array(times));
            }
            put(&mut m, "weekdays", strings(&i.weekdays));
            if !i.days_of_month.is_empty() {
                let days = i
                    .days_of_month
                    .iter()
                    .map(|d| Value::from(format!("{}:{}", d.start, d.end)))
                    .collect();
                m.insert("days_of_month".into(), Value::Array(days));
            }
            put(&mut m, "months", strings(&i.months));
            put(&mut m, "years", strings(&i.years));
            Value::Object(m)
        })
        .collect();
    json!({"name": t.name, "time_intervals": intervals})
}

pub(super) fn inhibit_value(r: &InhibitRule) -> Value {
    let mut m = Map::new();
    put(&mut m, "source_matchers", strings(&r.source_matchers));
    put(&mut m, "target_matchers", strings(&r.target_matchers));
    put(&mut m, "equal", strings(&r.equal));
    Value::Object(m)
}

/// Checks an alertmanager.yaml: it parses, has only known top-level keys, receiver names are
/// unique, the root route has a receiver and no matchers, every receiver and time interval a
/// route names exists, and every matcher parses.
pub fn check(yaml: &str) -> Result<(), Vec<String>> {
    let doc: Value = serde_yaml_ng::from_str(yaml).map_err(|e| vec![format!("not valid YAML: {e}")])?;
    let Value::Object(doc) = doc else {
        return Err(vec!["the configuration is not a YAML mapping".into()]);
    };
    let mut problems = Vec::new();
    for key in doc.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            problems.push(format!("{key}: unknown field"));
        }
    }
    let mut receivers = BTreeSet::new();
    for (i, r) in list(doc.get("receivers")).iter().enumerate() {
        match r.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => {
                if !receivers.insert(name.to_string()) {
                    problems.push(format!(
                        "receivers[{i}]: receiver \"{name}\" is defined more than once"
                    ));
                }
            }
            _ => problems.push(format!("receivers[{i}]: name is missing")),
        }
    }
    let mut intervals = BTreeSet::new();
    for key in ["mute_time_intervals", "time_intervals"] {
        for (i, t) in list(doc.get(key)).iter().enumerate() {
            match t.get("name").and_then(Value::as_str) {
                Some(n) if !n.is_empty() => {
                    intervals.insert(n.to_string());
                }
                _ => problems.push(format!("{key}[{i}]: name is missing")),
            }
        }
    }
    match doc.get("route") {
        Some(Value::Object(root)) => {
            match root.get("receiver").and_then(Value::as_str) {
                Some(r) if !r.is_empty() => {}
                _ => problems.push("route: the root route needs a receiver".into()),
            }
            for key in ["matchers", "match", "match_re"] {
                if root.get(key).is_some_and(|v| !is_empty(v)) {
                    problems.push(format!("route.{key}: the root route cannot have matchers"));
                }
            }
            check_route(root, "route", &receivers, &intervals, &mut problems);
        }
        Some(_) => problems.push("route: not a mapping".into()),
        None => problems.push("route: missing; the configuration needs a root route".into()),
    }
    for (i, rule) in list(doc.get("inhibit_rules")).iter().enumerate() {
        let at = format!("inhibit_rules[{i}]");
        for key in ["source_matchers", "target_matchers"] {
            check_matchers(rule.get(key), &format!("{at}.{key}"), &mut problems);
        }
        for key in ["source_match_re", "target_match_re"] {
            check_regex_map(rule.get(key), &format!("{at}.{key}"), &mut problems);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

pub(super) fn list(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_array).cloned().unwrap_or_default()
}

pub(super) fn check_route(
    route: &Map<String, Value>,
    path: &str,
    receivers: &BTreeSet<String>,
    intervals: &BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    if let Some(r) = route.get("receiver").and_then(Value::as_str)
        && !r.is_empty()
        && !receivers.contains(r)
    {
        problems.push(format!("{path}: receiver \"{r}\" is not defined in receivers"));
    }
    check_matchers(route.get("matchers"), &format!("{path}.matchers"), problems);
    check_regex_map(route.get("match_re"), &format!("{path}.match_re"), problems);
    for key in ["mute_time_intervals", "active_time_intervals"] {
        for name in list(route.get(key)).iter().filter_map(Value::as_str) {
            if !intervals.contains(name) {
                problems.push(format!("{path}.{key}: time interval \"{name}\" is not defined"));
            }
        }
    }
    for (i, child) in list(route.get("routes")).iter().enumerate() {
        let at = format!("{path}.routes[{i}]");
        match child {
            Value::Object(c) => check_route(c, &at, receivers, intervals, problems),
            _ => problems.push(format!("{at}: not a mapping")),
        }
    }
}

pub(super) fn check_matchers(v: Option<&Value>, path: &str, problems: &mut Vec<String>) {
    for (i, m) in list(v).iter().enumerate() {
        match m.as_str() {
            Some(s) => {
                if let Err(why) = parse_matcher(s) {
                    problems.push(format!("{path}[{i}]: {s:?}: {why}"));
                }
            }
            None => problems.push(format!("{path}[{i}]: not a string")),
        }
    }
}

fn check_regex_map(v: Option<&Value>, path: &str, problems: &mut Vec<String>) {
    for (k, re) in v.and_then(Value::as_object).into_iter().flatten() {
        let re = re.as_str().unwrap_or_default();
        if let Err(e) = regex::Regex::new(&format!("^(?:{re})$")) {
            problems.push(format!("{path}.{k}: invalid regular expression: {e}"));
        }
    }
}

/// Match operators, longest first so `=~` is not read as `=`.
const OPERATORS: [&str; 4] = ["=~", "!~", "!=", "="];

/// A parsed matcher: label name, operator and value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// `=`, `!=`, `=~` or `!~`.
    pub op: &'static str,
    /// The value (unquoted).
    pub value: String,
}

/// Parses one matcher in Alertmanager's syntax: `name op value`, the value optionally in
/// double quotes, a regular expression for `=~` and `!~`; optionally inside `{}`.
pub fn parse_matcher(input: &str) -> Result<Matcher, String> {
    let mut s = input.trim();
    if let Some(inner) = s.strip_prefix('{') {
        s = inner
            .strip_suffix('}')
            .ok_or("an opening { without a closing }")?
            .trim();
    }
    let start = s
        .find(['=', '!', '~'])
        .ok_or("no operator (one of =, !=, =~, !~)")?;
    let (name, rest) = s.split_at(start);
    let name = unquote(name.trim())?;
    if name.is_empty() {
        return Err("the label name is empty".into());
    }
    if name.contains(['{', '}', ',']) {
        return Err(format!("invalid label name {name:?}"));
    }
    let op = OPERATORS
        .into_iter()
        .find(|op| rest.starts_with(op))
        .ok_or_else(|| format!("{rest:?} does not start with an operator (=, !=, =~, !~)"))?;
    let value = unquote(rest[op.len()..].trim())?;
    if op.contains('~')
        && let Err(e) = regex::Regex::new(&format!("^(?:{value})$"))
    {
        return Err(format!("invalid regular expression: {e}"));
    }
    Ok(Matcher { name, op, value })
}

/// A double-quoted string with Go escapes, or a bare word.
fn unquote(s: &str) -> Result<String, String> {
    let Some(inner) = s.strip_prefix('"') else {
        if s.contains('"') {
            return Err(format!("unbalanced quotes in {s:?}"));
        }
        return Ok(s.to_string());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or_else(|| format!("unterminated quoted string {s:?}"))?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(c @ ('\\' | '"')) => out.push(c),
                Some(c) => {
                    out.push('\\');
                    out.push(c);
                }
                None => return Err(format!("a trailing backslash in {s:?}")),
            },
            '"' => return Err(format!("an unescaped quote inside {s:?}")),
            c => out.push(c),
        }
    }
    Ok(out)
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// What Alertmanager would refuse in a time interval that the CRD schema cannot express: a
/// range whose start is after its end, a zero day of the month, a time range that is empty.
pub fn interval_problems(t: &MuteTimeInterval, path: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let minutes = |s: &str| -> Option<u32> {
        let (h, m) = s.split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 24 && m < 60 && (h < 24 || m == 0)).then_some(h * 60 + m)
    };
    let position = |names: &[&str], offset: usize, s: &str| -> Option<usize> {
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| i + offset)
            .or_else(|| s.parse().ok())
    };
    for (j, ti) in t.time_intervals.iter().enumerate() {
        let at = format!("{path}.timeIntervals[{j}]");
        for (k, r) in ti.times.iter().enumerate() {
            match (minutes(&r.start_time), minutes(&r.end_time)) {
                (Some(s), Some(e)) if s < e => {}
                (Some(_), Some(_)) => {
                    problems.push(format!("{at}.times[{k}]: startTime must be before endTime"))
                }
                _ => problems.push(format!(
                    "{at}.times[{k}]: times must be HH:MM from 00:00 to 24:00"
                )),
            }
        }
        for (key, values, names, offset) in [
            ("weekdays", &ti.weekdays, &WEEKDAYS[..], 0),
            ("months", &ti.months, &MONTHS[..], 1),
            ("years", &ti.years, &[][..], 0),
        ] {
            for (k, v) in values.iter().enumerate() {
                let (a, b) = v.split_once(':').unwrap_or((v, v));
                match (position(names, offset, a), position(names, offset, b)) {
                    (Some(a), Some(b)) if a <= b => {}
                    (Some(_), Some(_)) => {
                        problems.push(format!("{at}.{key}[{k}]: {v:?}: the start is after the end"))
                    }
                    _ => problems.push(format!("{at}.{key}[{k}]: {v:?} is not valid")),
                }
            }
        }
        for (k, d) in ti.days_of_month.iter().enumerate() {
            let ok = d.start != 0
                && d.end != 0
                && (-31..=31).contains(&d.start)
                && (-31..=31).contains(&d.end)
                && (d.start.signum() != d.end.signum() || d.start <= d.end)
                && !(d.start < 0 && d.end > 0);
            if !ok {
                problems.push(format!(
                    "{at}.daysOfMonth[{k}]: {}:{} is not a valid range (1 to 31 or -31 to -1, start before end)",
                    d.start, d.end
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests;
