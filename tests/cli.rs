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
    assert_usage_error(&kit, &["once", "--secret", "a/b/c"], "invalid value 'a/b/c' for '--secret").await;
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

/// Each flag's value is parsed by its component's type, and a bad one is
/// refused in one line that names the flag and says what is expected.
#[tokio::test]
async fn every_flag_refuses_a_bad_value_naming_the_flag() {
    let kit = Kit::start().await;
    let sa = "puller@project-1.iam.gserviceaccount.com";
    let cases: &[(&[&str], &str)] = &[
        (&["once", "--secret", "x", "--secret-key", "..data"], "'--secret-key <KEY>': a Secret key may contain"),
        (&["run", "--secret", "x", "--admin-addr", "nope"], "expected IP:PORT"),
        (&["once", "--secret", "x", "--output-file-mode", "999"], "expected octal permission bits"),
        (&["once", "--secret", "x", "--refresh-before", "soon"], "use a duration such as 90s"),
        (&["once", "--secret", "x", "--resync-interval", "0s"], "'--resync-interval <DURATION>': expected at least 1s"),
        (&["render", "--request-timeout", "11m"], "'--request-timeout <DURATION>': expected 100ms to 10m"),
        (&["once", "--secret", "x", "--namespace", "Bad_NS"], "'--namespace <NAME>': expected a namespace name"),
        (&["once", "--secret", "x", "--all-namespaces", "--exclude-namespace", "Kube_*"], "or a glob"),
        (&["run", "--secret", "x", "--all-namespaces", "--patch-service-account", "A"], "a ServiceAccount name"),
        (&["run", "--secret", "x", "--max-concurrent-writes", "0"], "expected a whole number, at least 1"),
        (&["run", "--secret", "x", "--watch-timeout", "300s"], "expected 1s to 290s"),
        (&["run", "--secret", "x", "--namespace-selector", " "], "use --all-namespaces for every namespace"),
        (&["render", "--impersonate", "a@b.c#x"], "'--impersonate <SERVICE_ACCOUNT_EMAIL>': '#' is not allowed"),
        (&["render", "--impersonate", sa, "--impersonate-delegates", "x@y.z"], "<EMAIL>': the domain y.z is not"),
        (&["render", "--token-lifetime", "1500ms"], "expected whole seconds from 1s to 12h"),
        (&["render", "--impersonation-endpoint", "https://h/v1"], "expected http(s)://HOST[:PORT], without a path"),
        (&["credential-provider", "--workload-identity-provider", "pool"], "workloadIdentityPools/POOL"),
        (&["credential-provider", "--sts-endpoint", "sts.local"], "expected an http(s) URL"),
    ];
    for (args, expected) in cases {
        assert_usage_error(&kit, &[*args, &["--dry-run"]].concat(), expected).await;
    }
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
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'a/b/c' for '--secret"));
}

#[tokio::test]
async fn without_any_credentials_the_error_says_what_was_tried() {
    let kit = Kit::start().await;
    // A metadata server that is not there, wherever the test runs (a GCE VM
    // or the real node's 169.254.169.254 would answer).
    let nowhere = format!("127.0.0.1:{}", common::free_port());
    let out =
        kit.command(&["render", "--request-timeout", "1s"]).env("GCE_METADATA_HOST", nowhere).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("regcred: error: no --key-file, GOOGLE_APPLICATION_CREDENTIALS or gcloud application-default credentials found, so regcred asked the GKE/GCE metadata server"),
        "{last}"
    );
}

/// Runs `regcred ARGS` with extra environment variables.
async fn with_env(kit: &Kit, args: &[&str], env: &[(&str, &str)]) -> common::Output {
    common::finish(kit.command_with(args, env).spawn().unwrap()).await
}

#[tokio::test]
async fn no_arguments_prints_the_help_readably() {
    let kit = Kit::start().await;
    let out = kit.run(&[]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stdout.contains("Usage: regcred <COMMAND>"), "{}", out.stdout);
    assert!(out.stdout.lines().count() > 10, "the help, one item a line: {}", out.stdout);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[tokio::test]
async fn nonsense_timeouts_and_log_levels_are_refused_with_the_choices() {
    let kit = Kit::start().await;
    assert_usage_error(&kit, &["once", "--secret", "x", "--request-timeout", "0s"], "expected 100ms to 10m").await;
    assert_usage_error(
        &kit,
        &["once", "--secret", "x", "--log-level", "bogus"],
        "expected error, warn, info, debug, trace or off",
    )
    .await;
    assert_usage_error(&kit, &["once", "--secret", "x", "--log-level", "info,kube=loud"], "expected error").await;
    // Directives that name a level are fine.
    let out = kit.run(&["once", "--secret", "x", "--log-level", "info,kube=warn", "--dry-run"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
}

#[tokio::test]
async fn errors_name_the_environment_variable_a_value_came_from() {
    let kit = Kit::start().await;
    let out = with_env(&kit, &["once", "--secret", "x"], &[("REGCRED_REFRESH_BEFORE", "banana")]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("set by the environment variable REGCRED_REFRESH_BEFORE"), "{}", out.stderr);
    // Given on the command line, the flag is what is named.
    let out =
        with_env(&kit, &["once", "--secret", "x", "--refresh-before", "banana"], &[("REGCRED_REFRESH_BEFORE", "1m")])
            .await;
    assert!(!out.stderr.contains("environment variable"), "{}", out.stderr);
    let out = with_env(&kit, &["render"], &[("GOOGLE_APPLICATION_CREDENTIALS", "/nope/key.json")]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("GOOGLE_APPLICATION_CREDENTIALS=/nope/key.json: no such file"), "{}", out.stderr);
}

#[tokio::test]
async fn a_boolean_flag_set_false_in_the_environment_is_off() {
    let kit = Kit::start().await;
    let dry = ["run", "--secret", "pull", "--dry-run"];
    for (extra, env) in [
        (&["--namespace", "a"][..], ("REGCRED_ALL_NAMESPACES", "false")),
        (&["--namespace-selector", "x=y"], ("REGCRED_ALL_NAMESPACES", "false")),
        (&[], ("REGCRED_PRUNE", "false")),
        (&["--all-namespaces"], ("REGCRED_PRUNE", "false")),
        (&[], ("REGCRED_PATCH_ANNOTATED_SERVICE_ACCOUNTS", "false")),
    ] {
        let out = with_env(&kit, &[&dry[..], extra].concat(), &[env]).await;
        assert_eq!(out.code, Some(0), "{extra:?} {env:?}: {out:?}");
    }
    // And does not stand in for the choice that other flags need.
    let args = [&dry[..], &["--exclude-namespace", "tmp-*"]].concat();
    let out = with_env(&kit, &args, &[("REGCRED_ALL_NAMESPACES", "false")]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("need --namespace, --namespace-selector or --all-namespaces"), "{}", out.stderr);
}

#[tokio::test]
async fn files_that_are_not_credentials_are_explained_in_plain_words() {
    let kit = Kit::start().await;
    let dir = kit.dir.path();
    std::fs::write(dir.join("array.json"), "[]").unwrap();
    std::fs::write(dir.join("untyped.json"), r#"{"client_email":"a@b.c"}"#).unwrap();
    let p = |n: &str| dir.join(n).display().to_string();
    for (file, expected) in [
        ("array.json", "is not a Google credentials file: expected a JSON object"),
        ("untyped.json", "it has no `type` field; expected service_account, authorized_user, external_account or impersonated_service_account"),
    ] {
        let out = kit.run(&["render", "--key-file", &p(file)]).await;
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(out.stderr.contains(expected), "{file}: {}", out.stderr);
        for internal in ["invalid length", "missing field `type`", "FileType"] {
            assert!(!out.stderr.contains(internal), "{file}: serde's words leak: {}", out.stderr);
        }
    }
}

#[tokio::test]
async fn dry_run_checks_and_does_nothing() {
    let kit = Kit::start_emulator().await;
    let out = kit.once(&["--secret", "gcr-pull", "--dry-run"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("valid"), "{}", out.stdout);
    assert!(kit.emulator().requests().is_empty() && kit.google.requests().is_empty(), "nothing contacted");
    let out = kit.once(&["--secret", "a/b/c", "--dry-run"]).await;
    assert_eq!(out.code, Some(2), "the same checks as a real start: {out:?}");
    assert!(out.stderr.contains("invalid value 'a/b/c' for '--secret"), "{}", out.stderr);
}

#[tokio::test]
async fn logs_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    let kit = Kit::start().await;
    let out = kit.once(&["--secret", "gcr-pull"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains(" INFO "), "{}", out.stderr);
    assert!(!out.stderr.contains('\u{1b}'), "ANSI escapes in a pipe: {:?}", out.stderr);
}

#[tokio::test]
async fn a_missing_output_directory_is_a_write_failure_with_a_hint() {
    let kit = Kit::start().await;
    let file = kit.path("not-there/config.json").display().to_string();
    let out = kit.once(&["--output-file", &file]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let last = out.stderr.lines().last().unwrap();
    assert!(last.contains("does not exist; create it, or mount a volume there"), "{last}");
    assert!(out.stderr.contains("write failed"), "reported as a write failure: {}", out.stderr);
    assert!(!out.stderr.contains("refresh failed"), "the token was minted: {}", out.stderr);
    assert_eq!(kit.issued().len(), 1, "minted once, not again for each retry of the write");
}
