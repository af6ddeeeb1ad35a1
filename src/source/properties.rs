//! Property tests: no input a peer or a user can hand regcred makes it
//! panic. Token endpoint answers, credentials files of every `type` and
//! IAM Credentials answers are generated as JSON trees built from the field
//! names regcred reads, with values of every JSON type, including numbers
//! far outside any sane range; each must give a value or an error.
//!
//! `PROPTEST_CASES` sets the number of cases (256 by default, a few seconds).

use std::path::Path;
use std::time::Duration;

use hyper::{HeaderMap, StatusCode};
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;

/// Every field name the sources look at, plus one they don't.
const FIELDS: &[&str] = &[
    "type",
    "access_token",
    "expires_in",
    "accessToken",
    "expireTime",
    "token_type",
    "error",
    "error_description",
    "message",
    "status",
    "code",
    "client_email",
    "private_key",
    "private_key_id",
    "token_uri",
    "client_id",
    "client_secret",
    "refresh_token",
    "audience",
    "subject_token_type",
    "token_url",
    "credential_source",
    "file",
    "url",
    "headers",
    "format",
    "subject_token_field_name",
    "service_account_impersonation_url",
    "service_account_impersonation",
    "token_lifetime_seconds",
    "source_credentials",
    "delegates",
    "workforce_pool_user_project",
    "quota_project_id",
    "unrelated",
];

const TYPES: &[&str] =
    &["service_account", "authorized_user", "external_account", "impersonated_service_account", "text", "json"];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(Value::from),
        prop::sample::select(TYPES).prop_map(Value::from),
        Just(Value::from("https://127.0.0.1:1/token")),
        Just(Value::from("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")),
        Just(Value::from("2999-01-02T03:04:05Z")),
        Just(Value::from("9999-12-31T23:59:59.999999999Z")),
        ".{0,24}".prop_map(Value::from),
    ]
}

fn json_tree() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(FIELDS), inner), 0..8)
                .prop_map(|kvs| Value::Object(kvs.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())),
        ]
    })
}

/// A JSON object whose `type` is one of the credential types, so that every
/// file parser is reached.
fn credentials_file() -> impl Strategy<Value = Value> {
    (prop::sample::select(TYPES), prop::collection::vec((prop::sample::select(FIELDS), json_tree()), 0..10)).prop_map(
        |(kind, kvs)| {
            let mut m: Map<String, Value> = kvs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            m.insert("type".into(), kind.into());
            Value::Object(m)
        },
    )
}

/// One client for all cases: loading the system's CA roots is the slow part.
/// A success-shaped answer (a token and its lifetime, in both of Google's
/// spellings) with any lifetime at all, plus random other fields.
fn token_answer() -> impl Strategy<Value = Value> {
    let lifetime = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0i64..100_000).prop_map(Value::from),
        json_tree(),
    ];
    let expire_time = prop_oneof![
        (0u32..=9999, 1u32..=12, 1u32..=28, 0u32..24)
            .prop_map(|(y, mo, d, h)| { Value::from(format!("{y:04}-{mo:02}-{d:02}T{h:02}:00:00Z")) }),
        json_tree(),
    ];
    (lifetime, expire_time, prop::collection::vec((prop::sample::select(FIELDS), json_tree()), 0..4)).prop_map(
        |(lifetime, expire_time, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            m.insert("access_token".into(), "ya29.t".into());
            m.insert("accessToken".into(), "ya29.t".into());
            m.insert("expires_in".into(), lifetime);
            m.insert("expireTime".into(), expire_time);
            Value::Object(m)
        },
    )
}

fn http() -> HttpClient {
    static CLIENT: std::sync::OnceLock<HttpClient> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| HttpClient::new(Duration::from_secs(1)).expect("client")).clone()
}

fn response(status: u16, body: &[u8]) -> Response {
    Response {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        headers: HeaderMap::new(),
        body: body.to_vec().into(),
    }
}

/// Parses a credentials file the way discovery does, by its `type`.
fn parse_credentials(text: &str, http: &HttpClient) {
    let path = Path::new("/k.json");
    let kind = serde_json::from_str::<Value>(text).ok().and_then(|v| v["type"].as_str().map(str::to_string));
    match kind.as_deref() {
        Some("service_account") => drop(ServiceAccountKey::parse(path, text, http.clone())),
        Some("authorized_user") => drop(AuthorizedUser::parse(path, text, http.clone())),
        Some("impersonated_service_account") => {
            drop(impersonate::from_impersonated_file(path, text, DEFAULT_TOKEN_LIFETIME, http))
        }
        _ => drop(external_account::from_file(path, text, Some(Duration::from_secs(3600)), http)),
    }
}

proptest! {
    #[test]
    fn token_endpoint_answers_never_panic(
        status in prop_oneof![Just(200u16), 100u16..600],
        body in prop_oneof![token_answer(), json_tree()],
    ) {
        let bytes = serde_json::to_vec(&body).unwrap();
        if let Ok(cred) = oauth_token_from("t", "u", response(status, &bytes)) {
            // Whatever was claimed, the expiry stays within Google's 12 h.
            let expires = cred.expires_at.expect("an access token expires");
            prop_assert!(expires <= SystemTime::now() + MAX_TOKEN_LIFETIME);
        }
    }

    #[test]
    fn raw_bytes_from_a_token_endpoint_never_panic(status in 100u16..600, body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = oauth_token_from("t", "u", response(status, &body));
    }

    #[test]
    fn impersonation_answers_never_panic(
        status in prop_oneof![Just(200u16), 100u16..600],
        body in prop_oneof![token_answer(), json_tree()],
    ) {
        let bytes = serde_json::to_vec(&body).unwrap();
        if let Ok(cred) = impersonate::token_from("u", &response(status, &bytes)) {
            prop_assert!(cred.expires_at.expect("expires") <= SystemTime::now() + MAX_TOKEN_LIFETIME);
        }
    }

    #[test]
    fn credentials_files_never_panic(file in credentials_file()) {
        parse_credentials(&file.to_string(), &http());
    }

    #[test]
    fn arbitrary_text_as_a_credentials_file_never_panics(text in ".{0,200}") {
        parse_credentials(&text, &http());
    }
}
