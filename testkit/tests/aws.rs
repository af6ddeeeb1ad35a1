//! The AWS emulator over plain HTTP: AWS's error shapes on the unhappy
//! paths (the happy paths and a real signer are in regcred's tests/aws.rs,
//! and the AWS SDK for Rust's signatures were checked against it by hand).

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use regcred_testkit::Aws;

const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";

/// `X-Amz-Date` for now.
fn amz_date() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string().replace(['-', ':'], "")
}

/// An ECR call signed by `key_id` with a signature that is not the right one.
async fn ecr_call(aws: &Aws, key_id: &str, session_token: Option<&str>) -> Resp {
    let date = amz_date();
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={key_id}/{}/us-east-1/ecr/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}",
        &date[..8],
        "0".repeat(64)
    );
    let mut headers = vec![
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", ECR_TARGET),
        ("x-amz-date", date.as_str()),
        ("authorization", auth.as_str()),
    ];
    if let Some(t) = session_token {
        headers.push(("x-amz-security-token", t));
    }
    send("POST", &format!("{}/", aws.url()), &headers, Some("{}")).await.unwrap()
}

fn assert_aws_error(r: &Resp, status: u16, code: &str, message: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.header("x-amzn-errortype"), Some(code));
    let v = r.json();
    assert_eq!(v["__type"], code, "{v}");
    assert!(v["message"].as_str().unwrap().starts_with(message), "{v}");
}

#[tokio::test]
async fn ecr_refuses_a_wrong_signature_an_unknown_key_and_no_signature_as_aws_does() {
    let aws = Aws::start().await;
    let (key_id, _) = aws.static_key();
    let r = ecr_call(&aws, &key_id, None).await;
    assert_aws_error(
        &r,
        403,
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided.",
    );
    let r = ecr_call(&aws, "AKIAUNKNOWNUNKNOWN00", None).await;
    assert_aws_error(&r, 400, "UnrecognizedClientException", "The security token included in the request is invalid.");
    let r = send(
        "POST",
        &format!("{}/", aws.url()),
        &[("content-type", "application/x-amz-json-1.1"), ("x-amz-target", ECR_TARGET)],
        Some("{}"),
    )
    .await
    .unwrap();
    assert_aws_error(&r, 403, "MissingAuthenticationTokenException", "Missing Authentication Token");
    assert!(aws.issued_ecr_tokens().is_empty());
}

#[tokio::test]
async fn imds_wants_a_session_token_and_expired_credentials_are_refused() {
    let aws = Aws::start().await;
    aws.set_credentials_lifetime(Duration::from_secs(1));
    let creds = format!("{}/latest/meta-data/iam/security-credentials/", aws.url());
    assert_eq!(send("GET", &creds, &[], None).await.unwrap().status, 401, "IMDSv1 is off");
    let token_url = format!("{}/latest/api/token", aws.url());
    assert_eq!(send("PUT", &token_url, &[], None).await.unwrap().status, 400, "a TTL is required");
    let token = send("PUT", &token_url, &[("x-aws-ec2-metadata-token-ttl-seconds", "60")], None).await.unwrap().body;
    let header = [("x-aws-ec2-metadata-token", token.as_str())];
    let role = send("GET", &creds, &header, None).await.unwrap();
    assert_eq!((role.status, role.body.as_str()), (200, aws.instance_role().as_str()));
    let v = send("GET", &format!("{creds}{}", role.body), &header, None).await.unwrap().json();
    assert_eq!(v["Code"], "Success");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = ecr_call(&aws, v["AccessKeyId"].as_str().unwrap(), v["Token"].as_str()).await;
    assert_aws_error(&r, 400, "ExpiredTokenException", "The security token included in the request is expired");
    let r = ecr_call(&aws, v["AccessKeyId"].as_str().unwrap(), None).await;
    assert_aws_error(&r, 400, "UnrecognizedClientException", "The security token included in the request is invalid.");
}

#[tokio::test]
async fn sts_answers_awss_xml_errors() {
    let aws = Aws::start().await;
    let form = "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fr&RoleSessionName=s&WebIdentityToken=not.a.jwt";
    aws.trust_oidc_issuer("https://issuer", &serde_json::json!({"keys": []}), "sts.amazonaws.com");
    let r =
        send("POST", &format!("{}/", aws.url()), &[("content-type", "application/x-www-form-urlencoded")], Some(form))
            .await
            .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.starts_with("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"), "{}", r.body);
    assert!(
        r.body.contains("<Type>Sender</Type>") && r.body.contains("<Code>InvalidIdentityToken</Code>"),
        "{}",
        r.body
    );
}
