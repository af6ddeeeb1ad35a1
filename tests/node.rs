//! On the real node (`testkit/control-plane/node`): regcred installed by the
//! chart runs in pods, and the kubelet and containerd pull with what it
//! writes from a registry that accepts only what Google would accept at that
//! moment. Ignored unless asked for (`--ignored`), with the node running and
//! `REGCRED_NODE_DIR` naming it; `.ci/run` does both.

mod common;

use std::time::{Duration, Instant};

use common::node::{Node, Pull, NEEDS_NODE, PRIVATE_IMAGE};
use serde_json::json;

/// The seed's problem, side by side. Namespace `static` holds the pull
/// Secret `docker login` gives (one access token); namespace `fresh` holds
/// the one regcred, installed by the chart with a GKE user's values, keeps
/// fresh. A pod is created in each every few seconds for more than four
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
    let out = node.helm_install("regcred", &fresh, &values).await;
    assert_eq!(out.code, Some(0), "helm install: {out:?}");
    common::e2e::eventually(Duration::from_secs(60), "regcred's first write", || async {
        node.cluster.secret_doc(&fresh, "gcr-pull", ".dockerconfigjson").await?["auths"].get(&node.registry).cloned()
    })
    .await;

    let image = node.image(PRIVATE_IMAGE);
    let started = Instant::now();
    let span = node.token_lifetime * 9 / 2;
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

#[test]
fn needs_node_names_how_to_run_the_node_tests() {
    // The reason on each #[ignore] above is this constant's text (an
    // attribute cannot name a constant); keep them the same.
    let source = include_str!("node.rs");
    assert!(source.contains(&format!("#[ignore = \"{NEEDS_NODE}\"]")));
}
