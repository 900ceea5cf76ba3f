//! etcd backup figures (issue #14): on one ~200 MB database of incompressible values, the
//! throughput of `etcdctl snapshot save` to a file against the engine's `snapshot::take` to a
//! real S3 server (s3s-fs) and to a directory, in the same run; and the resident memory of
//! this process (which calls the engine exactly as the operator does) while the S3 backup
//! runs, against before it. The S3 upload is measured as the operator makes it (parts
//! streamed) and three buffered ways (part size, parts in flight), to show the
//! memory/throughput trade; and the S3 server's own pace, uploading etcdctl's file to it, since
//! on this machine the server shares the two cores with etcd and the engine. Run with `make bench` (release build).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use e2e::bins::Release;
use e2e::harness::proc_status_kib;
use e2e::local_etcd::etcdctl;
use e2e::s3::S3Server;
use etcd_operator::snapshot::{self, Compression, Target, Upload};

/// Size of the database to back up.
const DB_BYTES: usize = 200 * 1024 * 1024;
/// Runs of each way; the best is quoted (the machine is shared, the best is the least
/// disturbed).
const RUNS: usize = 3;

/// Peak resident memory of this process while `work` runs, sampled every 5 ms, in KiB.
async fn peak_rss_during<T>(work: impl std::future::Future<Output = T>) -> (T, u64) {
    let pid = std::process::id();
    let (peak, done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(proc_status_kib(pid, "VmRSS:"), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let out = work.await;
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    (out, peak.load(Ordering::SeqCst))
}

/// The S3 server's own pace: `file` uploaded to it as a multipart upload of 5 MiB parts read
/// from disk, `in_flight` of them uploading while the next is read, through object_store (no
/// etcd involved).
async fn upload_file(s3: &S3Server, file: &std::path::Path, key: &str, in_flight: usize) -> Duration {
    use object_store::{ObjectStoreExt, WriteMultipart};
    // object_store's HTTP client takes rustls' process-wide provider (ring, as the engine).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_access_key_id(S3Server::ACCESS_KEY)
        .with_secret_access_key(S3Server::SECRET_KEY)
        .with_region(S3Server::REGION)
        .with_bucket_name("bench")
        .with_endpoint(&s3.endpoint)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_unsigned_payload(true)
        .build()
        .unwrap();
    let path = object_store::path::Path::from(key);
    let started = Instant::now();
    let mut writer = WriteMultipart::new_with_chunk_size(store.put_multipart(&path).await.unwrap(), 5 << 20);
    let mut f = std::fs::File::open(file).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        writer.put(bytes::Bytes::copy_from_slice(&buf[..n]));
        writer.wait_for_capacity(in_flight).await.unwrap();
    }
    writer.finish().await.unwrap();
    let took = started.elapsed();
    store.delete(&path).await.unwrap();
    took
}

/// CPU seconds (user and system) process `pid` has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) from its closing parenthesis:
    // utime and stime are the 14th and 15th fields overall.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Clock ticks are 1/100 s on Linux.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let filling = Instant::now();
    let member = common::filled_member("bench", dir.path(), DB_BYTES).await;
    let url = member.client_url.clone();
    println!("filled {} MiB in {:?}", DB_BYTES >> 20, filling.elapsed());

    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket("bench").unwrap();
    let s3_target = common::s3_target(&s3, "bench");
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let dir_target = Target::Directory(out_dir.clone());

    // In rising order of memory: the allocator keeps some of what one backup freed, so each
    // peak is taken in the first run and only after smaller ones.
    let configs = [
        Upload::default(),
        Upload {
            part_size: 16 << 20,
            ..Upload::default()
        },
        Upload {
            part_size: 5 << 20,
            parts_in_flight: 0,
            streamed: false,
            ..Upload::default()
        },
        Upload {
            part_size: 5 << 20,
            parts_in_flight: 1,
            streamed: false,
            ..Upload::default()
        },
        Upload {
            part_size: 8 << 20,
            parts_in_flight: 2,
            streamed: false,
            ..Upload::default()
        },
    ];
    let (mut ctl, mut to_dir) = (Duration::MAX, Duration::MAX);
    let (mut server, mut server_seq) = (Duration::MAX, Duration::MAX);
    let mut to_s3 = vec![Duration::MAX; configs.len()];
    let mut peak_kib = vec![0u64; configs.len()];
    // CPU seconds of this process (the engine) and of the S3 server per S3 backup, first run.
    let mut cpu = vec![(0f64, 0f64); configs.len()];
    let (mut size, mut idle_kib) = (0u64, 0u64);
    for run in 0..RUNS {
        let file = out_dir.join(format!("etcdctl-{run}.db"));
        let started = Instant::now();
        let (ok, out) = etcdctl(
            Release::Current,
            &["--endpoints", &url, "snapshot", "save", file.to_str().unwrap()],
        );
        assert!(ok, "{out}");
        ctl = ctl.min(started.elapsed());
        size = std::fs::metadata(&file).unwrap().len();
        server = server.min(upload_file(&s3, &file, &format!("file-{run}"), 2).await);
        server_seq = server_seq.min(upload_file(&s3, &file, &format!("file-seq-{run}"), 0).await);
        std::fs::remove_file(&file).unwrap();

        if run == 0 {
            idle_kib = proc_status_kib(std::process::id(), "VmRSS:");
        }
        for (i, upload) in configs.iter().enumerate() {
            let started = Instant::now();
            let cpu_before = (cpu_seconds(std::process::id()), cpu_seconds(s3.pid()));
            let (outcome, peak) = peak_rss_during(snapshot::take_with(
                &url,
                None,
                &s3_target,
                &format!("s3-{run}-{i}"),
                Compression::None,
                *upload,
            ))
            .await;
            let outcome = outcome.unwrap();
            to_s3[i] = to_s3[i].min(started.elapsed());
            if run == 0 {
                peak_kib[i] = peak;
                cpu[i] = (
                    cpu_seconds(std::process::id()) - cpu_before.0,
                    cpu_seconds(s3.pid()) - cpu_before.1,
                );
            }
            assert_eq!(outcome.size_bytes, size, "the same snapshot");
            snapshot::delete(&s3_target, &outcome.key).await.unwrap();
        }

        let started = Instant::now();
        let outcome = snapshot::take(&url, None, &dir_target, &format!("dir-{run}"), Compression::None)
            .await
            .unwrap();
        to_dir = to_dir.min(started.elapsed());
        snapshot::delete(&dir_target, &outcome.key).await.unwrap();
    }

    println!(
        "snapshot of {:.1} MB, best of {RUNS} runs each:",
        size as f64 / 1e6
    );
    println!(
        "  etcdctl snapshot save (file):  {:>6.2} s  {:>7.1} MB/s",
        ctl.as_secs_f64(),
        mb_per_s(size, ctl)
    );
    println!(
        "  the S3 server alone (etcdctl's file, 5 MiB parts, 2 in flight): {:>6.2} s  {:>7.1} MB/s",
        server.as_secs_f64(),
        mb_per_s(size, server)
    );
    println!(
        "  the S3 server alone (etcdctl's file, 5 MiB parts, one at a time): {:>6.2} s  {:>7.1} MB/s",
        server_seq.as_secs_f64(),
        mb_per_s(size, server_seq)
    );
    for (i, upload) in configs.iter().enumerate() {
        println!(
            "  snapshot::take to S3 (s3s-fs), {} MiB parts {}, {} in flight{}: {:>6.2} s  {:>7.1} MB/s  ratio {:.2}  RSS +{:.1} MiB",
            upload.part_size >> 20,
            if upload.streamed { "streamed" } else { "buffered" },
            upload.parts_in_flight,
            if *upload == Upload::default() {
                " (the operator's)"
            } else {
                ""
            },
            to_s3[i].as_secs_f64(),
            mb_per_s(size, to_s3[i]),
            ctl.as_secs_f64() / to_s3[i].as_secs_f64(),
            peak_kib[i].saturating_sub(idle_kib) as f64 / 1024.0
        );
        println!(
            "      against the S3 server alone: ratio {:.2}; CPU: engine {:.2} s, S3 server {:.2} s",
            server.as_secs_f64() / to_s3[i].as_secs_f64(),
            cpu[i].0,
            cpu[i].1
        );
    }
    println!(
        "  snapshot::take to a directory: {:>6.2} s  {:>7.1} MB/s  ratio {:.2}",
        to_dir.as_secs_f64(),
        mb_per_s(size, to_dir),
        ctl.as_secs_f64() / to_dir.as_secs_f64()
    );
    println!("  idle RSS {:.1} MiB", idle_kib as f64 / 1024.0);
}
