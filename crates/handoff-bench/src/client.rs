//! One keep-alive HTTP/1.1 connection per agent, on hyper's connection-level client: nothing is
//! looked up in a pool on the hot path, and a broken connection is reopened on the next request.

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
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
    /// Further headers, sent as given.
    pub headers: &'a [(HeaderName, HeaderValue)],
}

impl Body<'_> {
    pub fn empty() -> Self {
        Self {
            content_type: None,
            bearer: None,
            bytes: Bytes::new(),
            headers: &[],
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
        for (name, value) in body.headers {
            request = request.header(name, value);
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

/// A `Name: value` header from the command line.
pub fn header(text: &str) -> Result<(HeaderName, HeaderValue)> {
    let Some((name, value)) = text.split_once(':') else {
        bail!("a header is `Name: value`, not `{text}`");
    };
    let name = HeaderName::try_from(name.trim())
        .with_context(|| format!("`{name}` is not a header name"))?;
    let value = HeaderValue::try_from(value.trim())
        .with_context(|| format!("the value of `{name}` is not a header value"))?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::{authority, header};

    #[test]
    fn a_header_is_a_name_and_a_value() {
        let (name, value) = header("X-Vault-Token: bench").expect("a header");
        assert_eq!(
            (name.as_str(), value.as_bytes()),
            ("x-vault-token", &b"bench"[..])
        );
        assert!(header("no colon").is_err());
        assert!(header("bad name: x").is_err());
    }

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
