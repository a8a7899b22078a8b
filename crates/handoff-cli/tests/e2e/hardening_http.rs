//! The listener against slow and oversized clients, over raw TCP: a stalled head or body is cut
//! off, an idle keep-alive connection closed, an oversized head refused with 431, an oversized
//! body with 413 before `100 Continue`, every such refusal in JSON; past `max_connections` new
//! connections wait. The gateway drops hop-by-hop headers and refuses encoded slashes.

use crate::gateway::{gateway_config, git_token, start, upstream};
use crate::harness::{Server, example_config, temp_dir};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far longer than any configured timeout here: a connection still open after it never closes.
const BOUND: Duration = Duration::from_secs(15);

const LIMITS: &str = r#"
[server]
header_read_timeout = "1s"
body_read_timeout = "1s"
max_header_bytes = 1024
max_connections = 2
"#;

fn start_limited(dir: &Path) -> Server {
    let config = example_config(dir, |text| format!("{text}\n{LIMITS}"));
    Server::start_with(dir, Some(&config))
}

async fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Everything the server sends until it closes the connection; fails if it stays open.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection");
    all
}

/// One response: its status, head and JSON body (read up to its `content-length`).
async fn response(stream: &mut TcpStream) -> (u16, String, Value) {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(BOUND, async {
        loop {
            if let Some(end) = all.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&all[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if all.len() >= end + 4 + length {
                    return;
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed mid-response: {:?}",
                String::from_utf8_lossy(&all)
            );
            all.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("a response arrives");
    parse(&all)
}

fn parse(bytes: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, head.to_lowercase(), body)
}

#[tokio::test]
async fn a_stalled_head_and_an_idle_keep_alive_connection_are_closed() {
    let dir = temp_dir();
    let server = start_limited(dir.path());
    let mut stalled = connect(&server).await;
    stalled
        .write_all(b"POST /v1/tasks HTTP/1.1\r\nhost: x\r\ncontent-type: app")
        .await
        .unwrap();
    assert!(until_closed(&mut stalled).await.is_empty());

    let mut idle = connect(&server).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(response(&mut idle).await.0, 200);
    // Nothing more is sent: the keep-alive connection is closed.
    assert!(until_closed(&mut idle).await.is_empty());
}

#[tokio::test]
async fn a_stalled_body_is_refused_with_408_in_json_and_the_connection_closed() {
    let dir = temp_dir();
    let server = start_limited(dir.path());
    let mut stream = connect(&server).await;
    stream
        .write_all(
            b"POST /v1/tasks HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"intent\":",
        )
        .await
        .unwrap();
    let (status, head, body) = parse(&until_closed(&mut stream).await);
    assert_eq!(
        (status, body["error"].as_str()),
        (408, Some("request_timeout")),
        "{head}"
    );
}

#[tokio::test]
async fn an_oversized_head_gets_431_with_a_json_error() {
    let dir = temp_dir();
    let server = start_limited(dir.path());
    let mut stream = connect(&server).await;
    let big = "a".repeat(2000);
    stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (status, head, body) = parse(&until_closed(&mut stream).await);
    assert_eq!(status, 431, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(body["error"], "header_too_large", "{body}");
}

#[tokio::test]
async fn an_oversized_body_with_expect_100_continue_gets_413_and_never_100_continue() {
    let dir = temp_dir();
    let server = start_limited(dir.path());
    let mut stream = connect(&server).await;
    stream
        .write_all(
            b"POST /v1/tasks HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\nexpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let (status, head, body) = response(&mut stream).await;
    assert_eq!(status, 413, "{head}");
    assert_eq!(body["error"], "body_too_large", "{body}");
}

#[tokio::test]
async fn a_wrong_method_gets_405_in_json_with_its_allow_header() {
    let dir = temp_dir();
    let server = start_limited(dir.path());
    let response = server
        .client
        .delete(format!("{}/v1/tasks", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed", "{body}");
}

#[tokio::test]
async fn past_max_connections_a_new_connection_waits_until_one_closes() {
    let dir = temp_dir();
    let server = start_limited(dir.path());
    let address = server.base.trim_start_matches("http://").to_owned();
    // Two connections take both slots and send nothing: the header timeout closes them.
    let held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(&address).unwrap())
        .collect();
    let mut third = TcpStream::connect(&address).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(response(&mut third).await.0, 200);
    // The third was served only once a held connection had been closed.
    let closed = held.iter().filter(|stream| {
        stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        matches!(std::io::Read::read(&mut &**stream, &mut byte), Ok(0))
    });
    assert!(
        closed.count() >= 1,
        "the third connection was served past the limit"
    );
}

#[tokio::test]
async fn the_gateway_forwards_no_hop_by_hop_header_and_no_header_named_in_connection() {
    let dir = temp_dir();
    let (upstream_url, seen) = upstream().await;
    let config = gateway_config(dir.path(), &upstream_url);
    let server = start(dir.path(), &config);
    let agent = server.identity("release-bot");
    let (_, token) = git_token(&server, &agent, "read", "repo:acme/app").await;
    let mut stream = connect(&server).await;
    let request = format!(
        "GET /gateway/git/repos/acme/app HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         connection: keep-alive, x-hop-secret\r\nx-hop-secret: 1\r\nkeep-alive: timeout=5\r\n\
         proxy-connection: keep-alive\r\nte: trailers\r\nproxy-authorization: Basic eDp5\r\n\
         x-kept: yes\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (status, head, _) = response(&mut stream).await;
    assert_eq!(status, 201, "{head}");
    let seen = seen.lock().await.clone();
    let names: Vec<&str> = seen[0].headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"x-kept"), "{names:?}");
    for dropped in [
        "x-hop-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "proxy-authorization",
    ] {
        assert!(
            !names.contains(&dropped),
            "`{dropped}` reached the upstream: {names:?}"
        );
    }
}

#[tokio::test]
async fn the_gateway_refuses_encoded_slashes_in_a_segment_and_never_forwards_them() {
    let dir = temp_dir();
    let (upstream_url, seen) = upstream().await;
    let config = gateway_config(dir.path(), &upstream_url);
    let server = start(dir.path(), &config);
    let agent = server.identity("release-bot");
    for repo in ["app%2Fadmin", "app%2fadmin", "app%5Cadmin"] {
        let (_, token) = git_token(&server, &agent, "read", &format!("repo:acme/{repo}")).await;
        let response = server
            .client
            .get(format!("{}/gateway/git/repos/acme/{repo}", server.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403, "{repo}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "route_not_mapped", "{repo}: {body}");
    }
    assert!(
        seen.lock().await.is_empty(),
        "an encoded slash reached the upstream"
    );
}

#[test]
fn a_route_that_binds_one_placeholder_twice_is_refused_at_load() {
    // `/repos/{repo}/{repo}` would keep only the last value: a token scoped to one repository
    // would reach another. Found by fuzzing the path matcher.
    let dir = temp_dir();
    let config = gateway_config(dir.path(), "http://127.0.0.1:9");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "path = \"/repos/{owner}/{repo}\"\n",
        "path = \"/repos/{repo}/{repo}\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let output = crate::harness::cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(64));
    let report = crate::harness::stderr(&output);
    assert!(
        report.contains("placeholder `{repo}` appears more than once"),
        "{report}"
    );
}

#[tokio::test]
async fn the_gateway_and_mcp_refuse_a_declared_oversized_body_with_413_before_100_continue() {
    let dir = temp_dir();
    let (upstream_url, seen) = upstream().await;
    let config = gateway_config(dir.path(), &upstream_url);
    let server = start(dir.path(), &config);
    let agent = server.identity("release-bot");
    let (_, token) = git_token(&server, &agent, "open_pr", "repo:acme/app").await;
    let ask = |path: &str, auth: Option<&str>, length: usize| {
        let auth = auth.map_or_else(String::new, |t| format!("authorization: Bearer {t}\r\n"));
        format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{auth}\
             content-length: {length}\r\nexpect: 100-continue\r\n\r\n"
        )
    };
    // 1.5 MB: over the gateway's 1 MiB, under the 2 MB `/mcp` used to read up to by default.
    let over = 1_500_000;
    let mut wrong = Vec::new();
    for (path, auth) in [
        ("/gateway/git/repos/acme/app/pulls", Some(token.as_str())),
        ("/gateway/git/repos/acme/app/pulls", None),
        ("/mcp", Some(agent.as_str())),
        ("/mcp", None),
    ] {
        let mut stream = connect(&server).await;
        stream
            .write_all(ask(path, auth, over).as_bytes())
            .await
            .unwrap();
        let (status, head, body) = response(&mut stream).await;
        let json = head.contains("content-type: application/json");
        if (status, json, body["error"].as_str()) != (413, true, Some("body_too_large")) {
            wrong.push(format!("{path} (token: {}): {head}", auth.is_some()));
        }
    }
    assert!(
        wrong.is_empty(),
        "not refused before `100 Continue`: {wrong:#?}"
    );
    assert!(seen.lock().await.is_empty(), "nothing reached the upstream");

    // Within the limit, the same request is told to go on: the check refuses only what is over.
    let mut stream = connect(&server).await;
    stream
        .write_all(ask("/mcp", Some(&agent), 1000).as_bytes())
        .await
        .unwrap();
    let (status, head, _) = response(&mut stream).await;
    assert_eq!(status, 100, "{head}");
}

#[tokio::test]
async fn the_gateway_refuses_dot_segments_sent_raw_and_never_forwards_them() {
    // Sent over a raw connection, since HTTP clients resolve `..` before sending. Each path
    // matches `GET /repos/{owner}/{repo}` with `{repo}` = `..` (so the token below, minted for
    // exactly that resource, would cover it): only the dot-segment refusal keeps it from the
    // upstream, which would resolve it to `/repos`.
    let dir = temp_dir();
    let (upstream_url, seen) = upstream().await;
    let config = gateway_config(dir.path(), &upstream_url);
    let server = start(dir.path(), &config);
    let agent = server.identity("release-bot");
    for (segment, resource) in [
        ("..", "repo:acme/.."),
        ("%2e%2e", "repo:acme/%2e%2e"),
        (".%2E", "repo:acme/.%2E"),
        (".", "repo:acme/."),
    ] {
        let (_, token) = git_token(&server, &agent, "read", resource).await;
        let mut stream = connect(&server).await;
        let request = format!(
            "GET /gateway/git/repos/acme/{segment} HTTP/1.1\r\nhost: x\r\n\
             authorization: Bearer {token}\r\nconnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let (status, head, body) = response(&mut stream).await;
        assert_eq!(status, 403, "{segment}: {head}");
        assert_eq!(body["error"], "route_not_mapped", "{segment}: {body}");
    }
    assert!(
        seen.lock().await.is_empty(),
        "a dot segment reached the upstream"
    );
}
