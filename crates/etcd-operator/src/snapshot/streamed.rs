//! An S3 multipart upload whose parts stream to S3 as etcd sends them, instead of being
//! gathered in memory first: what keeps a backup's memory flat and small.
//!
//! S3 needs each part's length before its body: etcd announces the snapshot's size in the
//! stream's first message (`remaining_bytes`) and appends a 32-byte sha256 after it, so the
//! object's length is known from the start and every part can be cut to it. A stream that
//! turns out longer or shorter than announced fails the upload, which is then aborted.
//! Creating, completing and aborting the upload, the part URLs' signatures and the
//! credentials are object_store's; only the part bodies travel through our own request.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::signer::{SignedUrlOptions, Signer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::store::Destination;
use super::{SnapshotError, Upload};

/// Pieces of etcd's stream (32 KiB each) queued for the part being sent; a few are enough
/// to keep the connection busy while the next message arrives.
const QUEUED_PIECES: usize = 4;
/// S3 takes at most this many parts per upload.
const MAX_PARTS: u64 = 10_000;
/// How long a part's signed URL is valid: the part starts right away.
const URL_VALIDITY: Duration = Duration::from_secs(3600);
/// The longest one part's request may take.
const PART_TIMEOUT: Duration = Duration::from_secs(600);

/// The part a request is sending now.
struct Part {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    /// Bytes of this part not sent yet.
    left: u64,
    task: JoinHandle<Result<PartId, String>>,
}

/// One multipart upload of an object of a known length.
pub(crate) struct StreamedUpload {
    s3: Arc<AmazonS3>,
    http: reqwest_object_store::Client,
    path: ObjectPath,
    id: String,
    /// Length of the whole object.
    total: u64,
    part_size: u64,
    parts_in_flight: usize,
    /// How long S3 may take no data of a part, or not answer a part whose body is sent.
    stall: Duration,
    /// Bytes handed to parts so far.
    written: u64,
    current: Option<Part>,
    /// Parts whose body is sent, waiting for S3's answer, oldest first.
    sent: VecDeque<JoinHandle<Result<PartId, String>>>,
    /// Parts S3 has, in order.
    done: Vec<PartId>,
    /// `s3://bucket`, for messages.
    root: String,
}

impl StreamedUpload {
    /// Starts the upload of `total` bytes to `path`: parts of `upload.part_size` bytes (more
    /// when the object would need over 10,000 parts), `upload.parts_in_flight` of them
    /// waiting for S3's answer while the next one is sent.
    pub(crate) async fn begin(
        dest: &Destination,
        s3: Arc<AmazonS3>,
        path: ObjectPath,
        total: u64,
        upload: &Upload,
    ) -> Result<Self, SnapshotError> {
        let http = reqwest_object_store::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(PART_TIMEOUT)
            .build()
            .map_err(|e| SnapshotError::StorageFailed {
                location: dest.root().to_string(),
                message: format!("HTTP client: {}", super::store::chain(&e)),
            })?;
        let id = s3.create_multipart(&path).await.map_err(|e| dest.classify(e))?;
        let part_size = (upload.part_size as u64).max(total.div_ceil(MAX_PARTS)).max(1);
        Ok(StreamedUpload {
            s3,
            http,
            path,
            id,
            total,
            part_size,
            parts_in_flight: upload.parts_in_flight,
            stall: upload.stall_timeout,
            written: 0,
            current: None,
            sent: VecDeque::new(),
            done: Vec::new(),
            root: dest.root().to_string(),
        })
    }

    /// Sends `bytes` on, waiting while S3 is slower than etcd.
    pub(crate) async fn write(&mut self, mut bytes: Bytes) -> Result<(), SnapshotError> {
        if self.written + bytes.len() as u64 > self.total {
            return Err(self.failed(format!(
                "the snapshot stream is longer than the {} bytes etcd announced",
                self.total
            )));
        }
        while !bytes.is_empty() {
            if self.current.is_none() {
                self.current = Some(self.start_part().await?);
            }
            let Some(part) = self.current.as_mut() else {
                continue;
            };
            let piece = bytes.split_to((part.left as usize).min(bytes.len()));
            part.left -= piece.len() as u64;
            self.written += piece.len() as u64;
            // The request may end before its body does (S3 refused the part, a timeout): its
            // answer comes first, and a body the server stopped reading must not hang us.
            let part_complete = part.left == 0;
            let mut task_ended = false;
            let failure = tokio::select! {
                biased;
                ended = &mut part.task => {
                    task_ended = true;
                    Some(match ended {
                        Ok(Err(message)) => message,
                        Ok(Ok(_)) => "part upload: the server answered before the part was sent".to_string(),
                        Err(e) => format!("part upload: {e}"),
                    })
                }
                sent = tokio::time::timeout(self.stall, part.tx.send(Ok(piece))) => match sent {
                    Ok(Ok(())) => None,
                    // The request is over: its task says why (below, on the next call).
                    Ok(Err(_)) => Some(String::new()),
                    Err(_) => Some(format!(
                        "part upload: the server took no data for {}s",
                        self.stall.as_secs_f64()
                    )),
                },
            };
            if task_ended {
                // Finished: its handle must not be polled again (nor waited for on abort).
                self.current = None;
            }
            if let Some(mut message) = failure {
                if message.is_empty()
                    && let Some(mut part) = self.current.take()
                {
                    message = match tokio::time::timeout(self.stall, &mut part.task).await {
                        Ok(Ok(Err(m))) => m,
                        Ok(Ok(Ok(_))) => {
                            "part upload: the server answered before the part was sent".to_string()
                        }
                        Ok(Err(e)) => format!("part upload: {e}"),
                        Err(_) => {
                            part.task.abort();
                            "part upload: the request ended without an answer".to_string()
                        }
                    };
                }
                return Err(self.failed(message));
            }
            if part_complete && let Some(part) = self.current.take() {
                self.sent.push_back(part.task);
                while self.sent.len() > self.parts_in_flight {
                    self.settle_oldest().await?;
                }
            }
        }
        Ok(())
    }

    /// Waits for every part and completes the upload: only now does the object exist. On
    /// failure the upload is aborted, so no parts are left behind.
    pub(crate) async fn finish(mut self) -> Result<(), SnapshotError> {
        match self.complete().await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    async fn complete(&mut self) -> Result<(), SnapshotError> {
        if self.written != self.total || self.current.is_some() {
            return Err(self.failed(format!(
                "the snapshot stream ended after {} of the {} bytes etcd announced",
                self.written, self.total
            )));
        }
        while !self.sent.is_empty() {
            self.settle_oldest().await?;
        }
        let parts = std::mem::take(&mut self.done);
        self.s3
            .complete_multipart(&self.path, &self.id, parts)
            .await
            .map(|_| ())
            .map_err(|e| self.failed(super::store::chain(&e)))
    }

    /// Stops every part, waits until they have stopped (a part sent already may still land
    /// meanwhile), then aborts the upload. Best effort: an upload never completed is no
    /// object either way.
    pub(crate) async fn abort(mut self) {
        let tasks: Vec<_> = self
            .current
            .take()
            .map(|p| p.task)
            .into_iter()
            .chain(self.sent.drain(..))
            .collect();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = tokio::time::timeout(self.stall, task).await;
        }
        let _ = self.s3.abort_multipart(&self.path, &self.id).await;
    }

    async fn start_part(&mut self) -> Result<Part, SnapshotError> {
        let number = self.done.len() + self.sent.len() + 1;
        let len = self.part_size.min(self.total - self.written);
        let options = SignedUrlOptions::new().with_query([
            ("partNumber".to_string(), number.to_string()),
            ("uploadId".to_string(), self.id.clone()),
        ]);
        let url = self
            .s3
            .signed_url_opts(http::Method::PUT, &self.path, URL_VALIDITY, &options)
            .await
            .map_err(|e| self.failed(super::store::chain(&e)))?;
        let (tx, rx) = mpsc::channel(QUEUED_PIECES);
        let task = tokio::spawn(put_part(self.http.clone(), url, len, rx));
        Ok(Part { tx, left: len, task })
    }

    /// Waits for S3's answer to the oldest part sent. Its body left long ago: a server that
    /// does not answer within the stall timeout is not going to.
    async fn settle_oldest(&mut self) -> Result<(), SnapshotError> {
        let Some(mut task) = self.sent.pop_front() else {
            return Ok(());
        };
        match tokio::time::timeout(self.stall, &mut task).await {
            Ok(Ok(Ok(part))) => {
                self.done.push(part);
                Ok(())
            }
            Ok(Ok(Err(message))) => Err(self.failed(message)),
            Ok(Err(e)) => Err(self.failed(format!("part upload: {e}"))),
            Err(_) => {
                task.abort();
                Err(self.failed(format!(
                    "part upload: the server did not answer a sent part within {}s",
                    self.stall.as_secs_f64()
                )))
            }
        }
    }

    fn failed(&self, message: String) -> SnapshotError {
        super::store::classify_message(&self.root, message)
    }
}

/// Sends one part of `len` bytes, its body the pieces arriving on `rx`; returns its ETag.
async fn put_part(
    http: reqwest_object_store::Client,
    url: reqwest_object_store::Url,
    len: u64,
    mut rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> Result<PartId, String> {
    let body = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let response = http
        .put(url)
        .header(http::header::CONTENT_LENGTH, len)
        .body(reqwest_object_store::Body::wrap_stream(body))
        .send()
        .await
        // The URL carries a signature that grants the upload of this part: keep it out of
        // messages (they end up in status and Events).
        .map_err(|e| format!("part upload: {}", super::store::chain(&e.without_url())))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(format!(
            "part upload: {status}: {}",
            text.replace(['\n', '\r'], " ")
        ));
    }
    let etag = response
        .headers()
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| "part upload: the answer has no ETag".to_string())?;
    Ok(PartId {
        content_id: etag.to_string(),
    })
}
