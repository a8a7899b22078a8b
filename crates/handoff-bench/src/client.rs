//! One keep-alive HTTP/1.1 connection per agent, on hyper's connection-level client: nothing is
//! looked up in a pool on the hot path, and a broken connection is reopened on the next request.

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// `host:port` of an `http://host:port[/...]` URL.
pub fn authority(url: &str) -> Result<String> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("`--url` must be a plain http:// URL, not `{url}`");
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    if authority.is_empty() {
        bail!("`--url` names no host: `{url}`");
    }
    Ok(authority.to_owned())
}

/// What one request sends besides its method and path.
pub struct Body<'a> {
    pub content_type: Option<&'static str>,
    pub bearer: Option<&'a str>,
    pub bytes: Bytes,
}

impl Body<'_> {
    pub fn empty() -> Self {
        Self {
            content_type: None,
            bearer: None,
            bytes: Bytes::new(),
        }
    }
}

pub struct Connection {
    authority: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    pub fn new(authority: String) -> Self {
        Self {
            authority,
            sender: None,
        }
    }

    async fn open(&mut self) -> Result<()> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot connect to `{}`", self.authority))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake failed")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Body<'_>,
    ) -> Result<(StatusCode, Bytes)> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.authority.as_str());
        if let Some(content_type) = body.content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        if let Some(token) = body.bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Full::new(body.bytes))?;
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            self.open().await?;
        }
        let result = self.exchange(request).await;
        if result.is_err() {
            // Whatever state the connection is in, the next request starts on a fresh one.
            self.sender = None;
        }
        result
    }

    async fn exchange(&mut self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)> {
        let sender = self
            .sender
            .as_mut()
            .ok_or_else(|| anyhow!("no connection"))?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn the_authority_is_host_and_port() {
        assert_eq!(
            authority("http://127.0.0.1:8080").ok(),
            Some("127.0.0.1:8080".to_owned())
        );
        assert_eq!(
            authority("http://localhost:9/x").ok(),
            Some("localhost:9".to_owned())
        );
        assert!(authority("https://x").is_err());
        assert!(authority("http://").is_err());
    }
}
