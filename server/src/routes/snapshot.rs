//! `GET /v1/snapshot`: a consistent `.tar.gz` of the store, streamed while serving.
//!
//! The engine writes the archive into a `std::io::Write` on a blocking thread; that writer
//! hands 64 KiB chunks to the response body through a bounded channel, so the archive is
//! never held in memory whole and a slow client slows the backup down instead of filling
//! memory. If the client goes away the channel closes, the next write fails and the backup
//! stops. If the backup fails half-way the body ends with an error, which aborts the
//! connection: the client sees a broken transfer, never a truncated file that looks whole.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{ApiError, AppState, Problem};

const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the backup thread and the socket.
const CHANNEL_DEPTH: usize = 8;

/// A `Write` that sends what it is given, in chunks, into a channel.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the snapshot's client went away"))
    }
}

impl io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buf()
    }
}

type Backup = JoinHandle<Result<(), jessy_storage::Error>>;

/// Streams a consistent snapshot of `consciousness/` as a gzipped tar archive; restore it with
/// `tar -xzf snapshot.tar.gz -C data/mmap` (see `jessy restore`).
#[utoipa::path(
    get,
    path = "/v1/snapshot",
    tag = "operations",
    responses(
        (status = 200, description = "The archive, streamed", body = super::keys::RawValue, content_type = "application/gzip",
            headers(("Content-Disposition" = String, description = "attachment; filename=\"jessy-snapshot-<unix seconds>.tar.gz\""))),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is closed (`store_closed`)", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "No room for the snapshot's scratch files (`disk_full`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn snapshot(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let store = state.store.clone();
    let backup: Backup = tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter { tx, buf: Vec::with_capacity(CHUNK) };
        store.backup(&mut writer)?;
        io::Write::flush(&mut writer).map_err(|source| jessy_storage::Error::Io {
            op: "stream snapshot",
            path: "snapshot".into(),
            source,
        })
    });

    // Wait for the first chunk before answering, so a backup that fails at once is a proper
    // error status rather than a 200 with a broken body.
    let (first, backup) = match rx.recv().await {
        Some(chunk) => (chunk, Some(backup)),
        None => {
            finished(backup).await?;
            (Bytes::new(), None)
        }
    };

    let rest = stream::unfold((rx, backup), |(mut rx, backup)| async move {
        match rx.recv().await {
            Some(chunk) => Some((Ok(chunk), (rx, backup))),
            None => {
                let backup = backup?;
                match finished(backup).await {
                    Ok(()) => None,
                    Err(e) => {
                        tracing::error!(error = %e.detail, "snapshot failed while streaming");
                        Some((Err(io::Error::other(e.detail)), (rx, None)))
                    }
                }
            }
        }
    });
    let body = stream::once(async move { Ok::<_, io::Error>(first) });
    let body = Body::from_stream(futures_util::StreamExt::chain(body, rest));

    Ok((StatusCode::OK, snapshot_head(), body).into_response())
}

/// The headers of a snapshot's 200: its type and a file name with the time.
fn snapshot_head() -> [(header::HeaderName, HeaderValue); 2] {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"jessy-snapshot-{secs}.tar.gz\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    [(header::CONTENT_TYPE, HeaderValue::from_static("application/gzip")), (header::CONTENT_DISPOSITION, disposition)]
}

/// The headers `GET /v1/snapshot` would answer with, without taking the backup (which a
/// `HEAD` would throw away): the archive's length is not known before it is written, so
/// there is no `Content-Length`. A closed store is 503 as for `GET`; a backup that would fail
/// later (say, no room for its scratch copy) only fails the `GET`.
#[utoipa::path(
    head,
    path = "/v1/snapshot",
    tag = "operations",
    responses(
        (status = 200, description = "A GET would stream the archive; nothing is taken",
            headers(("Content-Disposition" = String, description = "attachment; filename=\"jessy-snapshot-<unix seconds>.tar.gz\""))),
        (status = 401, description = "Missing or wrong bearer token"),
        (status = 503, description = "The store is closed (`store_closed`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn head(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.store.get_dimension(jessy_storage::DEFAULT_DIMENSION)?;
    // A body of unknown length, as the GET's: an empty one would be given `Content-Length: 0`.
    let body = Body::from_stream(stream::empty::<Result<Bytes, io::Error>>());
    Ok((StatusCode::OK, snapshot_head(), body).into_response())
}

async fn finished(backup: Backup) -> Result<(), ApiError> {
    match backup.await {
        Ok(result) => result.map_err(ApiError::from),
        Err(join) => Err(ApiError::internal(format!("the snapshot task died: {join}"))),
    }
}
