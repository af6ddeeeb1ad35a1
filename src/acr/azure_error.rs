//! Azure's error answers, summarised in one line for regcred's messages:
//! Entra ID's and IMDS's OAuth JSON (`error`, a multi-line
//! `error_description` starting `AADSTSnnn:`, `trace_id`) and the
//! registry's `{"errors": [{"code", "message"}]}`.

use hyper::StatusCode;
use serde_json::Value;

use crate::http::Response;
use crate::source::SourceError;

/// The peer's refusal as a [`SourceError::Endpoint`], with Azure's own
/// error text (never the request, which carries a token or a secret) and
/// any `Retry-After`.
pub(crate) fn refusal(step: &'static str, url: &str, resp: &Response) -> SourceError {
    SourceError::Endpoint {
        step,
        url: url.to_string(),
        status: resp.status.as_u16(),
        message: message(&resp.body, resp.status),
        retry_after: crate::http::retry_after(&resp.headers),
    }
}

/// One line: `error: first line of error_description (trace ID ...)`, or
/// the registry's `CODE: message` pairs, or the status's reason.
pub(crate) fn message(body: &[u8], status: StatusCode) -> String {
    let fallback = || status.canonical_reason().unwrap_or("error").to_string();
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return fallback();
    };
    if let Some(code) = v["error"].as_str() {
        let description = v["error_description"].as_str().and_then(|d| d.lines().next()).map(str::trim);
        let mut line = match description.filter(|d| !d.is_empty()) {
            Some(d) => format!("{code}: {d}"),
            None => code.to_string(),
        };
        if let Some(trace) = v["trace_id"].as_str() {
            line.push_str(&format!(" (trace ID {trace})"));
        }
        return one_line(&line);
    }
    if let Some(errors) = v["errors"].as_array() {
        let parts: Vec<String> = errors
            .iter()
            .map(|e| match (e["code"].as_str(), e["message"].as_str()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                (None, Some(m)) => m.to_string(),
                (None, None) => String::new(),
            })
            .filter(|p| !p.is_empty())
            .collect();
        if !parts.is_empty() {
            return one_line(&parts.join("; "));
        }
    }
    fallback()
}

/// Control characters (a peer's stray newlines) become spaces, so that an
/// error stays one log line.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_errors_keep_the_code_the_first_line_and_the_trace_id() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 0000aaaa\r\nCorrelation ID: 1111\r\nTimestamp: 2026-01-01 00:00:00Z","error_codes":[7000215],"trace_id":"0000aaaa"}"#;
        assert_eq!(
            message(body, StatusCode::UNAUTHORIZED),
            "invalid_client: AADSTS7000215: Invalid client secret provided. (trace ID 0000aaaa)"
        );
        let imds = br#"{"error":"invalid_request","error_description":"Identity not found"}"#;
        assert_eq!(message(imds, StatusCode::BAD_REQUEST), "invalid_request: Identity not found");
    }

    #[test]
    fn registry_errors_list_their_codes() {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"the access token is invalid\nor expired"}]}"#;
        assert_eq!(message(body, StatusCode::UNAUTHORIZED), "UNAUTHORIZED: the access token is invalid or expired");
        assert_eq!(message(b"<html>", StatusCode::BAD_GATEWAY), "Bad Gateway");
        assert_eq!(message(br#"{"errors":[]}"#, StatusCode::NOT_FOUND), "Not Found");
    }
}
