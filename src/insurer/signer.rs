//! Per-region request signing (insurer-api.md §1.1): some regions add gateway headers or an
//! SM2 `cainfo`, others nothing. A [`Signer`] sees the finished envelope before it is sent;
//! [`NoSigner`] (the simulator's "none") leaves it alone.

use serde_json::Value;

pub trait Signer: Send {
    /// The region's name for the scheme (`none`, `sm2` …), for logs.
    fn name(&self) -> &str;
    /// Add `cainfo` / `signtype` (or whatever the region wants) to the envelope.
    fn sign(&self, envelope: &mut Value);
}

/// No signature.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSigner;

impl Signer for NoSigner {
    fn name(&self) -> &str {
        "none"
    }

    fn sign(&self, _envelope: &mut Value) {}
}
