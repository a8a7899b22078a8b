//! What a standalone gateway reads from Handoff: the JWKS at start, and the revocation feed,
//! polled into the deny list.

use crate::verify::OfflineVerifier;
use handoff_core::containment::RevocationKind;
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reads Handoff's JWKS from `<handoff>/.well-known/jwks.json`.
pub async fn fetch_jwks(client: &reqwest::Client, handoff: &str) -> Result<JwkSet, String> {
    let url = format!("{}/.well-known/jwks.json", handoff.trim_end_matches('/'));
    let answer = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("cannot read `{url}`: {e}"))?;
    if !answer.status().is_success() {
        return Err(format!("`{url}` answered {}", answer.status()));
    }
    answer
        .json()
        .await
        .map_err(|e| format!("`{url}` is not a JWKS: {e}"))
}

/// Handoff's issuer identifier, from its RFC 8414 metadata: the `iss` its tokens carry.
pub async fn fetch_issuer(client: &reqwest::Client, handoff: &str) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Metadata {
        issuer: String,
    }
    let url = format!(
        "{}/.well-known/oauth-authorization-server",
        handoff.trim_end_matches('/')
    );
    let answer = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("cannot read `{url}`: {e}"))?;
    if !answer.status().is_success() {
        return Err(format!("`{url}` answered {}", answer.status()));
    }
    let metadata: Metadata = answer
        .json()
        .await
        .map_err(|e| format!("`{url}` is not authorization server metadata: {e}"))?;
    Ok(metadata.issuer)
}

#[derive(Deserialize)]
struct Page {
    entries: Vec<FeedEntry>,
}

/// One feed entry as served (`at` and `reason` are not needed here).
#[derive(Deserialize)]
pub struct FeedEntry {
    pub seq: u64,
    pub kind: RevocationKind,
    pub id: String,
}

/// How the gateway authenticates to the feed: a system credential (`system:secret`).
#[derive(Clone)]
pub struct FeedCredential {
    pub system: String,
    pub secret: String,
}

async fn read_once(
    client: &reqwest::Client,
    handoff: &str,
    credential: &FeedCredential,
    verifier: &OfflineVerifier,
) -> Result<usize, String> {
    let mut read = 0;
    loop {
        let url = format!(
            "{}/v1/revocations?after={}",
            handoff.trim_end_matches('/'),
            verifier.cursor()
        );
        let answer = client
            .get(&url)
            .basic_auth(&credential.system, Some(&credential.secret))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !answer.status().is_success() {
            return Err(format!("the revocation feed answered {}", answer.status()));
        }
        let page: Page = answer.json().await.map_err(|e| e.to_string())?;
        let count = page.entries.len();
        verifier.apply_feed(&page.entries, Instant::now());
        read += count;
        if count == 0 {
            return Ok(read);
        }
    }
}

/// Reads the whole feed once (so no token is accepted before the deny list is current), then
/// polls it every `every` in the background.
pub async fn follow_feed(
    client: reqwest::Client,
    handoff: String,
    credential: FeedCredential,
    verifier: Arc<OfflineVerifier>,
    every: Duration,
) -> Result<(), String> {
    read_once(&client, &handoff, &credential, &verifier).await?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(error) = read_once(&client, &handoff, &credential, &verifier).await {
                tracing::warn!(%error, "the revocation feed could not be read");
            }
        }
    });
    Ok(())
}
