//! Bad input: one clear line on stderr, exit code 2, no panic, no backtrace.

mod common;

use common::Kit;

async fn assert_usage_error(kit: &Kit, args: &[&str], expected: &str) {
    let out = kit.run(args).await;
    assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line expected, got {:?}", out.stderr);
    assert!(lines[0].starts_with("regcred: error: "), "{:?}", lines[0]);
    assert!(lines[0].contains(expected), "{args:?}: {:?} lacks {expected:?}", lines[0]);
    assert!(!out.stderr.contains("panicked") && !out.stderr.contains("backtrace"));
}

#[tokio::test]
async fn bad_input_gets_one_line_and_exit_2() {
    let kit = Kit::start().await;
    let dir = kit.dir.path();
    std::fs::write(dir.join("garbage.json"), "not json").unwrap();
    std::fs::write(dir.join("nokey.json"), r#"{"type":"service_account","client_email":"a@b.c"}"#).unwrap();
    std::fs::write(dir.join("badpem.json"), r#"{"type":"service_account","client_email":"a@b.c","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#).unwrap();
    let p = |n: &str| dir.join(n).display().to_string();

    assert_usage_error(
        &kit,
        &["once", "--secret", "x", "--key-file", &p("missing.json")],
        "missing.json: no such file",
    )
    .await;
    assert_usage_error(
        &kit,
        &["once", "--secret", "x", "--key-file", &p("garbage.json")],
        "garbage.json: not valid JSON",
    )
    .await;
    assert_usage_error(&kit, &["once", "--secret", "x", "--key-file", &p("nokey.json")], "missing field `private_key`")
        .await;
    assert_usage_error(
        &kit,
        &["once", "--secret", "x", "--key-file", &p("badpem.json")],
        "`private_key` is not a valid",
    )
    .await;
    assert_usage_error(&kit, &["once", "--secret", "x", "--auth", "password"], "invalid value 'password' for '--auth")
        .await;
    assert_usage_error(&kit, &["once", "--secret", "a/b/c"], "invalid --secret \"a/b/c\"").await;
    assert_usage_error(&kit, &["once", "--secret", "x", "--registry", "docker.io"], "only for gcr.io").await;
    assert_usage_error(&kit, &["once", "--secret", "x", "--registry", "https://gcr.io"], "without a scheme").await;
    assert_usage_error(&kit, &["once"], "give at least one --secret or --output-file").await;
    assert_usage_error(&kit, &["run", "--secrt", "x"], "similar argument exists: '--secret'").await;
    assert_usage_error(
        &kit,
        &["once", "--secret", "x", "--auth", "json-key"],
        "--auth json-key needs a service-account key",
    )
    .await;
}

#[tokio::test]
async fn help_explains_every_command() {
    let kit = Kit::start().await;
    let out = kit.run(&["--help"]).await;
    assert_eq!(out.code, Some(0));
    for word in ["run", "once", "render", "Examples"] {
        assert!(out.stdout.contains(word), "--help lacks {word}: {}", out.stdout);
    }
    let out = kit.run(&["run", "--help"]).await;
    for flag in [
        "--auth",
        "--key-file",
        "--registry",
        "--all-registries",
        "--secret",
        "--secret-key",
        "--output-file",
        "--refresh-before",
        "--resync-interval",
        "--log-format",
        "REGCRED_SECRET",
    ] {
        assert!(out.stdout.contains(flag), "run --help lacks {flag}");
    }
}

#[tokio::test]
async fn env_vars_stand_in_for_flags() {
    let kit = Kit::start().await;
    let out = kit.command(&["once"]).env("REGCRED_SECRET", "a/b/c").output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid --secret \"a/b/c\""));
}

#[tokio::test]
async fn without_any_credentials_the_error_says_what_was_tried() {
    let kit = Kit::start().await;
    let out =
        kit.command(&["render", "--request-timeout", "1s"]).env_remove("GCE_METADATA_HOST").output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("regcred: error: no --key-file, GOOGLE_APPLICATION_CREDENTIALS or gcloud application-default credentials found, so regcred asked the GKE/GCE metadata server"),
        "{last}"
    );
}
