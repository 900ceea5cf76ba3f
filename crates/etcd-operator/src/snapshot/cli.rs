//! The `backup-run` and `restore-fetch` subcommands: the engine run by a Pod.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{Compression, S3Credentials, S3Location, SnapshotError, Target};
use crate::etcd::ClientTls;

/// Arguments of `etcd-operator backup-run`.
#[derive(clap::Args, Debug)]
pub struct BackupRunArgs {
    /// Client URL of the member to take the snapshot from.
    #[arg(long)]
    pub endpoint: String,
    /// CA certificate (PEM) that signed the member's serving certificate.
    #[arg(long, requires_all = ["cert", "client_key"])]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(long, requires_all = ["cacert", "client_key"])]
    pub cert: Option<PathBuf>,
    /// Client key (PEM). (`--key` names the stored object.)
    #[arg(long, requires_all = ["cacert", "cert"])]
    pub client_key: Option<PathBuf>,
    /// Directory to store the snapshot in (a mounted volume); created when missing.
    #[arg(long)]
    pub directory: PathBuf,
    /// Key (file name below the directory); the compression's extension is set on it.
    #[arg(long)]
    pub key: String,
    /// none, gzip or zstd.
    #[arg(long, default_value = "none")]
    pub compression: Compression,
    /// A file that gets the JSON result line too (a pod's termination message path, so the
    /// operator reads the result from the pod's status).
    #[arg(long)]
    pub result_file: Option<PathBuf>,
}

/// Arguments of `etcd-operator backup-delete`.
#[derive(clap::Args, Debug)]
pub struct BackupDeleteArgs {
    /// Directory holding the snapshot (a mounted volume).
    #[arg(long)]
    pub directory: PathBuf,
    /// Key of the snapshot below the directory.
    #[arg(long)]
    pub key: String,
    /// A file that gets the JSON result line too (a pod's termination message path).
    #[arg(long)]
    pub result_file: Option<PathBuf>,
}

/// Arguments of `etcd-operator restore-fetch`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["s3_bucket", "directory"])))]
pub struct RestoreFetchArgs {
    /// S3 bucket holding the snapshot (credentials from AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, else the AWS environment).
    #[arg(long)]
    pub s3_bucket: Option<String>,
    /// Key prefix inside the bucket.
    #[arg(long, default_value = "", requires = "s3_bucket")]
    pub s3_prefix: String,
    /// Endpoint URL of an S3-compatible service.
    #[arg(long, requires = "s3_bucket")]
    pub s3_endpoint: Option<String>,
    /// Region.
    #[arg(long, requires = "s3_bucket")]
    pub s3_region: Option<String>,
    /// Path-style requests (most self-hosted services).
    #[arg(long, requires = "s3_bucket")]
    pub s3_force_path_style: bool,
    /// Directory holding the snapshot instead of S3.
    #[arg(long)]
    pub directory: Option<PathBuf>,
    /// Key of the snapshot (relative to the prefix or directory).
    #[arg(long)]
    pub key: String,
    /// Expected hex sha256 of the stored object.
    #[arg(long)]
    pub sha256: Option<String>,
    /// File to write the (decompressed) snapshot to.
    #[arg(long)]
    pub out: PathBuf,
    /// Directory removed with everything in it and created again before the fetch (a
    /// restore's staging directory, left over by an earlier run).
    #[arg(long)]
    pub clear: Option<PathBuf>,
}

/// Arguments of `etcd-operator restore-finish`.
#[derive(clap::Args, Debug)]
pub struct RestoreFinishArgs {
    /// The restore's staging directory, removed at the end.
    #[arg(long)]
    pub staging: PathBuf,
    /// The data directory the snapshot was restored into (inside the staging directory).
    #[arg(long)]
    pub restored: PathBuf,
    /// etcd's data directory.
    #[arg(long)]
    pub data_dir: PathBuf,
}

/// What `restore-finish` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    /// The restored data became the data directory.
    Moved,
    /// The data directory already held a member (an earlier run got this far): kept, and the
    /// staged copy discarded.
    Kept,
}

/// Moves `restored` to `data_dir` unless `data_dir` already holds a member (`member/`), then
/// removes `staging`. A data directory without a member holds nothing etcd would read and is
/// replaced.
pub fn finish_restore(staging: &Path, restored: &Path, data_dir: &Path) -> std::io::Result<Finished> {
    let done = if data_dir.join("member").exists() {
        Finished::Kept
    } else {
        if !restored.join("member").is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} holds no restored member", restored.display()),
            ));
        }
        if data_dir.exists() {
            std::fs::remove_dir_all(data_dir)?;
        }
        std::fs::rename(restored, data_dir)?;
        Finished::Moved
    };
    if staging.exists() {
        std::fs::remove_dir_all(staging)?;
    }
    Ok(done)
}

/// Runs `restore-finish`.
pub fn restore_finish(args: RestoreFinishArgs) -> ExitCode {
    match finish_restore(&args.staging, &args.restored, &args.data_dir) {
        Ok(Finished::Moved) => {
            eprintln!(
                "restore-finish: restored data moved to {}",
                args.data_dir.display()
            );
            ExitCode::SUCCESS
        }
        Ok(Finished::Kept) => {
            eprintln!(
                "restore-finish: {} already holds a member; kept it and discarded the staged copy",
                args.data_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("restore-finish failed: LocalIoFailed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Removes `dir` and everything in it (when it exists) and creates it again.
fn clear_dir(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)
}

impl RestoreFetchArgs {
    fn target(&self) -> Target {
        match (&self.s3_bucket, &self.directory) {
            (Some(bucket), _) => Target::S3 {
                location: S3Location {
                    bucket: bucket.clone(),
                    prefix: self.s3_prefix.clone(),
                    endpoint: self.s3_endpoint.clone(),
                    region: self.s3_region.clone(),
                    force_path_style: self.s3_force_path_style,
                },
                credentials: env_credentials(),
            },
            (None, dir) => Target::Directory(dir.clone().unwrap_or_default()),
        }
    }
}

/// Static credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
/// `AWS_SESSION_TOKEN` (never flags: secrets stay out of the process list); without a key
/// pair the rest of the AWS environment (web identity, instance metadata) is used.
fn env_credentials() -> Option<S3Credentials> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Some(S3Credentials {
        access_key_id: var("AWS_ACCESS_KEY_ID")?,
        secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
        session_token: var("AWS_SESSION_TOKEN"),
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Runs `restore-fetch`: the snapshot lands at `--out` or the command fails with one line
/// on stderr that starts with the error's reason.
pub fn restore_fetch(args: RestoreFetchArgs) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("restore-fetch failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(dir) = &args.clear
        && let Err(e) = clear_dir(dir)
    {
        eprintln!(
            "restore-fetch failed: LocalIoFailed: clearing {}: {e}",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    let target = args.target();
    match rt.block_on(super::fetch(
        &target,
        &args.key,
        &args.out,
        args.sha256.as_deref(),
    )) {
        Ok(bytes) => {
            eprintln!("restore-fetch: wrote {bytes} bytes to {}", args.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("restore-fetch failed: {}: {e}", e.reason());
            ExitCode::FAILURE
        }
    }
}

fn read_tls(args: &BackupRunArgs) -> Result<Option<ClientTls>, SnapshotError> {
    let (Some(ca), Some(cert), Some(key)) = (&args.cacert, &args.cert, &args.client_key) else {
        return Ok(None);
    };
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).map_err(|source| SnapshotError::LocalIo {
            path: p.clone(),
            source,
        })
    };
    Ok(Some(ClientTls {
        ca: read(ca)?,
        cert: read(cert)?,
        key: read(key)?,
    }))
}

/// Prints the JSON result line on stdout and, when asked, into `file` (best effort: the
/// line on stdout is still there for the logs).
fn report(line: &serde_json::Value, file: Option<&Path>) {
    let text = line.to_string();
    println!("{text}");
    if let Some(path) = file
        && let Err(e) = std::fs::write(path, format!("{text}\n"))
    {
        eprintln!("cannot write the result to {}: {e}", path.display());
    }
}

/// Runs `backup-run`: prints one JSON line on stdout (and into `--result-file`), the
/// [`super::Outcome`] on success or `{"error": {"reason", "message", "retryable"}}` on failure
/// (then exits non-zero, with the message on stderr too).
pub fn backup_run(args: BackupRunArgs) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("backup-run failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = std::fs::create_dir_all(&args.directory)
        .map_err(|source| SnapshotError::LocalIo {
            path: args.directory.clone(),
            source,
        })
        .and_then(|()| read_tls(&args))
        .and_then(|tls| {
            rt.block_on(super::take(
                &args.endpoint,
                tls.as_ref(),
                &Target::Directory(args.directory.clone()),
                &args.key,
                args.compression,
            ))
        });
    let file = args.result_file.as_deref();
    match result {
        Ok(outcome) => {
            report(&serde_json::to_value(&outcome).unwrap_or_default(), file);
            ExitCode::SUCCESS
        }
        Err(e) => {
            report(&serde_json::json!({ "error": e.to_json() }), file);
            eprintln!("backup-run failed: {}: {e}", e.reason());
            ExitCode::FAILURE
        }
    }
}

/// Runs `backup-delete`: removes one stored snapshot (one already gone is no error) and
/// prints `{"deleted": key}` or the error line, as `backup-run` does.
pub fn backup_delete(args: BackupDeleteArgs) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("backup-delete failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let target = Target::Directory(args.directory.clone());
    let file = args.result_file.as_deref();
    match rt.block_on(super::delete(&target, &args.key)) {
        Ok(()) => {
            report(&serde_json::json!({ "deleted": args.key }), file);
            ExitCode::SUCCESS
        }
        Err(e) => {
            report(&serde_json::json!({ "error": e.to_json() }), file);
            eprintln!("backup-delete failed: {}: {e}", e.reason());
            ExitCode::FAILURE
        }
    }
}
