use std::path::Path;

use serde_json::json;

use super::*;
use crate::crd::AlertmanagerConfiguration;

/// Secret values the cases read: `<secret>/<key>` → value; anything else is missing.
fn secrets(sel: &SecretKeySelector) -> Result<String, String> {
    match (sel.name.as_str(), sel.key.as_str()) {
        ("hooks", "url") => Ok("https://hooks.example.com/alert?token=s3cret".into()),
        ("smtp", "password") => Ok("smtp-pass".into()),
        ("slack", "url") => Ok("https://hooks.slack.com/services/T000/B000/XXXX".into()),
        ("pagerduty", "key") => Ok("0123456789abcdef0123456789abcdef".into()),
        (name, key) if name == "smtp" => Err(format!("Secret \"{name}\" has no key \"{key}\"")),
        (name, _) => Err(format!("Secret \"{name}\" not found")),
    }
}

fn hook_receiver() -> serde_json::Value {
    json!({"name": "hook", "webhookConfigs": [{"url": "http://10.0.0.1:8080/hook"}]})
}

fn cfg(v: serde_json::Value) -> AlertmanagerConfiguration {
    serde_json::from_value(v).unwrap()
}

/// The golden cases: each renders to `testdata/alertmanager/config/<name>.yaml`, which the
/// e2e test `alertmanager_config` checks with the real `amtool check-config` of 0.28 and 0.33.
fn cases() -> Vec<(&'static str, AlertmanagerConfiguration)> {
    vec![
        ("default", crate::alertmanager::fetch::default_configuration()),
        (
            "webhook",
            cfg(json!({
                "route": {"receiver": "hook", "groupBy": ["alertname"], "groupWait": "1s",
                          "groupInterval": "1s", "repeatInterval": "1h"},
                "receivers": [{"name": "hook", "webhookConfigs": [
                    {"url": "http://10.0.0.1:8080/hook", "sendResolved": true, "maxAlerts": 10}]}],
            })),
        ),
        (
            "time-intervals",
            cfg(json!({
                "route": {"receiver": "hook", "routes": [
                    {"receiver": "hook", "matchers": ["severity=\"warning\""],
                     "muteTimeIntervals": ["nights"], "activeTimeIntervals": ["workdays"]}]},
                "receivers": [hook_receiver()],
                "muteTimeIntervals": [
                    {"name": "nights", "timeIntervals": [
                        {"times": [{"startTime": "00:00", "endTime": "07:00"}, {"startTime": "22:00", "endTime": "24:00"}]}]},
                    {"name": "workdays", "timeIntervals": [
                        {"weekdays": ["monday:friday"], "daysOfMonth": [{"start": 1, "end": -1}],
                         "months": ["1:12"], "years": ["2026:2099"]}]}
                ]
            })),
        ),
        (
            "full",
            cfg(json!({
                "route": {
                    "receiver": "default", "groupBy": ["alertname", "namespace"],
                    "routes": [
                        {"receiver": "pager", "matchers": ["severity=\"critical\""], "continue": true,
                         "routes": [{"receiver": "chat", "matchers": ["team=~\"db|storage\"", "env!=\"dev\""]}]},
                        {"receiver": "mail", "matchers": ["severity = warning", "{namespace!~\"kube-.*\"}"],
                         "repeatInterval": "12h"},
                        {"matchers": ["alertname=Watchdog"]}
                    ]
                },
                "receivers": [
                    {"name": "default", "webhookConfigs": [{"urlSecret": {"name": "hooks", "key": "url"}}]},
                    {"name": "pager", "pagerdutyConfigs": [
                        {"routingKey": {"name": "pagerduty", "key": "key"}, "severity": "critical"},
                        {"serviceKey": {"name": "pagerduty", "key": "key"}, "url": "https://events.example.com/v2/enqueue"}]},
                    {"name": "chat", "slackConfigs": [
                        {"apiUrl": {"name": "slack", "key": "url"}, "channel": "#alerts", "title": "{{ .CommonLabels.alertname }}", "sendResolved": true}]},
                    {"name": "mail", "emailConfigs": [
                        {"to": "oncall@example.com", "from": "alertmanager@example.com", "smarthost": "smtp.example.com:587",
                         "authUsername": "alertmanager", "authPassword": {"name": "smtp", "key": "password"}, "requireTls": true}]}
                ],
                "inhibitRules": [
                    {"sourceMatchers": ["severity=\"critical\""], "targetMatchers": ["severity=~\"warning|info\""],
                     "equal": ["alertname", "namespace"]}
                ]
            })),
        ),
    ]
}

#[test]
fn golden_configs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/alertmanager/config");
    for (name, c) in cases() {
        let yaml = render(&c, &secrets).unwrap_or_else(|p| panic!("{name}: {p:?}"));
        crate::testing::assert_golden(&dir.join(format!("{name}.yaml")), &yaml);
    }
}

fn problems(c: serde_json::Value) -> Vec<String> {
    render(&cfg(c), &secrets).expect_err("must be refused")
}

fn hook() -> serde_json::Value {
    json!({"name": "hook", "webhookConfigs": [{"url": "http://h/"}]})
}

#[test]
fn a_route_naming_a_missing_receiver_is_refused_with_its_place() {
    let p = problems(json!({
        "route": {"receiver": "hook", "routes": [
            {"receiver": "hook"},
            {"matchers": ["a=b"], "routes": [{"receiver": "pager"}]}]},
        "receivers": [hook()],
    }));
    assert_eq!(
        p,
        ["route.routes[1].routes[0]: receiver \"pager\" is not defined in receivers"]
    );
    let p = problems(json!({"route": {"receiver": "nobody"}, "receivers": [hook()]}));
    assert_eq!(p, ["route: receiver \"nobody\" is not defined in receivers"]);
}

#[test]
fn the_root_route_needs_a_receiver_and_takes_no_matchers() {
    let p = problems(json!({"route": {}, "receivers": [hook()]}));
    assert_eq!(p, ["route: the root route needs a receiver"]);
    let p = problems(json!({"route": {"receiver": "hook", "matchers": ["a=b"]}, "receivers": [hook()]}));
    assert_eq!(p, ["route.matchers: the root route cannot have matchers"]);
}

#[test]
fn matchers_must_parse() {
    let p = problems(json!({
        "route": {"receiver": "hook", "routes": [
            {"matchers": ["severity"]},
            {"matchers": ["a=b", "team=~\"(db\""]},
            {"matchers": ["x=\"open"]}]},
        "receivers": [hook()],
        "inhibitRules": [{"sourceMatchers": ["=b"], "targetMatchers": ["c!~\"[\""]}],
    }));
    assert_eq!(p.len(), 5, "{p:#?}");
    assert_eq!(
        p[0],
        "route.routes[0].matchers[0]: \"severity\": no operator (one of =, !=, =~, !~)"
    );
    assert!(
        p[1].starts_with("route.routes[1].matchers[1]: \"team=~\\\"(db\\\"\": invalid regular expression"),
        "{}",
        p[1]
    );
    assert_eq!(
        p[2],
        "route.routes[2].matchers[0]: \"x=\\\"open\": unterminated quoted string \"\\\"open\""
    );
    assert_eq!(
        p[3],
        "inhibitRules[0].sourceMatchers[0]: \"=b\": the label name is empty"
    );
    assert!(
        p[4].starts_with("inhibitRules[0].targetMatchers[0]: \"c!~\\\"[\\\"\": invalid regular expression")
    );
}

#[test]
fn receivers_are_unique_and_their_secrets_exist() {
    let p = problems(json!({
        "route": {"receiver": "hook"},
        "receivers": [
            hook(), hook(),
            {"name": "s", "slackConfigs": [{"apiUrl": {"name": "absent", "key": "url"}}]},
            {"name": "m", "emailConfigs": [{"to": "a@b", "from": "c@d", "smarthost": "h:25",
                                             "authPassword": {"name": "smtp", "key": "nope"}}]},
            {"name": "w", "webhookConfigs": [{"url": "http://h/", "urlSecret": {"name": "hooks", "key": "url"}}]},
            {"name": "p", "pagerdutyConfigs": [{}]},
        ],
    }));
    assert_eq!(
        p,
        [
            "receivers[2].slackConfigs[0].apiUrl: Secret \"absent\" not found",
            "receivers[3].emailConfigs[0].authPassword: Secret \"smtp\" has no key \"nope\"",
            "receivers[4].webhookConfigs[0]: set exactly one of url and urlSecret",
            "receivers[5].pagerdutyConfigs[0]: set exactly one of routingKey and serviceKey",
        ]
    );
    let p = problems(json!({"route": {"receiver": "hook"}, "receivers": [hook(), hook()]}));
    assert_eq!(p, ["receivers[1]: receiver \"hook\" is defined more than once"]);
}

#[test]
fn inline_time_intervals_are_checked() {
    let p = problems(json!({
        "route": {"receiver": "hook", "routes": [{"receiver": "hook", "muteTimeIntervals": ["never"]}]},
        "receivers": [hook()],
        "muteTimeIntervals": [{"name": "t", "timeIntervals": [{"years": ["2030:2026"]}]}],
    }));
    assert_eq!(
        p,
        ["muteTimeIntervals[0].timeIntervals[0].years[0]: \"2030:2026\": the start is after the end",]
    );
    let p = problems(json!({
        "route": {"receiver": "hook", "routes": [{"receiver": "hook", "muteTimeIntervals": ["never"]}]},
        "receivers": [hook()],
    }));
    assert_eq!(
        p,
        ["route.routes[0].muteTimeIntervals: time interval \"never\" is not defined"]
    );
}

#[test]
fn a_child_route_of_the_wrong_shape_is_refused() {
    let p = problems(
        json!({"route": {"receiver": "hook", "routes": [{"matchers": "a=b"}]}, "receivers": [hook()]}),
    );
    assert_eq!(p.len(), 1);
    assert!(p[0].starts_with("route.routes[0]: not a route: "), "{}", p[0]);
}

#[test]
fn a_users_file_is_checked_too() {
    let ok = "route:\n  receiver: x\n  routes:\n  - receiver: x\n    mute_time_intervals: [night]\nreceivers:\n- name: x\ntime_intervals:\n- name: night\n  time_intervals: []\n";
    assert_eq!(check(ok), Ok(()));
    assert_eq!(
        check("route: [\n"),
        Err(vec![check("route: [\n").unwrap_err()[0].clone()])
    );
    assert!(check("route: [\n").unwrap_err()[0].starts_with("not valid YAML"));
    assert_eq!(
        check("- a\n"),
        Err(vec!["the configuration is not a YAML mapping".into()])
    );
    assert_eq!(
        check("receivers:\n- name: x\n"),
        Err(vec![
            "route: missing; the configuration needs a root route".into()
        ])
    );
    let p = check("route:\n  receiver: x\n  routes:\n  - match_re: {a: '('}\n    active_time_intervals: [day]\nreceivers:\n- name: x\nroutes: []\n")
        .unwrap_err();
    assert_eq!(p.len(), 3, "{p:#?}");
    assert_eq!(p[0], "routes: unknown field");
    assert!(
        p[1].starts_with("route.routes[0].match_re.a: invalid regular expression: "),
        "{}",
        p[1]
    );
    assert_eq!(
        p[2],
        "route.routes[0].active_time_intervals: time interval \"day\" is not defined"
    );
}

#[test]
fn matcher_syntax() {
    let m = parse_matcher("severity=\"critical\"").unwrap();
    assert_eq!(
        (m.name.as_str(), m.op, m.value.as_str()),
        ("severity", "=", "critical")
    );
    let m = parse_matcher(" {team =~ \"a|b\"} ").unwrap();
    assert_eq!((m.name.as_str(), m.op, m.value.as_str()), ("team", "=~", "a|b"));
    assert_eq!(parse_matcher("a!=b").unwrap().op, "!=");
    assert_eq!(parse_matcher("a!~b.*").unwrap().op, "!~");
    assert_eq!(parse_matcher("a=\"say \\\"hi\\\"\"").unwrap().value, "say \"hi\"");
    assert_eq!(parse_matcher("a=").unwrap().value, "");
    assert!(parse_matcher("{a=b").is_err());
    assert!(parse_matcher("a==b").is_err() || parse_matcher("a==b").unwrap().value == "=b");
}
