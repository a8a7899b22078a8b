//! The tokens Handoff issues and accepts, each explicitly typed (RFC 8725 §3.11): a token is only
//! ever validated as its own kind.

mod access;
mod jws;
mod numeric_date;
mod txn;

pub use access::{AccessClaims, Actor, MintedToken, mint_access_token, verify_access_token};
pub use jws::{TokenError, Unverified, peek_claims, refuse_key_headers};
pub use numeric_date::{
    Leeway, MAX_NUMERIC_DATE, NumericDate, TokenTimes, floor_seconds, present_or_refused,
};
pub(crate) use txn::mint_txn_token_verified;
pub use txn::{
    OWN_TOKEN_LEEWAY, TaskContext, TxnClaims, VerifiedTxn, mint_delegated_txn_token,
    mint_txn_token, verify_txn_token,
};

/// `typ` of RFC 9068 access tokens.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// `typ` of Transaction Tokens (draft-ietf-oauth-transaction-tokens).
pub const TXN_TOKEN_TYP: &str = "txntoken+jwt";
/// RFC 8693 token type URIs.
pub const TYPE_TXN_TOKEN: &str = "urn:ietf:params:oauth:token-type:txn_token";
pub const TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
