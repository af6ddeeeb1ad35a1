//! Compact JWS (RS256) encoding and verification, just enough for Google's
//! flows: service-account assertions (RFC 7523), ID tokens, STS subject tokens.

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rsa::sha2::Sha256;
use rsa::{PrivateKey, PublicKey};
use serde_json::Value;

/// Why a compact JWS was rejected.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JwtError {
    /// Not three base64url parts with JSON header and claims.
    Format,
    /// Header `alg` is not RS256.
    Algorithm,
    /// Signature does not verify with the key.
    Signature,
}

/// base64url, accepting input with or without padding (as Google does).
pub(crate) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok().or_else(|| URL_SAFE.decode(s).ok())
}

/// Signs `claims` with RS256, with `kid` in the header when given.
pub(crate) fn sign(key: &PrivateKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = Value::from(kid);
    }
    sign_with_header(key, header, claims)
}

/// Signs `claims` with RS256 under `header` (which must say `"alg": "RS256"`).
pub(crate) fn sign_with_header(key: &PrivateKey, header: Value, claims: &Value) -> String {
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let sig = key.pkcs1v15_sign::<Sha256>(signing_input.as_bytes()).expect("RSA signing");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Splits and decodes a compact JWS without checking the signature.
pub(crate) fn decode_unverified(token: &str) -> Result<(Value, Value), JwtError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(JwtError::Format);
    }
    let header: Value =
        b64url_decode(parts[0]).and_then(|b| serde_json::from_slice(&b).ok()).ok_or(JwtError::Format)?;
    let claims: Value =
        b64url_decode(parts[1]).and_then(|b| serde_json::from_slice(&b).ok()).ok_or(JwtError::Format)?;
    if !header.is_object() || !claims.is_object() {
        return Err(JwtError::Format);
    }
    Ok((header, claims))
}

/// Verifies an RS256 compact JWS and returns `(header, claims)`.
pub(crate) fn verify(key: &PublicKey, token: &str) -> Result<(Value, Value), JwtError> {
    let (header, claims) = decode_unverified(token)?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(JwtError::Algorithm);
    }
    let (signing_input, sig) = token.rsplit_once('.').ok_or(JwtError::Format)?;
    let sig = b64url_decode(sig).ok_or(JwtError::Signature)?;
    key.pkcs1v15_verify::<Sha256>(signing_input.as_bytes(), &sig).map_err(|_| JwtError::Signature)?;
    Ok((header, claims))
}
