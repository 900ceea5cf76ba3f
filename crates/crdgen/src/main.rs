//! Prints Steward's CustomResourceDefinitions as YAML.
//!
//! Without flags: every CRD of both operators as one multi-document stream on stdout.
//! `--out-dir DIR` writes `<plural>.<group>.yaml` per CRD instead; `--operator` filters.
//! `--compat` prints the upstream `monitoring.coreos.com` CRDs (ServiceMonitor, PodMonitor,
//! PrometheusRule, ScrapeConfig) built from the same types, for clusters that have none.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// Which operator's CRDs to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Operator {
    /// etcd.steward.dev
    Etcd,
    /// monitoring.steward.dev
    Prometheus,
}

/// Prints Steward's CustomResourceDefinitions as YAML.
#[derive(Parser, Debug)]
#[command(name = "crdgen", version)]
struct Args {
    /// Write one `<plural>.<group>.yaml` file per CRD into this directory instead of stdout.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Only this operator's CRDs.
    #[arg(long, value_enum)]
    operator: Option<Operator>,
    /// Print upstream prometheus-operator's `monitoring.coreos.com` CRDs (our schemas,
    /// upstream group and names) instead of ours.
    #[arg(long, conflicts_with = "operator")]
    compat: bool,
}

fn crds(filter: Option<Operator>) -> Vec<CustomResourceDefinition> {
    let mut all = Vec::new();
    if filter.is_none_or(|o| o == Operator::Etcd) {
        all.extend(etcd_operator::crds());
    }
    if filter.is_none_or(|o| o == Operator::Prometheus) {
        all.extend(prometheus_operator::crds());
    }
    all
}

fn to_yaml(crd: &CustomResourceDefinition) -> anyhow::Result<String> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    serde_yaml_ng::to_string(crd).with_context(|| format!("serializing CRD {name}"))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let crds = if args.compat {
        prometheus_operator::crd::compat_crds()
    } else {
        crds(args.operator)
    };
    match args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for crd in &crds {
                let file = dir.join(format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default()));
                std::fs::write(&file, to_yaml(crd)?)
                    .with_context(|| format!("writing {}", file.display()))?;
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            for crd in &crds {
                write!(out, "---\n{}", to_yaml(crd)?)?;
            }
        }
    }
    Ok(())
}
