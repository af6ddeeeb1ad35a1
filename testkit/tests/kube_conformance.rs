//! The Kubernetes emulator checked against kube-apiserver: every request of
//! the table in `requests/` is sent to both, and each answer must be the one
//! the table records (status, reason, the fields and reasons of a 422's
//! causes); the two must also agree on the object an error is about.
//!
//! Needs a real control plane (`testkit/control-plane/cluster up DIR`) named
//! by `REGCRED_E2E_DIR`; without it the test is ignored, and run with
//! `--ignored` it fails rather than passing unrun.

mod common;
mod requests;

use std::path::PathBuf;

use regcred_testkit::KubeApi;

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test -p regcred-testkit --test kube_conformance -- --ignored"]
async fn the_emulator_answers_as_kube_apiserver_does() {
    let dir = std::env::var_os("REGCRED_E2E_DIR").filter(|d| !d.is_empty()).map(PathBuf::from).unwrap_or_else(|| {
        panic!("REGCRED_E2E_DIR is not set: start a control plane with testkit/control-plane/cluster up DIR")
    });
    let kit = KubeApi::start().await;
    let mut emulator = requests::Backend::emulator(&kit).await;
    let mut real = requests::Backend::real(&dir.join("kubeconfig")).await;
    let mut report = Vec::new();
    let steps = requests::steps();
    for (i, step) in steps.iter().enumerate() {
        let (theirs, real_differs) = real.run(step).await;
        let (ours, emulator_differs) = emulator.run(step).await;
        let mut lines = Vec::new();
        for (backend, differences) in [(&real, real_differs), (&emulator, emulator_differs)] {
            lines.extend(differences.into_iter().map(|d| format!("  {}: {d}", backend.name)));
        }
        let (about_theirs, about_ours) = (real.about(&theirs), emulator.about(&ours));
        if about_ours != about_theirs {
            lines.push(format!("  the error is about {about_theirs} on kube-apiserver, {about_ours} on the emulator"));
        }
        if !lines.is_empty() {
            report.push(format!(
                "step {i}, {}:\n{}\n  kube-apiserver answered {} {}\n  the emulator answered {} {}",
                step.name(),
                lines.join("\n"),
                theirs.code,
                requests::short(&theirs.body),
                ours.code,
                requests::short(&ours.body)
            ));
        }
    }
    assert!(report.is_empty(), "{} of {} steps differ:\n{}", report.len(), steps.len(), report.join("\n\n"));
}
