//! Refusals made below the handlers, given the JSON body every other refusal has: axum's own
//! plain-text or empty answers (405, 413, 415, 400, ...) rewritten, a body that arrives too
//! slowly cut off with 408, and the answers hyper writes by itself, without a body, to a request
//! head it cannot take (400, 414, 431), replaced on the wire by [`JsonHeadErrors`].

use crate::error::ApiError;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Rewrites an error answer that is not JSON into the JSON refusal for its status, keeping the
/// status and an `Allow` header; answers under a `pass_through` prefix (the gateway relaying an
/// upstream's own answer) are left alone.
pub async fn json_refusals(pass_through: &[&str], request: Request, next: Next) -> Response {
    let relayed = pass_through
        .iter()
        .any(|prefix| request.uri().path().starts_with(prefix));
    let response = next.run(request).await;
    let status = response.status();
    if relayed || !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        StatusCode::REQUEST_TIMEOUT => ApiError::RequestTimeout,
        s if s.is_server_error() => ApiError::Internal(format!("a plain {s} answer")),
        _ => ApiError::invalid_request("the request could not be read".to_owned()),
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut json = error.into_response();
    *json.status_mut() = status;
    if let Some(allow) = allow {
        json.headers_mut().insert(header::ALLOW, allow);
    }
    json
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"))
}

/// Refuses a request whose declared `Content-Length` is over `limit` before anything reads the
/// body, so a client that sent `Expect: 100-continue` never gets `100 Continue` for it.
pub async fn declared_length(limit: usize, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::BodyTooLarge.into_response();
    }
    next.run(request).await
}

/// Refuses a request carrying `Authorization` more than once, at every door (the gateway's
/// too, and doors that take no credential): it is a singleton field (RFC 9110 §11.6.2), and which
/// copy a handler, a proxy or a log reads differs, so none is picked. The credential parser
/// every door uses ([`handoff_http::credential`]) refuses it the same way.
pub async fn single_authorization(request: Request, next: Next) -> Response {
    if let Err(error) = handoff_http::authorization(request.headers()) {
        return ApiError::invalid_request(error.to_string()).into_response();
    }
    next.run(request).await
}

/// Gives the request body `timeout` from the head to arrive in full; past it, the body fails,
/// and the answer is 408 `request_timeout` with the connection closed.
pub async fn body_deadline(timeout: Duration, request: Request, next: Next) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let flag = expired.clone();
    let request = request.map(|body| {
        Body::new(Deadline {
            inner: body,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            expired: flag,
        })
    });
    let response = next.run(request).await;
    if !expired.load(Ordering::Acquire) {
        return response;
    }
    let mut refused = ApiError::RequestTimeout.into_response();
    refused
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    refused
}

/// The error a body past its deadline fails with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

struct Deadline {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        ready!(self.sleep.as_mut().poll(cx));
        self.expired.store(true, Ordering::Release);
        Poll::Ready(Some(Err(axum::Error::new(BodyTimeout))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose bodiless answers from hyper itself (`400`, `414`, `431` with
/// `content-length: 0`, written when a request head cannot be parsed or is over the limit) are
/// replaced by the same answer with a JSON refusal body. Handoff's own answers always carry a
/// body, so a head with `content-length: 0` and one of these statuses is always hyper's.
pub struct JsonHeadErrors<T> {
    inner: T,
    max_header_bytes: usize,
    /// The replacement being written, how much of it is out, and how many bytes of hyper's
    /// answer it stands for.
    replacing: Option<(Bytes, usize)>,
}

impl<T> JsonHeadErrors<T> {
    pub fn new(inner: T, max_header_bytes: usize) -> Self {
        Self {
            inner,
            max_header_bytes,
            replacing: None,
        }
    }

    fn replacement(&self, head: &[u8]) -> Option<Bytes> {
        let error = if head.starts_with(b"HTTP/1.1 431 ") {
            ApiError::HeaderTooLarge(self.max_header_bytes)
        } else if head.starts_with(b"HTTP/1.1 414 ") {
            ApiError::invalid_request("the request target is too long".to_owned())
        } else if head.starts_with(b"HTTP/1.1 400 ") {
            ApiError::invalid_request("the request head does not parse".to_owned())
        } else {
            return None;
        };
        let bodiless =
            head.ends_with(b"\r\n\r\n") && head.windows(19).any(|w| w == b"content-length: 0\r\n");
        if !bodiless {
            return None;
        }
        let status = head.get(9..12).and_then(|s| std::str::from_utf8(s).ok())?;
        let reason = head
            .get(13..)
            .and_then(|rest| rest.split(|b| *b == b'\r').next())
            .and_then(|r| std::str::from_utf8(r).ok())?;
        let body = error.body().to_json();
        Some(Bytes::from(format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonHeadErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonHeadErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replacing.is_none()
            && let Some(replacement) = self.replacement(buf)
        {
            self.replacing = Some((replacement, buf.len()));
        }
        let this = &mut *self;
        let Some((replacement, stands_for)) = &mut this.replacing else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        while replacement.has_remaining() {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, replacement.chunk()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            replacement.advance(n);
        }
        let stands_for = *stands_for;
        this.replacing = None;
        Poll::Ready(Ok(stands_for))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper queues a head as its own slice: a head to replace is the first one.
        let first = bufs.iter().find(|b| !b.is_empty());
        if self.replacing.is_some() || first.is_some_and(|b| self.replacement(b).is_some()) {
            let first: &[u8] = first.map_or(&[][..], |b| b);
            return self.poll_write(cx, first);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
