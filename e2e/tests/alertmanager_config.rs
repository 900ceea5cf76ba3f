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
