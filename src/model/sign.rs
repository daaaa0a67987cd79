//! HMAC-SHA256 signatures over the canonical form of a recovery action, so an
//! executor can refuse actions that reflex did not make.
//!
//! Canonical form: the action's JSON with `signature` absent (serde field
//! order is the struct's, fixed), UTF-8.

use crate::model::RecoveryAction;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The bytes that are signed.
pub fn canonical(action: &RecoveryAction) -> Vec<u8> {
    let mut a = action.clone();
    a.signature = None;
    // Serialising plain data cannot fail; an empty canonical form would make
    // verification fail closed.
    serde_json::to_vec(&a).unwrap_or_default()
}

/// Hex HMAC-SHA256 of the canonical form under `key`.
pub fn sign(action: &RecoveryAction, key: &[u8]) -> String {
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        // HMAC accepts keys of any length; unreachable in practice.
        Err(_) => return String::new(),
    };
    mac.update(&canonical(action));
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `action.signature` is a valid signature under `key` (constant time).
pub fn verify(action: &RecoveryAction, key: &[u8]) -> bool {
    let Some(sig) = action.signature.as_deref() else {
        return false;
    };
    let Ok(bytes) = hex::decode(sig) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return false;
    };
    mac.update(&canonical(action));
    mac.verify_slice(&bytes).is_ok()
}
