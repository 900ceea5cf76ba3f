//! The Alertmanager configuration generator against the real `amtool check-config` of both
//! supported Alertmanager lines (0.28 and 0.33): every golden configuration passes, and the
//! configurations our check refuses are refused by amtool too (so the operator never writes
//! a file Alertmanager would not load, and does not refuse for reasons of its own).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::bins::{self, Release};
use prometheus_operator::alertmanager::config::check;

/// `amtool` of each supported release; a missing one fails the test.
fn amtools() -> Vec<(Release, PathBuf)> {
    [Release::Old, Release::Current]
        .into_iter()
        .map(|r| {
            let am = bins::alertmanager(r).unwrap_or_else(|e| panic!("{e:#}"));
            let amtool = am.with_file_name("amtool");
            assert!(
                amtool.is_file(),
                "{} not found: run `make test-deps` first",
                amtool.display()
            );
            (r, amtool)
        })
        .collect()
}

fn amtool_check(amtool: &Path, yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alertmanager.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(amtool)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn golden_configs_pass_amtool_of_both_lines() {
    let dir = bins::repo_root().join("crates/prometheus-operator/testdata/alertmanager/config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "golden configs missing in {}", dir.display());
    for (release, amtool) in amtools() {
        for f in &files {
            let yaml = std::fs::read_to_string(f).unwrap();
            assert_eq!(check(&yaml), Ok(()), "{}", f.display());
            let (ok, text) = amtool_check(&amtool, &yaml);
            assert!(ok, "{release:?} amtool refused {}:\n{text}", f.display());
        }
    }
}

#[test]
fn what_we_refuse_amtool_refuses() {
    let refused = [
        (
            "missing receiver",
            "route: {receiver: a, routes: [{receiver: b}]}\nreceivers: [{name: a}]\n",
        ),
        (
            "root without receiver",
            "route: {group_by: [x]}\nreceivers: [{name: a}]\n",
        ),
        (
            "root with matchers",
            "route: {receiver: a, matchers: ['x=y']}\nreceivers: [{name: a}]\n",
        ),
        (
            "bad matcher",
            "route: {receiver: a, routes: [{receiver: a, matchers: ['severity']}]}\nreceivers: [{name: a}]\n",
        ),
        (
            "bad regex",
            "route: {receiver: a, routes: [{receiver: a, matchers: ['x=~\"(\"']}]}\nreceivers: [{name: a}]\n",
        ),
        (
            "duplicate receiver",
            "route: {receiver: a}\nreceivers: [{name: a}, {name: a}]\n",
        ),
        (
            "unknown interval",
            "route: {receiver: a, routes: [{receiver: a, mute_time_intervals: [n]}]}\nreceivers: [{name: a}]\n",
        ),
        (
            "unknown field",
            "route: {receiver: a}\nreceivers: [{name: a}]\nroutes: []\n",
        ),
        (
            "bad inhibit matcher",
            "route: {receiver: a}\nreceivers: [{name: a}]\ninhibit_rules: [{source_matchers: ['=x']}]\n",
        ),
    ];
    for (release, amtool) in amtools() {
        for (what, yaml) in refused {
            assert!(check(yaml).is_err(), "{what}: our check accepted it");
            let (ok, text) = amtool_check(&amtool, yaml);
            assert!(!ok, "{what}: {release:?} amtool accepted it:\n{text}");
        }
    }
}

/// The time intervals the merge refuses (`interval_problems`, which the CRD schema cannot
/// express) are refused by amtool of both lines too, and the ones it lets through pass, so a
/// team's AlertmanagerConfig is neither refused for reasons of our own nor let through to
/// break the merged file.
#[test]
fn time_interval_checks_agree_with_amtool() {
    use prometheus_operator::alertmanager::config::interval_problems;
    use prometheus_operator::crd::MuteTimeInterval;
    // (what, the interval as in an AlertmanagerConfig, the same in alertmanager.yaml, valid)
    let cases = [
        (
            "times in order",
            r#"{"times": [{"startTime": "09:00", "endTime": "17:00"}]}"#,
            "{times: [{start_time: '09:00', end_time: '17:00'}]}",
            true,
        ),
        (
            "whole day",
            r#"{"times": [{"startTime": "00:00", "endTime": "24:00"}]}"#,
            "{times: [{start_time: '00:00', end_time: '24:00'}]}",
            true,
        ),
        (
            "times reversed",
            r#"{"times": [{"startTime": "10:00", "endTime": "09:00"}]}"#,
            "{times: [{start_time: '10:00', end_time: '09:00'}]}",
            false,
        ),
        (
            "weekdays",
            r#"{"weekdays": ["monday:friday", "sunday"]}"#,
            "{weekdays: ['monday:friday', 'sunday']}",
            true,
        ),
        (
            "weekdays reversed",
            r#"{"weekdays": ["friday:monday"]}"#,
            "{weekdays: ['friday:monday']}",
            false,
        ),
        (
            "days from both ends",
            r#"{"daysOfMonth": [{"start": 1, "end": -1}, {"start": -3, "end": -1}]}"#,
            "{days_of_month: ['1:-1', '-3:-1']}",
            true,
        ),
        (
            "from a day to days before the end",
            r#"{"daysOfMonth": [{"start": 5, "end": -1}]}"#,
            "{days_of_month: ['5:-1']}",
            true,
        ),
        (
            "from the end to a day",
            r#"{"daysOfMonth": [{"start": -1, "end": 5}]}"#,
            "{days_of_month: ['-1:5']}",
            false,
        ),
        (
            "day zero",
            r#"{"daysOfMonth": [{"start": 0, "end": 3}]}"#,
            "{days_of_month: ['0:3']}",
            false,
        ),
        (
            "days reversed",
            r#"{"daysOfMonth": [{"start": 5, "end": 2}]}"#,
            "{days_of_month: ['5:2']}",
            false,
        ),
        (
            "negative days reversed",
            r#"{"daysOfMonth": [{"start": -1, "end": -3}]}"#,
            "{days_of_month: ['-1:-3']}",
            false,
        ),
        (
            "months",
            r#"{"months": ["january:march", "12"]}"#,
            "{months: ['january:march', '12']}",
            true,
        ),
        (
            "months reversed",
            r#"{"months": ["march:january"]}"#,
            "{months: ['march:january']}",
            false,
        ),
        (
            "years",
            r#"{"years": ["2026:2030"]}"#,
            "{years: ['2026:2030']}",
            true,
        ),
        (
            "years reversed",
            r#"{"years": ["2030:2026"]}"#,
            "{years: ['2030:2026']}",
            false,
        ),
    ];
    let tools = amtools();
    for (what, ours, yaml, valid) in cases {
        let interval: MuteTimeInterval =
            serde_json::from_str(&format!(r#"{{"name": "t", "timeIntervals": [{ours}]}}"#)).unwrap();
        let problems = interval_problems(&interval, "t");
        assert_eq!(problems.is_empty(), valid, "{what}: {problems:?}");
        let file = format!(
            "route: {{receiver: a, routes: [{{receiver: a, mute_time_intervals: [t]}}]}}\nreceivers: [{{name: a}}]\ntime_intervals: [{{name: t, time_intervals: [{yaml}]}}]\n"
        );
        for (release, amtool) in &tools {
            let (ok, text) = amtool_check(amtool, &file);
            assert_eq!(ok, valid, "{what}: {release:?} amtool:\n{text}\n{file}");
        }
    }
}
