//! AWS Signature Version 4, for the two signed calls regcred makes (ECR's
//! `GetAuthorizationToken`, STS `AssumeRole`): the canonical request, the
//! string to sign and the signature, with ring's HMAC-SHA256 (regcred links
//! ring already, for TLS).

use std::time::SystemTime;

use ring::{digest, hmac};

use super::credentials::AwsCredentials;

/// What a request is signed for: the service's signing name and the region.
pub(crate) struct Scope<'a> {
    pub service: &'a str,
    pub region: &'a str,
}

/// `YYYYMMDDTHHMMSSZ`, the form of `X-Amz-Date`.
pub(crate) fn amz_date(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string().replace(['-', ':'], "")
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// The parts of a request a signature covers.
pub(crate) struct Signable<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The canonical query string (sorted, encoded; empty for a POST).
    pub query: &'a str,
    /// Lower-case names, the `host` among them; `x-amz-date` and, for
    /// temporary credentials, `x-amz-security-token` are added by [`sign`].
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Signs a request whose headers and body are final. Returns every header
/// to send, the `authorization` header last.
pub(crate) fn sign(
    credentials: &AwsCredentials,
    scope: &Scope<'_>,
    request: &Signable<'_>,
    now: SystemTime,
) -> Vec<(String, String)> {
    let Signable { method, path, query, headers, body } = request;
    let date_time = amz_date(now);
    let date = &date_time[..8];
    let mut all: Vec<(String, String)> =
        headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string())).collect();
    all.push(("x-amz-date".into(), date_time.clone()));
    if let Some(token) = &credentials.session_token {
        all.push(("x-amz-security-token".into(), token.expose().clone()));
    }
    all.sort();
    let canonical_headers: String = all.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = all.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
    let canonical_request =
        format!("{method}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{}", sha256_hex(body));
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let string_to_sign =
        format!("AWS4-HMAC-SHA256\n{date_time}\n{credential_scope}\n{}", sha256_hex(canonical_request.as_bytes()));
    let secret = format!("AWS4{}", credentials.secret_access_key.expose());
    let k_date = hmac_sha256(secret.as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(k_date.as_ref(), scope.region.as_bytes());
    let k_service = hmac_sha256(k_region.as_ref(), scope.service.as_bytes());
    let k_signing = hmac_sha256(k_service.as_ref(), b"aws4_request");
    let signature = hex(hmac_sha256(k_signing.as_ref(), string_to_sign.as_bytes()).as_ref());
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{credential_scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    );
    all.push(("authorization".into(), authorization));
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use std::time::Duration;

    /// AWS's worked example of a signed request ("Create a signed AWS API
    /// request", IAM ListUsers on 2015-08-30T12:36:00Z).
    #[test]
    fn matches_the_documented_example() {
        let credentials = AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            session_token: None,
            expires_at: None,
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        assert_eq!(amz_date(now), "20150830T123600Z");
        let headers = sign(
            &credentials,
            &Scope { service: "iam", region: "us-east-1" },
            &Signable {
                method: "GET",
                path: "/",
                query: "Action=ListUsers&Version=2010-05-08",
                headers: &[
                    ("content-type", "application/x-www-form-urlencoded; charset=utf-8"),
                    ("host", "iam.amazonaws.com"),
                ],
                body: b"",
            },
            now,
        );
        let authorization = &headers.last().unwrap().1;
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }
}
