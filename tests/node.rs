//! On the real node (`testkit/control-plane/node`): regcred installed by the
//! chart runs in pods, and the kubelet and containerd pull with what it
//! writes from a registry that accepts only what Google would accept at that
//! moment. Ignored unless asked for (`--ignored`), with the node running and
//! `REGCRED_NODE_DIR` naming it; `.ci/run` does both.

mod common;

use std::time::{Duration, Instant};

use common::node::{Node, Pull, NEEDS_NODE, POD_OUTSIDER, POD_READER, PRIVATE_IMAGE};
use serde_json::json;

/// The seed's problem, side by side. Namespace `static` holds the pull
/// Secret `docker login` gives (one access token); namespace `fresh` holds
/// the one regcred, installed by the chart with a GKE user's values, keeps
/// fresh. A pod is created in each every few seconds for three and a half
/// token lifetimes: every pull in `fresh` succeeds, and every pull in
/// `static` after its token expired is refused with 401.
#[tokio::test]
#[ignore = "needs the real node: testkit/control-plane/node up DIR, then REGCRED_NODE_DIR=DIR cargo test --test node -- --ignored"]
async fn pulls_keep_working_with_regcred_and_fail_with_a_docker_login_secret() {
    let node = std::sync::Arc::new(Node::get().await);
    let stale = node.namespace("static").await;
    let fresh = node.namespace("fresh").await;
    let _scene = node.scene(&[&stale, &fresh]);

    let (token, expires) = node.metadata_token().await;
    node.docker_login_secret(&stale, "gcr-pull", &token).await;

    let values = json!({
        "image": node.regcred_image(),
        "registries": [node.registry],
    });
    let install = Instant::now();
    let out = node.helm_install("regcred", &fresh, &values).await;
    assert_eq!(out.code, Some(0), "helm install: {out:?}");
    common::e2e::eventually(Duration::from_secs(60), "regcred's first write", || async {
        node.cluster.secret_doc(&fresh, "gcr-pull", ".dockerconfigjson").await?["auths"].get(&node.registry).cloned()
    })
    .await;
    node.create_pod(&fresh, "first", &node.image(PRIVATE_IMAGE), Some("gcr-pull")).await;
    assert_eq!(node.pull_outcome(&fresh, "first").await, Pull::Pulled);
    eprintln!("figure: helm install --wait to the first successful pull: {:.1} s", install.elapsed().as_secs_f64());
    node.delete_pod(&fresh, "first").await;

    let image = node.image(PRIVATE_IMAGE);
    let started = Instant::now();
    let span = node.token_lifetime * 7 / 2;
    let mut pulls = Vec::new();
    let mut n = 0;
    while started.elapsed() < span {
        n += 1;
        for (ns, kind) in [(&stale, "static"), (&fresh, "fresh")] {
            let name = format!("pull-{n}");
            node.create_pod(ns, &name, &image, Some("gcr-pull")).await;
            let created = Instant::now();
            let (node, ns) = (node.clone(), ns.clone());
            pulls.push(tokio::spawn(async move {
                let outcome = node.pull_outcome(&ns, &name).await;
                node.delete_pod(&ns, &name).await;
                (kind, created, outcome)
            }));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let pulls: Vec<_> = futures::future::join_all(pulls).await.into_iter().map(|r| r.expect("pull task")).collect();
    report_regcred_usage(&node, &fresh).await;

    let count =
        |kind: &str, pred: &dyn Fn(&Pull) -> bool| pulls.iter().filter(|(k, _, p)| *k == kind && pred(p)).count();
    let pulled = |p: &Pull| *p == Pull::Pulled;
    let unauthorized = |p: &Pull| matches!(p, Pull::Refused(m) if m.contains("401 Unauthorized"));
    eprintln!(
        "over {:.0} s ({} token lifetimes of {:?}): fresh {} pulled / {} refused; static {} pulled / {} refused with 401",
        started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64() / node.token_lifetime.as_secs_f64(),
        node.token_lifetime,
        count("fresh", &pulled),
        count("fresh", &|p| !pulled(p)),
        count("static", &pulled),
        count("static", &unauthorized),
    );
    for (kind, created, outcome) in &pulls {
        match *kind {
            "fresh" => assert_eq!(*outcome, Pull::Pulled, "a pull with regcred's Secret failed"),
            // A pod created after the token expired (with a second's margin
            // for the kubelet to get to the pull) must be refused.
            _ if *created > expires + Duration::from_secs(1) => {
                assert!(unauthorized(outcome), "a pull with the expired token was not refused with 401: {outcome:?}")
            }
            _ => {}
        }
    }
    let (_, first, outcome) = &pulls[0];
    assert!(*first < expires, "the first static pull came after the token expired");
    assert_eq!(*outcome, Pull::Pulled, "the static Secret did not work even before its token expired");
    assert!(count("static", &unauthorized) >= 3, "too few static pulls after expiry to show anything");
}

/// Amazon ECR and Azure Container Registry beside Google in one Secret,
/// keyless for each cloud, on a cluster without EKS's or AKS's webhooks:
/// the chart projects the ServiceAccount's tokens (`aws.injectWebIdentity`,
/// `azure.injectWorkloadIdentity`), the test kit's STS and Entra ID check
/// them against the API server's keys, and pods pull from an ECR-named and
/// an ACR-named repository through fronts that authenticate as ECR (HTTP
/// Basic with an `AWS:` token) and ACR (its token server) do. Without the
/// Secret the same pulls are refused.
#[tokio::test]
#[ignore = "needs the real node: testkit/control-plane/node up DIR, then REGCRED_NODE_DIR=DIR cargo test --test node -- --ignored"]
async fn pods_pull_from_ecr_and_acr_with_each_clouds_keyless_identity() {
    let node = Node::get().await;
    let c = &node.clouds;
    // The ServiceAccount `regcred-clouds/regcred` is the one Entra ID's app is federated with.
    let ns = node.fixed_namespace("regcred-clouds").await;
    let _scene = node.scene(&[&ns]);
    let values = json!({
        "image": node.regcred_image(),
        "registries": [node.registry, c.ecr_registry, c.acr_registry],
        "aws": {"roleArn": c.aws_role, "injectWebIdentity": true},
        "azure": {
            "clientId": c.azure_client_id,
            "tenantId": c.azure_tenant_id,
            "injectWorkloadIdentity": true,
            "authorityHost": c.azure_url,
        },
        // Where the emulators are; the clouds' own endpoints otherwise.
        "extraEnv": [
            {"name": "AWS_ENDPOINT_URL_STS", "value": c.aws_url},
            {"name": "AWS_ENDPOINT_URL_ECR", "value": c.aws_url},
            {"name": "REGCRED_AZURE_REGISTRY_ENDPOINT", "value": c.azure_url},
        ],
    });
    let out = node.helm_install("regcred", &ns, &values).await;
    assert_eq!(out.code, Some(0), "helm install: {out:?}");
    let doc = common::e2e::eventually(Duration::from_secs(60), "one document for the three registries", || async {
        let doc = node.cluster.secret_doc(&ns, "gcr-pull", ".dockerconfigjson").await?;
        (doc["auths"].as_object()?.len() == 3).then_some(doc)
    })
    .await;
    let user = |host: &str| doc["auths"][host]["username"].as_str().unwrap_or_default().to_string();
    assert_eq!(user(&node.registry), "oauth2accesstoken");
    assert_eq!(user(&c.ecr_registry), "AWS");
    assert_eq!(user(&c.acr_registry), "00000000-0000-0000-0000-000000000000");
    for (cloud, host) in [("ecr", &c.ecr_registry), ("acr", &c.acr_registry)] {
        let image = format!("{host}/{PRIVATE_IMAGE}");
        node.create_pod(&ns, &format!("{cloud}-with-secret"), &image, Some("gcr-pull")).await;
        node.create_pod(&ns, &format!("{cloud}-without"), &image, None).await;
        assert_eq!(node.pull_outcome(&ns, &format!("{cloud}-with-secret")).await, Pull::Pulled, "{image}");
        let refused = node.pull_outcome(&ns, &format!("{cloud}-without")).await;
        assert!(
            matches!(&refused, Pull::Refused(m) if m.contains("401 Unauthorized")),
            "{image} without a credential: {refused:?}"
        );
        eprintln!("figure: {image}: pulled with regcred's Secret; without it: {refused:?}");
    }
}

/// A test that cannot run where it is run is reported as ignored, with the
/// reason, never as passed: every test that needs the real node or the real
/// control plane carries the `#[ignore]` reason of its kind, word for word.
#[test]
fn every_test_that_needs_a_real_cluster_is_ignored_with_how_to_run_it() {
    use common::e2e::NEEDS_CONTROL_PLANE;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let reason = match name.as_str() {
            "node.rs" => NEEDS_NODE,
            n if n.starts_with("e2e_") && n.ends_with(".rs") => NEEDS_CONTROL_PLANE,
            _ => continue,
        };
        let source = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = source.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("#[tokio::test") {
                let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
                assert_eq!(
                    next,
                    format!("#[ignore = \"{reason}\"]"),
                    "{name}:{}: an async test without the reason",
                    i + 2
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 25, "only {checked} tests found: the check looks in the wrong place");
}

/// The regcred pod's memory working set and CPU as the kubelet measures them
/// (`/stats/summary`), printed as figures.
async fn report_regcred_usage(node: &Node, ns: &str) {
    let pods = node.pods(ns, "app.kubernetes.io/name=regcred").await;
    let Some(name) = pods.first().and_then(|p| p.metadata.name.clone()) else {
        panic!("no regcred pod in {ns}");
    };
    let stats = common::e2e::eventually(Duration::from_secs(30), "the regcred pod's stats", || async {
        node.pod_stats(ns, &name).await.filter(|s| s["containers"].is_array())
    })
    .await;
    let container = stats["containers"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "regcred")).cloned();
    let container = container.unwrap_or_else(|| panic!("no regcred container in the pod's stats: {stats}"));
    let mib = container["memory"]["workingSetBytes"].as_u64().unwrap_or(0) as f64 / 1048576.0;
    let cpu = container["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap_or(0) as f64 / 1e9;
    let started = pods[0].status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
    let age = started.map(|t| (unix_now() - t.as_second()) as f64).unwrap_or(f64::NAN);
    eprintln!(
        "figure: regcred pod {ns}/{name}: memory working set {mib:.1} MiB, CPU {cpu:.2} s over {age:.0} s \
         ({:.2} millicores on average)",
        cpu / age * 1000.0
    );
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The README's native-sidecar recipe (charts/regcred/examples/sidecar-pod.yaml)
/// as a real pod, with only the images and the app's command filled in: the
/// app container, another non-root user, starts after regcred is ready and
/// keeps reading a document whose credential the registry accepts at that
/// moment, across several token expiries.
#[tokio::test]
#[ignore = "needs the real node: testkit/control-plane/node up DIR, then REGCRED_NODE_DIR=DIR cargo test --test node -- --ignored"]
async fn the_sidecar_recipe_gives_the_app_a_current_credential_across_expiries() {
    let node = Node::get().await;
    let ns = node.namespace("sidecar").await;
    let _scene = node.scene(&[&ns]);
    node.cluster.kubectl(&["create", "serviceaccount", "app", "--namespace", &ns], "").await;
    let recipe = include_str!("../charts/regcred/examples/sidecar-pod.yaml");
    // The app: every 2 s, read the file and ask the registry's token
    // endpoint with its credential for the private repository.
    let app = format!(
        r#"while true; do auth=$(sed -n 's/.*"auth": *"\([^"]*\)".*/\1/p' /run/regcred/config.json | head -n 1); if [ -z "$auth" ]; then echo "$(date +%s) unreadable"; elif wget -q -O /dev/null --header "Authorization: Basic $auth" "http://169.254.169.254/v2/token?service={}&scope=repository:regcred-node/private/app:pull"; then echo "$(date +%s) accepted $(echo "$auth" | md5sum | cut -c1-8)"; else echo "$(date +%s) refused"; fi; sleep 2; done"#,
        node.registry
    );
    let pod = recipe.replace("ghcr.io/regcred/regcred:0.1.0", &node.image("regcred-node/public/regcred:ci")).replace(
        "image: registry.example.com/app:1.0",
        &format!("image: {}\n      command: [\"/bin/sh\", \"-c\", {app:?}]", node.image("regcred-node/public/tools:1")),
    );
    assert!(!pod.contains("ghcr.io") && !pod.contains("registry.example.com"), "the recipe's images were replaced");
    node.cluster.kubectl(&["apply", "--namespace", &ns, "-f", "-"], &pod).await;

    // Read until the app has been reading for two and a half lifetimes:
    // at least two rotations, whatever the phase it started in.
    let span = |logs: &str| -> Option<(u64, u64)> {
        let stamp = |l: &str| l.split(' ').next()?.parse::<u64>().ok();
        Some((stamp(logs.lines().next()?)?, stamp(logs.lines().last()?)?))
    };
    let wanted = (node.token_lifetime * 5 / 2).as_secs();
    let logs = common::e2e::eventually(node.token_lifetime * 5, "the app's reads over 2.5 token lifetimes", || async {
        let logs = node.logs(&ns, "app-with-regcred", "app").await;
        span(&logs).filter(|(first, last)| last - first >= wanted).map(|_| logs)
    })
    .await;
    let lines: Vec<&str> = logs.lines().collect();
    let (first, last) = span(&logs).unwrap();
    let credentials: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix(|c: char| c.is_ascii_digit()))
        .filter_map(|l| l.split(' ').nth(2))
        .collect();
    eprintln!(
        "sidecar: {} reads over {} s, {} distinct credentials, {} not accepted",
        lines.len(),
        last - first,
        credentials.len(),
        lines.iter().filter(|l| !l.contains(" accepted ")).count()
    );
    for line in &lines {
        assert!(line.contains(" accepted "), "the app read a credential the registry refused, or none: {line}\n{logs}");
    }
    assert!(
        Duration::from_secs(last - first) >= node.token_lifetime * 2,
        "the app read for less than two token lifetimes:\n{logs}"
    );
    assert!(credentials.len() >= 3, "the credential did not rotate across expiries:\n{logs}");
}

/// CronJob mode: the chart's install Job writes the Secret before the first
/// schedule, a scheduled run rotates it, and pods pull after each. The
/// credential is a key file, whose tokens are minted fresh at each run (the
/// metadata server would hand a CronJob a cached token with as little as a
/// twelfth of its life left).
#[tokio::test]
#[ignore = "needs the real node: testkit/control-plane/node up DIR, then REGCRED_NODE_DIR=DIR cargo test --test node -- --ignored"]
async fn cronjob_mode_writes_at_install_and_rotates_on_schedule() {
    let node = Node::get().await;
    let ns = node.namespace("cronjob").await;
    let _scene = node.scene(&[&ns]);
    let key = node.cluster.dir.join("google/key.json");
    node.cluster
        .kubectl(
            &[
                "create",
                "secret",
                "generic",
                "google-key",
                "--namespace",
                &ns,
                &format!("--from-file=key.json={}", key.display()),
            ],
            "",
        )
        .await;
    let values = json!({
        "mode": "cronjob",
        "image": node.regcred_image(),
        "registries": [node.registry],
        "credentials": {"existingSecret": "google-key"},
        "cronjob": {"schedule": "* * * * *"},
    });
    let out = node.helm_install("regcred", &ns, &values).await;
    assert_eq!(out.code, Some(0), "helm install: {out:?}");
    let installed = node.pull_password(&ns, "gcr-pull").await.expect("the install Job wrote the Secret");
    node.create_pod(&ns, "after-install", &node.image(PRIVATE_IMAGE), Some("gcr-pull")).await;
    assert_eq!(node.pull_outcome(&ns, "after-install").await, Pull::Pulled);

    let rotated = common::e2e::eventually(Duration::from_secs(120), "a scheduled run's rotation", || async {
        node.pull_password(&ns, "gcr-pull").await.filter(|p| *p != installed)
    })
    .await;
    node.create_pod(&ns, "after-schedule", &node.image(PRIVATE_IMAGE), Some("gcr-pull")).await;
    assert_eq!(node.pull_outcome(&ns, "after-schedule").await, Pull::Pulled);
    assert_ne!(rotated, installed);
    let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> = kube::Api::namespaced(node.cluster.admin.clone(), &ns);
    common::e2e::eventually(Duration::from_secs(60), "the scheduled Job's success", || async {
        let jobs = jobs.list(&Default::default()).await.ok()?;
        jobs.items
            .iter()
            .any(|j| {
                j.metadata.owner_references.iter().flatten().any(|o| o.kind == "CronJob")
                    && j.status.as_ref().and_then(|s| s.succeeded) == Some(1)
            })
            .then_some(())
    })
    .await;
}

/// Fan-out on a real node: a namespace created after install gets the Secret
/// and its `default` ServiceAccount patched, and a pod there that names no
/// Secret pulls. Also measures the admission race: a namespace created with
/// a Deployment in the same step, whose pods are admitted before regcred
/// patches the ServiceAccount, pull without the Secret (counted, not fixed).
#[tokio::test]
#[ignore = "needs the real node: testkit/control-plane/node up DIR, then REGCRED_NODE_DIR=DIR cargo test --test node -- --ignored"]
async fn fan_out_reaches_a_new_namespace_and_its_pods_pull() {
    let node = Node::get().await;
    let ns = node.namespace("fanout").await;
    let label = node.cluster.unique("pull");
    let _scene = node.scene(&[&ns]);
    let values = json!({
        "image": node.regcred_image(),
        "registries": [node.registry],
        "targets": {"namespaceSelector": format!("regcred-node/pull={label}"), "serviceAccounts": ["default"]},
    });
    let out = node.helm_install("regcred", &ns, &values).await;
    assert_eq!(out.code, Some(0), "helm install: {out:?}");

    let team = node.cluster.unique("team");
    let created = Instant::now();
    node.cluster.create_namespace(&team, &[("regcred-node/pull", &label)]).await;
    let sas: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(node.cluster.admin.clone(), &team);
    common::e2e::eventually(Duration::from_secs(60), "the default ServiceAccount patched", || async {
        let sa = sas.get_opt("default").await.ok()??;
        sa.image_pull_secrets?.iter().any(|r| r.name == "gcr-pull").then_some(())
    })
    .await;
    node.create_pod(&team, "app", &node.image(PRIVATE_IMAGE), None).await;
    assert_eq!(node.pull_outcome(&team, "app").await, Pull::Pulled, "a pod naming no Secret did not pull");
    eprintln!(
        "figure: namespace creation to the first successful pull in it: {:.1} s",
        created.elapsed().as_secs_f64()
    );

    // The race: the namespace and a Deployment of 5 in one step.
    let raced = node.cluster.unique("race");
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "namespace": raced},
        "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "raced"}},
                 "template": {"metadata": {"labels": {"app": "raced"}},
                              "spec": {"terminationGracePeriodSeconds": 0,
                                       "containers": [{"name": "app", "image": node.image(PRIVATE_IMAGE)}]}}},
    });
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": raced, "labels": {"regcred-node/pull": label}}});
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [namespace, deployment]});
    node.cluster.kubectl(&["apply", "-f", "-"], &list.to_string()).await;
    let pods = common::e2e::eventually(Duration::from_secs(90), "5 pods that pulled or were refused", || async {
        let pods = node.pods(&raced, "app=raced").await;
        let mut outcomes = Vec::new();
        for p in &pods {
            let name = p.metadata.name.clone()?;
            let state = p.status.as_ref()?.container_statuses.as_ref()?.first()?.state.clone()?;
            let done = state.running.is_some()
                || state.waiting.as_ref().and_then(|w| w.reason.as_deref()).is_some_and(|r| r.contains("ImagePull"));
            if !done {
                return None;
            }
            outcomes.push((name, state.running.is_some(), p.spec.as_ref()?.image_pull_secrets.is_some()));
        }
        (outcomes.len() == 5).then_some(outcomes)
    })
    .await;
    let refused = pods.iter().filter(|(_, running, _)| !running).count();
    let without_secret = pods.iter().filter(|(_, _, has)| !has).count();
    eprintln!(
        "figure: admission race: namespace and a Deployment of 5 in one step: {refused} of 5 pods could not pull \
         ({without_secret} admitted before the ServiceAccount was patched)"
    );
    // Every refused pod is one admitted without the Secret: nothing else fails.
    for (name, running, has_secret) in &pods {
        assert!(*running || !*has_secret, "pod {name} had the Secret and still could not pull");
    }
}

/// With KubeletEnsureSecretPulledImages and AlwaysVerify (the node's
/// setting), an image already on the node is started for a pod only if its
/// credentials pulled that image before or can pull it now. After regcred
/// rotates its Secret in place (new credentials, never used for this image),
/// a new pod with `IfNotPresent` still starts: the kubelet verifies the new
/// token with the registry. A Secret holding an expired token that was never
/// used for the image is refused, although the image is there.
#[tokio::test]
#[ignore = "needs the real node: testkit/control-plane/node up DIR, then REGCRED_NODE_DIR=DIR cargo test --test node -- --ignored"]
async fn a_rotated_secret_still_verifies_an_image_already_on_the_node() {
    let node = Node::get().await;
    let fresh = node.namespace("verify").await;
    let stale = node.namespace("verify-static").await;
    let _scene = node.scene(&[&fresh, &stale]);
    // No other test pulls this image: the kubelet's records of who pulled
    // it are this test's alone (an image pulled through the credential
    // provider would count as accessible to every pod).
    let image = node.image("regcred-node/private/verify:1");
    let (token, expires) = node.metadata_token().await;
    node.docker_login_secret(&stale, "gcr-pull", &token).await;
    let out = node
        .helm_install("regcred", &fresh, &json!({"image": node.regcred_image(), "registries": [node.registry]}))
        .await;
    assert_eq!(out.code, Some(0), "helm install: {out:?}");

    node.create_pod_pulling(&fresh, "before", &image, Some("gcr-pull"), "IfNotPresent").await;
    assert_eq!(node.pull_outcome(&fresh, "before").await, Pull::Pulled);
    let first = node.pull_password(&fresh, "gcr-pull").await.unwrap();
    common::e2e::eventually(node.token_lifetime * 2, "regcred's rotation", || async {
        node.pull_password(&fresh, "gcr-pull").await.filter(|p| *p != first)
    })
    .await;
    let until_expiry = expires.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
    tokio::time::sleep(until_expiry).await;

    node.create_pod_pulling(&fresh, "after", &image, Some("gcr-pull"), "IfNotPresent").await;
    assert_eq!(node.pull_outcome(&fresh, "after").await, Pull::Pulled, "the rotated Secret did not verify");
    // The expired token, copied into a Secret of its own (the kubelet has no
    // record of it pulling the image).
    node.docker_login_secret(&stale, "copied", &token).await;
    node.create_pod_pulling(&stale, "after", &image, Some("copied"), "IfNotPresent").await;
    let outcome = node.pull_outcome(&stale, "after").await;
    assert!(
        matches!(&outcome, Pull::Refused(m) if m.contains("401")),
        "an expired Secret started an image already on the node: {outcome:?}"
    );
}

/// The kubelet credential provider, installed by the chart's node installer:
/// the DaemonSet writes regcred and the CredentialProviderConfig where the
/// kubelet reads them, the kubelet restarts with the README's two flags (as
/// a node's bootstrap does), and a pod with no pull Secret at all pulls the
/// private image with the node's identity. Before, the same pod is refused.
#[tokio::test]
#[ignore = "needs the real node: testkit/control-plane/node up DIR, then REGCRED_NODE_DIR=DIR cargo test --test node -- --ignored"]
async fn the_node_installer_makes_the_kubelet_pull_without_a_secret() {
    let node = Node::get().await;
    let ns = node.namespace("provider").await;
    let _scene = node.scene(&[&ns]);
    let image = node.image(PRIVATE_IMAGE);
    node.create_pod(&ns, "before", &image, None).await;
    let outcome = node.pull_outcome(&ns, "before").await;
    assert!(matches!(&outcome, Pull::Refused(m) if m.contains("403")), "pulled without any credential: {outcome:?}");

    let host = node.cluster.dir.join("credential-provider");
    let (bin_dir, config) = (host.join("bin"), host.join("config/config.json"));
    let values = json!({
        "mode": "none",
        "image": node.regcred_image(),
        "credentialProvider": {"nodeInstaller": {
            "enabled": true,
            "binDir": bin_dir.to_str().unwrap(),
            "configFile": config.to_str().unwrap(),
        }},
    });
    let out = node.helm_install("regcred", &ns, &values).await;
    assert_eq!(out.code, Some(0), "helm install: {out:?}");
    node.installed_provider(&bin_dir, &config).await;
    // The same pulls through a Secret first, for comparison: a key, which
    // never expires, as the Secret's credential.
    let key = std::fs::read_to_string(node.cluster.dir.join("google/key.json")).unwrap();
    node.pull_secret(&ns, "key", "_json_key", &key).await;
    let through_secret = node.median_pull(&ns, "secret", &image, Some("key"), 20).await.expect("pulls with a Secret");

    node.restart_kubelet_with_provider(&bin_dir, &config).await;
    let through_provider = node.median_pull(&ns, "provider", &image, None, 20).await;
    node.restart_kubelet(&[]).await;
    let through_provider =
        through_provider.expect("a pod with no pull Secret did not pull through the credential provider");
    eprintln!(
        "figure: pod creation to running, image pulled (Always), median of 20: through a Secret {:.2} s, \
         through the credential provider {:.2} s",
        through_secret.as_secs_f64(),
        through_provider.as_secs_f64()
    );
}

/// Pod identity through the credential provider (KEP-4412): installed by the
/// chart's node installer with `workloadIdentityProvider`, the kubelet hands
/// regcred a token for each pod's ServiceAccount; regcred exchanges it at STS
/// and impersonates the ServiceAccount's `iam.gke.io/gcp-service-account`.
/// A pod whose Google identity may read the repository pulls; one whose
/// identity may not is refused, with no pull Secret in either.
#[tokio::test]
#[ignore = "needs the real node: testkit/control-plane/node up DIR, then REGCRED_NODE_DIR=DIR cargo test --test node -- --ignored"]
async fn pod_identity_pulls_as_each_pods_own_google_identity() {
    let node = Node::get().await;
    let ns = node.namespace("pod-identity").await;
    let _scene = node.scene(&[&ns]);
    for (sa, google) in [("reader", POD_READER), ("outsider", POD_OUTSIDER)] {
        node.cluster.kubectl(&["create", "serviceaccount", sa, "--namespace", &ns], "").await;
        let annotation = format!("iam.gke.io/gcp-service-account={google}");
        node.cluster.kubectl(&["annotate", "serviceaccount", sa, "--namespace", &ns, &annotation], "").await;
    }
    let host = node.cluster.dir.join("pod-identity");
    let (bin_dir, config) = (host.join("bin"), host.join("config/config.json"));
    let values = json!({
        "mode": "none",
        "image": node.regcred_image(),
        "credentialProvider": {
            "workloadIdentityProvider": node.sts_audience,
            // Only for the node: Google's STS and IAM Credentials are the
            // emulator at the metadata server's address.
            "extraArgs": ["--sts-endpoint=http://169.254.169.254/v1/token", "--impersonation-endpoint=http://169.254.169.254"],
            "nodeInstaller": {"enabled": true, "binDir": bin_dir.to_str().unwrap(), "configFile": config.to_str().unwrap()},
        },
    });
    let out = node.helm_install("regcred", &ns, &values).await;
    assert_eq!(out.code, Some(0), "helm install: {out:?}");
    node.installed_provider(&bin_dir, &config).await;
    node.restart_kubelet_with_provider(&bin_dir, &config).await;
    let image = node.image(PRIVATE_IMAGE);
    let mut outcomes = Vec::new();
    for sa in ["reader", "outsider"] {
        node.create_pod_as(&ns, sa, &image, sa).await;
        outcomes.push(node.pull_outcome(&ns, sa).await);
    }
    node.restart_kubelet(&[]).await;
    assert_eq!(outcomes[0], Pull::Pulled, "the pod whose identity may read the repository");
    assert!(
        matches!(&outcomes[1], Pull::Refused(m) if m.contains("403")),
        "the pod whose identity may not read the repository: {:?}",
        outcomes[1]
    );
}

/// The kubelet plugin with each pod's own identity for ECR and ACR
/// (KEP-4412 service-account tokens): the chart's installer writes an entry
/// per cloud (`credentialProvider.ecr.identity: pod`, `acr.identity: pod`),
/// the kubelet hands regcred a token for the pod's ServiceAccount with that
/// cloud's audience, and regcred exchanges it for the role and the identity
/// that the ServiceAccount's annotations name. A pod whose ServiceAccount
/// names neither gets no credential, never the node's: its pull is refused.
#[tokio::test]
#[ignore = "needs the real node: testkit/control-plane/node up DIR, then REGCRED_NODE_DIR=DIR cargo test --test node -- --ignored"]
async fn pod_identity_pulls_from_ecr_and_acr_as_each_pods_own_service_account() {
    let node = Node::get().await;
    let c = &node.clouds;
    // `regcred-pods/puller` is the ServiceAccount Entra ID's app is federated with.
    let ns = node.fixed_namespace("regcred-pods").await;
    let _scene = node.scene(&[&ns]);
    for sa in ["puller", "stranger"] {
        node.cluster.kubectl(&["create", "serviceaccount", sa, "--namespace", &ns], "").await;
    }
    let annotations = [
        format!("eks.amazonaws.com/role-arn={}", c.aws_role),
        format!("kubernetes.azure.com/acr-client-id={}", c.azure_client_id),
        format!("kubernetes.azure.com/acr-tenant-id={}", c.azure_tenant_id),
    ];
    let annotate = [
        &["annotate", "serviceaccount", "puller", "--namespace", &ns][..],
        &annotations.each_ref().map(String::as_str)[..],
    ]
    .concat();
    node.cluster.kubectl(&annotate, "").await;
    let host = node.cluster.dir.join("pod-identity-clouds");
    let (bin_dir, config) = (host.join("bin"), host.join("config/config.json"));
    let values = json!({
        "mode": "none",
        "image": node.regcred_image(),
        "credentialProvider": {
            "ecr": {"identity": "pod"},
            "acr": {"identity": "pod"},
            // Only for the node: AWS's and Azure's endpoints are the emulators.
            "extraArgs": [
                format!("--aws-sts-endpoint={}", c.aws_url),
                format!("--aws-ecr-endpoint={}", c.aws_url),
                format!("--azure-authority-host={}", c.azure_url),
                format!("--azure-registry-endpoint={}", c.azure_url),
            ],
            "nodeInstaller": {"enabled": true, "binDir": bin_dir.to_str().unwrap(), "configFile": config.to_str().unwrap()},
        },
    });
    let out = node.helm_install("regcred", &ns, &values).await;
    assert_eq!(out.code, Some(0), "helm install: {out:?}");
    node.installed_provider(&bin_dir, &config).await;
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    let names: Vec<&str> = written["providers"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["regcred", "regcred-ecr", "regcred-acr"], "{written}");
    node.restart_kubelet_with_provider(&bin_dir, &config).await;
    let mut outcomes = Vec::new();
    for (cloud, registry) in [("ecr", &c.ecr_registry), ("acr", &c.acr_registry)] {
        let image = format!("{registry}/{PRIVATE_IMAGE}");
        for sa in ["puller", "stranger"] {
            let pod = format!("{cloud}-{sa}");
            node.create_pod_as(&ns, &pod, &image, sa).await;
            outcomes.push((pod.clone(), node.pull_outcome(&ns, &pod).await));
        }
    }
    node.restart_kubelet(&[]).await;
    for (pod, outcome) in &outcomes {
        eprintln!("figure: pod identity, {pod}: {outcome:?}");
        if pod.ends_with("-puller") {
            assert_eq!(*outcome, Pull::Pulled, "{pod}: the ServiceAccount names a role and an identity that may pull");
        } else {
            assert!(
                matches!(outcome, Pull::Refused(m) if m.contains("401 Unauthorized")),
                "{pod}: a ServiceAccount that names no identity gets no credential: {outcome:?}"
            );
        }
    }
}

/// Two replicas, one writer (leader election with a Lease), installed with
/// `replicaCount=2`: the Secret is written once per rotation, as with one
/// replica, and only by the Lease's holder; deleting the leader's pod hands
/// over to the standby, whose first write is measured. A pod pulls after.
#[tokio::test]
#[ignore = "needs the real node: testkit/control-plane/node up DIR, then REGCRED_NODE_DIR=DIR cargo test --test node -- --ignored"]
async fn two_replicas_write_once_per_rotation_and_the_standby_takes_over_from_a_deleted_leader() {
    use k8s_openapi::api::coordination::v1::Lease;
    let node = Node::get().await;
    let ns = node.namespace("ha").await;
    let _scene = node.scene(&[&ns]);
    let values = json!({"image": node.regcred_image(), "registries": [node.registry], "replicaCount": 2});
    let out = node.helm_install("regcred", &ns, &values).await;
    assert_eq!(out.code, Some(0), "helm install: {out:?}");
    let leases: kube::Api<Lease> = kube::Api::namespaced(node.cluster.admin.clone(), &ns);
    let holder = || async {
        let lease = leases.get_opt("regcred").await.ok()??;
        let holder = lease.spec?.holder_identity?;
        // POD_NAME_suffix: the pod's name.
        holder.rsplit_once('_').map(|(pod, _)| pod.to_string())
    };
    let leader = common::e2e::eventually(Duration::from_secs(60), "a leader", holder).await;
    let pods: Vec<String> = node
        .pods(&ns, "app.kubernetes.io/instance=regcred,app.kubernetes.io/component=refresher")
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(pods.len(), 2, "{pods:?}");
    let standby = pods.iter().find(|p| **p != leader).unwrap().clone();

    // Writes per rotation over two token lifetimes: each write gives the
    // Secret a new resourceVersion, each rotation a new password. One
    // writer writes once per rotation; a second writer would add writes
    // (its own tokens, or rewrites), and its log would say so.
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(node.cluster.admin.clone(), &ns);
    let (mut writes, mut rotations) = (0, 0);
    let mut last: Option<(String, String)> = None;
    let window = Instant::now();
    while window.elapsed() < node.token_lifetime * 2 {
        if let Ok(s) = secrets.get("gcr-pull").await {
            let version = s.metadata.resource_version.clone().unwrap_or_default();
            // From the same object: a second read could see a later write.
            let data = s.data.unwrap_or_default();
            let doc: serde_json::Value =
                data.get(".dockerconfigjson").and_then(|b| serde_json::from_slice(&b.0).ok()).unwrap_or_default();
            let password = doc["auths"][&node.registry]["password"].as_str().unwrap_or_default().to_string();
            if let Some((v, p)) = &last {
                writes += usize::from(*v != version);
                rotations += usize::from(*p != password);
            }
            last = Some((version, password));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leader_log = node.logs(&ns, &leader, "regcred").await;
    let standby_log = node.logs(&ns, &standby, "regcred").await;
    eprintln!(
        "figure: two replicas over {:.0} s: {writes} writes of the Secret for {rotations} rotations; \
         the leader logged {} writes in all, the standby {}",
        window.elapsed().as_secs_f64(),
        leader_log.matches("wrote credential").count(),
        standby_log.matches("wrote credential").count(),
    );
    assert!(rotations >= 2, "too few rotations to count: {rotations}");
    assert_eq!(writes, rotations, "a write per rotation, as with one replica");
    assert!(!standby_log.contains("wrote credential"), "the standby wrote: {standby_log}");
    assert!(standby_log.contains("standing by"), "{standby_log}");

    // Delete the leader's pod, as a node drain would.
    let before = node.pull_password(&ns, "gcr-pull").await;
    let deleted = Instant::now();
    kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(node.cluster.admin.clone(), &ns)
        .delete(&leader, &Default::default())
        .await
        .expect("delete the leader's pod");
    let new_leader = common::e2e::eventually(Duration::from_secs(60), "a new leader", || async {
        holder().await.filter(|h| *h != leader)
    })
    .await;
    let took_lease = deleted.elapsed();
    // Its first mint: it confirms the Secret (a new token is written; the
    // metadata server's cached one is already there and is not rewritten).
    let minted_after_lead = |log: &str| {
        log.split_once("this replica leads").is_some_and(|(_, after)| after.contains("minted a credential"))
    };
    common::e2e::eventually(Duration::from_secs(60), "the new leader's first mint", || async {
        minted_after_lead(&node.logs(&ns, &new_leader, "regcred").await).then_some(())
    })
    .await;
    let took_mint = deleted.elapsed();
    // Its first write: at the latest the next rotation.
    common::e2e::eventually(node.token_lifetime * 2, "the new leader's first write", || async {
        node.pull_password(&ns, "gcr-pull").await.filter(|p| Some(p) != before.as_ref())
    })
    .await;
    let took_write = deleted.elapsed();
    eprintln!(
        "figure: leader pod deleted to the Lease held by the new leader: {:.1} s; to its first mint (the Secret \
         confirmed): {:.1} s; to its first write (the next rotation): {:.1} s",
        took_lease.as_secs_f64(),
        took_mint.as_secs_f64(),
        took_write.as_secs_f64()
    );
    // The standby, or the Deployment's new pod if it looked first: the
    // leader released the Lease on SIGTERM, and whoever looks next takes it.
    assert_ne!(new_leader, leader);
    // Released on SIGTERM: well within a lease duration (15 s).
    assert!(took_mint < Duration::from_secs(15), "took {took_mint:?}");
    let new_log = node.logs(&ns, &new_leader, "regcred").await;
    assert!(new_log.contains("wrote credential"), "the write was not the new leader's: {new_log}");
    node.create_pod(&ns, "after-failover", &node.image(PRIVATE_IMAGE), Some("gcr-pull")).await;
    assert_eq!(node.pull_outcome(&ns, "after-failover").await, Pull::Pulled);
}
