//! Injected randomness for identifiers; tests may substitute a deterministic source.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub trait Randomness: Send + Sync {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError>;
}

#[derive(Debug, thiserror::Error)]
#[error("the system random source failed")]
pub struct RandomError;

/// The operating system's CSPRNG, through aws-lc-rs.
#[derive(Debug, Default)]
pub struct SystemRandomness(aws_lc_rs::rand::SystemRandom);

impl Randomness for SystemRandomness {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        aws_lc_rs::rand::SecureRandom::fill(&self.0, buf).map_err(|_| RandomError)
    }
}

/// A fresh 128-bit identifier with a readable prefix: `task_3q2…`.
pub fn new_id(random: &dyn Randomness, prefix: &str) -> Result<String, RandomError> {
    let mut bytes = [0u8; 16];
    random.fill(&mut bytes)?;
    Ok(format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(bytes)))
}
