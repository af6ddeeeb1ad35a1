#!/usr/bin/env python3
"""Unit tests for the regcred chart: render it with helm and assert on the
parsed manifests. Needs helm on PATH and PyYAML.

Run: python3 charts/regcred/tests/test_chart.py   (prints 'N passed, N failed, N skipped')
every_rendered_flag_exists_in_the_cli needs the regcred binary
(target/debug/regcred, or REGCRED_BIN) and is skipped without it.
"""
import base64
import copy
import json
import os
import re
import subprocess
import sys
import traceback

import yaml

CHART = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NS = "regcred"


def render(*values_files, sets=(), release="t", expect_fail=False, api_versions=()):
    cmd = ["helm", "template", release, CHART, "--namespace", NS]
    for a in api_versions:
        cmd += ["--api-versions", a]
    for f in values_files:
        cmd += ["-f", os.path.join(CHART, f)]
    for s in sets:
        cmd += ["--set", s]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if expect_fail:
        assert p.returncode != 0, f"helm template {sets} {values_files} should fail"
        return p.stderr
    assert p.returncode == 0, f"helm template failed: {p.stderr}"
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def kinds(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind):
    found = kinds(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(doc):
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def container(doc):
    cs = pod_spec(doc)["containers"]
    assert len(cs) == 1
    return cs[0]


def args(doc):
    return container(doc)["args"]


def rules(doc):
    return doc.get("rules", [])


def secret_rules(doc):
    return [r for r in rules(doc) if "secrets" in r["resources"]]


def workloads(docs):
    return [d for d in docs if d["kind"] in ("Deployment", "CronJob", "Job")]


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# --- RBAC ----------------------------------------------------------------


@test
def rbac_names_only_the_target_secrets():
    docs = render("ci/deployment-values.yaml")
    roles = {r["metadata"]["namespace"]: r for r in kinds(docs, "Role")}
    assert set(roles) == {NS, "ci"}, roles.keys()
    expected = {NS: ["gcr-pull"], "ci": ["build-pull", "gcr-pull"]}
    for ns, role in roles.items():
        named = [r for r in secret_rules(role) if "resourceNames" in r]
        assert len(named) == 1
        assert sorted(named[0]["resourceNames"]) == expected[ns], named
        assert sorted(named[0]["verbs"]) == ["get", "patch"]
    bindings = {b["metadata"]["namespace"]: b for b in kinds(docs, "RoleBinding")}
    assert set(bindings) == {NS, "ci"}
    for b in bindings.values():
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "t-regcred", "namespace": NS}]
        assert b["roleRef"]["kind"] == "Role"


@test
def rbac_has_no_wildcards_in_any_scenario():
    for f in sorted(os.listdir(os.path.join(CHART, "ci"))):
        for d in render("ci/" + f):
            for r in rules(d):
                for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                    assert "*" not in r.get(field, []), f"{f}: wildcard in {d['kind']} {r}"
                # Only create (which RBAC cannot limit by name) and events
                # are allowed without resourceNames on secrets.
                if "secrets" in r["resources"] and "resourceNames" not in r:
                    assert r["verbs"] == ["create"], f"{f}: unnamed secret verbs {r}"
                # ServiceAccounts go unnamed only for annotated patching.
                if "serviceaccounts" in r["resources"] and "resourceNames" not in r:
                    assert f == "fan-out-values.yaml", f"{f}: unnamed serviceaccounts {r}"


@test
def rbac_grants_create_only_without_create_secrets():
    role = one(render(), "Role")
    creates = [r for r in secret_rules(role) if "create" in r["verbs"]]
    assert len(creates) == 1 and "resourceNames" not in creates[0]
    events = [r for r in rules(role) if r["apiGroups"] == ["events.k8s.io"]]
    assert events and events[0]["resources"] == ["events"]
    assert sorted(events[0]["verbs"]) == ["create", "patch"]

    docs = render("ci/create-secrets-values.yaml")
    for role in kinds(docs, "Role"):
        for r in secret_rules(role):
            assert "create" not in r["verbs"], r
        assert [r for r in rules(role) if r["apiGroups"] == ["events.k8s.io"]]


def rule_set(doc):
    """A role's rules as a set of (apiGroup, resource, resourceNames, verbs),
    one entry per group and resource, so rules compare regardless of order."""
    out = set()
    for r in rules(doc):
        names = tuple(sorted(r["resourceNames"])) if "resourceNames" in r else None
        for g in r["apiGroups"]:
            for res in r["resources"]:
                out.add((g, res, names, tuple(sorted(r["verbs"]))))
    assert len(out) == sum(len(r["apiGroups"]) * len(r["resources"]) for r in rules(doc)), \
        f"duplicate rules in {doc['kind']}"
    return out


EVENTS = ("events.k8s.io", "events", None, ("create", "patch"))
NAMESPACES = ("", "namespaces", None, ("list", "watch"))
CREATE_SECRETS = ("", "secrets", None, ("create",))


@test
def cluster_role_only_with_fan_out():
    for f in sorted(os.listdir(os.path.join(CHART, "ci"))):
        docs = render("ci/" + f)
        fan_out = f.startswith("fan-out")
        has_cluster = bool(kinds(docs, "ClusterRole") or kinds(docs, "ClusterRoleBinding"))
        assert has_cluster == fan_out, f
        if fan_out:
            assert not kinds(docs, "Role") and not kinds(docs, "RoleBinding"), f
            crb = one(docs, "ClusterRoleBinding")
            assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "t-regcred", "namespace": NS}]
            assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                      "name": one(docs, "ClusterRole")["metadata"]["name"]}


@test
def role_rules_without_fan_out():
    """Exactly what regcred's Secret sink does: get, then create or patch
    (a merge patch carrying the resourceVersion it read), plus Events."""
    assert rule_set(one(render(), "Role")) == {
        ("", "secrets", ("gcr-pull",), ("get", "patch")),
        CREATE_SECRETS,
        EVENTS,
    }
    for role in kinds(render("ci/create-secrets-values.yaml"), "Role"):
        assert rule_set(role) == {("", "secrets", ("gcr-pull",), ("get", "patch")), EVENTS}


@test
def fan_out_cluster_role_rules():
    """Exactly what fan-out does: watch namespaces; list/watch the Secret by
    name across namespaces (field selector metadata.name), get it after a
    conflict, merge-patch it, create it, delete it when pruning; patch
    ServiceAccounts; Events."""
    # Label selector with prune, named and annotated ServiceAccounts.
    assert rule_set(one(render("ci/fan-out-values.yaml"), "ClusterRole")) == {
        NAMESPACES,
        ("", "secrets", ("gcr-pull",), ("delete", "get", "list", "patch", "watch")),
        CREATE_SECRETS,
        ("", "serviceaccounts", None, ("get", "list", "patch")),
        EVENTS,
    }
    # Fixed namespaces, named ServiceAccounts only: RBAC names them.
    assert rule_set(one(render("ci/fan-out-namespaces-values.yaml"), "ClusterRole")) == {
        NAMESPACES,
        ("", "secrets", ("registry-pull",), ("get", "list", "patch", "watch")),
        CREATE_SECRETS,
        ("", "serviceaccounts", ("builder", "default"), ("get", "patch")),
        EVENTS,
    }
    # Every namespace, no prune, no ServiceAccounts (also the CronJob).
    plain = {
        NAMESPACES,
        ("", "secrets", ("gcr-pull",), ("get", "list", "patch", "watch")),
        CREATE_SECRETS,
        EVENTS,
    }
    assert rule_set(one(render(sets=["targets.allNamespaces=true"]), "ClusterRole")) == plain
    assert rule_set(one(render("ci/fan-out-cronjob-values.yaml"), "ClusterRole")) == plain
    # Annotated patching alone: listing, so no names.
    cr = one(render(sets=["targets.allNamespaces=true", "targets.annotatedServiceAccounts=true"]), "ClusterRole")
    assert rule_set(cr) == plain | {("", "serviceaccounts", None, ("get", "list", "patch"))}


@test
def rbac_can_be_turned_off():
    docs = render(sets=["rbac.create=false"])
    for k in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"):
        assert not kinds(docs, k)


# --- placeholder Secrets --------------------------------------------------


@test
def create_secrets_renders_typed_placeholders():
    docs = render("ci/create-secrets-values.yaml")
    secrets = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in kinds(docs, "Secret")}
    assert set(secrets) == {(NS, "gcr-pull"), ("apps", "gcr-pull")}
    for s in secrets.values():
        assert s["type"] == "kubernetes.io/dockerconfigjson"
        assert json.loads(base64.b64decode(s["data"][".dockerconfigjson"])) == {"auths": {}}
        assert "helm.sh/resource-policy" not in (s["metadata"].get("annotations") or {})

    docs = render(sets=["targets.createSecrets=true", "targets.keepSecretsOnUninstall=true",
                        "targets.secrets[0].name=cfg", "targets.secrets[0].key=config.json"])
    s = one(docs, "Secret")
    assert s["type"] == "Opaque"
    assert json.loads(base64.b64decode(s["data"]["config.json"])) == {"auths": {}}
    assert s["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


@test
def no_placeholders_by_default():
    assert not kinds(render(), "Secret")


# --- pod hardening --------------------------------------------------------


@test
def pods_are_hardened_in_every_mode():
    for files in (["ci/deployment-values.yaml"], ["ci/cronjob-values.yaml"], ["ci/federation-values.yaml"]):
        for w in workloads(render(*files)):
            spec = pod_spec(w)
            psc = spec["securityContext"]
            assert psc["runAsNonRoot"] is True
            assert psc["runAsUser"] == 65532 and psc["runAsGroup"] == 65532
            assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
            csc = container(w)["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False
            assert csc["readOnlyRootFilesystem"] is True
            assert csc["capabilities"]["drop"] == ["ALL"]
            res = container(w)["resources"]
            assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]
            assert spec["automountServiceAccountToken"] is True
            assert spec["serviceAccountName"] == "t-regcred"


@test
def service_account_carries_annotations():
    sa = one(render("ci/deployment-values.yaml"), "ServiceAccount")
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com")
    assert sa["automountServiceAccountToken"] is True
    docs = render(sets=["serviceAccount.create=false", "serviceAccount.name=existing"])
    assert not kinds(docs, "ServiceAccount")
    assert pod_spec(one(docs, "Deployment"))["serviceAccountName"] == "existing"
    assert one(docs, "RoleBinding")["subjects"][0]["name"] == "existing"


# --- arguments ------------------------------------------------------------


@test
def deployment_default_args():
    d = one(render(), "Deployment")
    assert args(d) == [
        "run", "--auth=oauth", f"--secret={NS}/gcr-pull",
        "--refresh-before=15m", "--jitter=1m", "--resync-interval=10m",
        "--admin-addr=0.0.0.0:8080", "--request-timeout=10s",
        "--log-format=json", "--log-level=info",
    ], args(d)
    assert d["spec"]["replicas"] == 1
    assert not pod_spec(d).get("volumes")


@test
def args_follow_values():
    a = args(one(render("ci/deployment-values.yaml"), "Deployment"))
    assert a.count("--registry=gcr.io") == 1 and "--registry=europe-west1-docker.pkg.dev" in a
    assert [x for x in a if x.startswith("--secret=")] == [
        f"--secret={NS}/gcr-pull", "--secret=ci/gcr-pull", "--secret=ci/build-pull"]
    assert not any(x.startswith("--secret-key") for x in a)

    a = args(one(render("ci/existing-key-values.yaml"), "Deployment"))
    assert "--auth=json-key" in a and "--all-registries" in a
    assert not any(x.startswith("--registry") for x in a)
    assert "--secret-key=config.json" in a
    assert "--log-format=text" in a and "--log-level=debug" in a

    a = args(one(render(sets=["refresh.before=20m", "admin.port=9090", "extraArgs[0]=--foo"]), "Deployment"))
    assert "--refresh-before=20m" in a and "--admin-addr=0.0.0.0:9090" in a and a[-1] == "--foo"

    a = args(one(render(sets=["allRegistries=true", "registries[0]=europe-west1-docker.pkg.dev"]), "Deployment"))
    assert "--all-registries" in a and "--registry=europe-west1-docker.pkg.dev" in a


@test
def existing_key_is_mounted_read_only_and_passed():
    d = one(render("ci/existing-key-values.yaml"), "Deployment")
    spec = pod_spec(d)
    key_flag = [x for x in args(d) if x.startswith("--key-file=")]
    assert key_flag == ["--key-file=/etc/regcred/key/key.json"]
    vol = [v for v in spec["volumes"] if v["name"] == "key"][0]
    assert vol["secret"]["secretName"] == "regcred-key"
    assert vol["secret"]["items"] == [{"key": "credentials.json", "path": "key.json"}]
    mount = [m for m in container(d)["volumeMounts"] if m["name"] == "key"][0]
    assert mount["mountPath"] == "/etc/regcred/key" and mount["readOnly"] is True
    assert "subPath" not in mount


@test
def federation_renders_external_account_config():
    docs = render("ci/federation-values.yaml")
    d = one(docs, "Deployment")
    a = args(d)
    assert "--key-file=/etc/regcred/federation/credential-configuration.json" in a
    assert "--impersonate=puller@example-project.iam.gserviceaccount.com" in a
    assert "--impersonate-delegates=middle@example-project.iam.gserviceaccount.com" in a
    assert "--token-lifetime=1800s" in a
    cm = one(docs, "ConfigMap")
    cfg = json.loads(cm["data"]["credential-configuration.json"])
    assert cfg["type"] == "external_account"
    assert cfg["audience"].startswith("//iam.googleapis.com/projects/123456789012/")
    assert cfg["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    assert cfg["token_url"] == "https://sts.googleapis.com/v1/token"
    assert cfg["service_account_impersonation_url"].endswith(":generateAccessToken")
    assert cfg["credential_source"] == {"file": "/var/run/secrets/regcred/token/token",
                                        "format": {"type": "text"}}
    spec = pod_spec(d)
    vols = {v["name"]: v for v in spec["volumes"]}
    sat = vols["federation-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert sat["path"] == "token" and sat["expirationSeconds"] == 7200
    assert sat["audience"] == "https:" + cfg["audience"]
    mounts = {m["name"]: m for m in container(d)["volumeMounts"]}
    assert mounts["federation-token"]["mountPath"] + "/" + sat["path"] == cfg["credential_source"]["file"]
    assert all(m["readOnly"] for m in mounts.values())
    assert vols["federation"]["configMap"]["name"] == cm["metadata"]["name"]

    cm = one(render("ci/federation-values.yaml", sets=["federation.serviceAccountImpersonationUrl=",
                                                      "federation.token.audience=regcred"]), "ConfigMap")
    assert "service_account_impersonation_url" not in json.loads(cm["data"]["credential-configuration.json"])


FAN_OUT_FLAGS = ("--namespace", "--all-namespaces", "--exclude-namespace", "--prune",
                 "--patch-service-account", "--patch-annotated-service-accounts",
                 "--max-concurrent-writes", "--max-requests-per-second")


def fan_out_flags(a):
    return [x for x in a if x.split("=", 1)[0].startswith(FAN_OUT_FLAGS)]


@test
def fan_out_args():
    a = args(one(render("ci/fan-out-values.yaml"), "Deployment"))
    assert [x for x in a if x.startswith("--secret")] == ["--secret=gcr-pull"]
    assert fan_out_flags(a) == [
        "--namespace-selector=regcred.dev/pull-secret=true",
        "--exclude-namespace=tmp-*", "--exclude-namespace=sandbox",
        "--prune",
        "--patch-service-account=default",
        "--patch-annotated-service-accounts",
        "--max-concurrent-writes=16", "--max-requests-per-second=100",
    ], a
    assert "--rotation-events" in a

    a = args(one(render("ci/fan-out-namespaces-values.yaml"), "Deployment"))
    assert [x for x in a if x.startswith("--secret")] == ["--secret=registry-pull"]
    assert fan_out_flags(a) == [
        "--namespace=team-a", "--namespace=team-b",
        "--patch-service-account=default", "--patch-service-account=builder",
        "--max-concurrent-writes=4", "--max-requests-per-second=20",
    ], a

    cj = one(render("ci/fan-out-cronjob-values.yaml"), "CronJob")
    a = args(cj)
    assert a[0] == "once" and "--secret=gcr-pull" in a
    assert fan_out_flags(a) == [
        "--all-namespaces", "--exclude-namespace=ci-?",
        "--max-concurrent-writes=16", "--max-requests-per-second=0",
    ], a

    # Without fan-out: none of the fan-out flags, the throughput ones included.
    for files in ([], ["ci/deployment-values.yaml"], ["ci/cronjob-values.yaml"]):
        for w in workloads(render(*files)):
            assert not fan_out_flags(args(w)), (files, args(w))


@test
def impersonation_and_event_args():
    a = args(one(render(), "Deployment"))
    for flag in ("--impersonate", "--token-lifetime", "--impersonation-endpoint", "--rotation-events"):
        assert not any(x.startswith(flag) for x in a), flag
    a = args(one(render(sets=["impersonate.serviceAccount=puller@project-1.iam.gserviceaccount.com",
                              "impersonate.endpoint=https://iam.example.com",
                              "impersonate.tokenLifetime=2h", "rotationEvents=true"]), "Deployment"))
    assert "--impersonate=puller@project-1.iam.gserviceaccount.com" in a
    assert "--impersonation-endpoint=https://iam.example.com" in a
    assert "--token-lifetime=2h" in a and "--rotation-events" in a
    # The lifetime also reaches credential files that impersonate.
    a = args(one(render("ci/federation-values.yaml", sets=["impersonate.serviceAccount=",
                                                          "impersonate.delegates=null"]), "Deployment"))
    assert "--token-lifetime=1800s" in a and not any(x.startswith("--impersonate") for x in a)


def regcred_binary():
    path = os.environ.get("REGCRED_BIN") or os.path.join(CHART, "..", "..", "target", "debug", "regcred")
    return path if os.access(path, os.X_OK) else None


class Skip(Exception):
    pass


@test
def every_rendered_flag_exists_in_the_cli():
    """Every flag the chart can render is one `regcred run|once --help` lists.
    Needs the binary (cargo build --bin regcred, or REGCRED_BIN)."""
    binary = regcred_binary()
    if not binary:
        raise Skip("no regcred binary: cargo build --bin regcred, or set REGCRED_BIN")
    renders = [render("ci/" + f) for f in sorted(os.listdir(os.path.join(CHART, "ci")))]
    renders.append(render(sets=["impersonate.serviceAccount=puller@project-1.iam.gserviceaccount.com",
                                "impersonate.endpoint=https://iam.example.com",
                                "impersonate.tokenLifetime=2h", "rotationEvents=true"]))
    helps = {}
    seen = set()
    for docs in renders:
        for w in workloads(docs):
            a = args(w)
            command = a[0]
            if command not in helps:
                p = subprocess.run([binary, command, "--help"], capture_output=True, text=True)
                assert p.returncode == 0, p.stderr
                helps[command] = set(re.findall(r"^\s+(?:-\w, )?(--[a-z][-a-z]*)", p.stdout, re.M))
            for x in a[1:]:
                flag = x.split("=", 1)[0]
                assert flag in helps[command], f"regcred {command} has no {flag}"
                seen.add(flag)
    # The fan-out flags were among those checked.
    assert {"--patch-service-account", "--patch-annotated-service-accounts", "--namespace-selector",
            "--max-requests-per-second", "--impersonation-endpoint"} <= seen, seen


# --- modes ----------------------------------------------------------------


@test
def deployment_probes_use_the_admin_port():
    d = one(render(sets=["admin.port=9100"]), "Deployment")
    c = container(d)
    assert c["ports"] == [{"name": "admin", "containerPort": 9100, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["startupProbe"]["httpGet"]["port"] == "admin"
    assert "--admin-addr=0.0.0.0:9100" in c["args"]


@test
def cronjob_mode():
    docs = render(sets=["mode=cronjob"])
    assert not kinds(docs, "Deployment")
    cj = one(docs, "CronJob")
    spec = cj["spec"]
    assert spec["schedule"] == "*/30 * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] >= 0 and spec["failedJobsHistoryLimit"] >= 1
    job_spec = spec["jobTemplate"]["spec"]
    assert 0 < job_spec["backoffLimit"] <= 6
    assert pod_spec(cj)["restartPolicy"] == "Never"
    a = args(cj)
    assert a[0] == "once"
    for flag in ("--admin-addr", "--jitter", "--resync-interval", "--refresh-before"):
        assert not any(x.startswith(flag) for x in a), flag
    c = container(cj)
    assert "livenessProbe" not in c and "readinessProbe" not in c and "ports" not in c

    job = one(docs, "Job")
    ann = job["metadata"]["annotations"]
    assert "post-install" in ann["helm.sh/hook"].split(",")
    assert "before-hook-creation" in ann["helm.sh/hook-delete-policy"].split(",")
    assert args(job) == a
    assert pod_spec(job)["restartPolicy"] == "Never"

    assert not kinds(render(sets=["mode=cronjob", "cronjob.runOnInstall=false"]), "Job")
    assert not kinds(render(sets=["mode=cronjob", "admin.service.enabled=true"]), "Service")


@test
def admin_service_selects_the_pod():
    docs = render("ci/deployment-values.yaml")
    svc = one(docs, "Service")
    d = one(docs, "Deployment")
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
    assert svc["spec"]["ports"][0]["targetPort"] == "admin"


@test
def image_reference():
    c = container(one(render(), "Deployment"))
    assert c["image"] == "ghcr.io/regcred/regcred:0.1.0"
    digest = "sha256:" + "a" * 64
    c = container(one(render(sets=[f"image.digest={digest}", "image.repository=r.example/regcred"]), "Deployment"))
    assert c["image"] == f"r.example/regcred@{digest}"


@test
def notes_say_how_to_check():
    for f in sorted(os.listdir(os.path.join(CHART, "ci"))) + ["../examples/gitpod-values.yaml"]:
        p = subprocess.run(["helm", "install", "t", CHART, "--namespace", NS, "--dry-run=client",
                            "-f", os.path.join(CHART, "ci", f)], capture_output=True, text=True)
        assert p.returncode == 0, f"{f}: {p.stderr}"
        notes = p.stdout.split("NOTES:", 1)[1]
        if "credential-provider" in f:
            assert "kubectl get secret" not in notes, f"{f}: no Secrets in mode=none"
            assert "--image-credential-provider-config=" in notes and "kubectl logs" in notes, f
            continue
        assert "kubectl get secret" in notes and "-o jsonpath=" in notes, f
        assert "subPath" in notes, f"{f}: no subPath warning"
        if "cronjob" in f:
            assert "kubectl get jobs" in notes and "create job" in notes, f
        else:
            assert "kubectl logs" in notes and "/readyz" in notes, f


# --- Amazon ECR and Azure Container Registry identities ----------------------

ROLE = "arn:aws:iam::123456789012:role/regcred-puller"
CLIENT = "00001111-aaaa-2222-bbbb-3333cccc4444"
TENANT = "contoso.onmicrosoft.com"


def env_of(doc):
    return {e["name"]: e.get("value") for e in container(doc).get("env", [])}


@test
def on_eks_and_aks_the_identities_are_what_the_webhooks_read():
    docs = render(sets=[f"aws.roleArn={ROLE}", f"azure.clientId={CLIENT}", f"azure.tenantId={TENANT}"])
    sa = one(docs, "ServiceAccount")["metadata"]["annotations"]
    assert sa == {"eks.amazonaws.com/role-arn": ROLE, "azure.workload.identity/client-id": CLIENT,
                  "azure.workload.identity/tenant-id": TENANT}, sa
    for d in workloads(render("ci/cronjob-values.yaml", sets=[f"azure.clientId={CLIENT}"])) + [one(docs, "Deployment")]:
        labels = d["spec"]["template"]["metadata"]["labels"] if d["kind"] != "CronJob" else \
            d["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        assert labels.get("azure.workload.identity/use") == "true", (d["kind"], labels)
    dep = one(docs, "Deployment")
    # The webhooks set the variables and the volumes: the chart sets none.
    assert not [k for k in env_of(dep) if k.startswith(("AWS_", "AZURE_"))], env_of(dep)
    assert "volumes" not in pod_spec(dep)
    # The user's own annotations and labels stay beside them.
    docs = render(sets=[f"aws.roleArn={ROLE}", "serviceAccount.annotations.a=b", "podLabels.team=x"])
    assert one(docs, "ServiceAccount")["metadata"]["annotations"] == {"a": "b", "eks.amazonaws.com/role-arn": ROLE}
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["team"] == "x" and "azure.workload.identity/use" not in labels, labels
    # Nothing of either cloud by default.
    docs = render()
    assert "annotations" not in one(docs, "ServiceAccount")["metadata"]
    assert "env" not in container(one(docs, "Deployment"))


@test
def without_the_webhooks_the_chart_projects_the_tokens_and_sets_the_variables():
    docs = render("ci/clouds-values.yaml")
    dep = one(docs, "Deployment")
    env = env_of(dep)
    mounts = {m["name"]: m["mountPath"] for m in container(dep)["volumeMounts"]}
    vols = {v["name"]: v["projected"]["sources"][0]["serviceAccountToken"] for v in pod_spec(dep)["volumes"]}
    assert env["AWS_ROLE_ARN"] == ROLE
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == mounts["aws-token"] + "/" + vols["aws-token"]["path"]
    assert vols["aws-token"]["audience"] == "sts.amazonaws.com"
    assert env["AZURE_CLIENT_ID"] == CLIENT and env["AZURE_TENANT_ID"] == TENANT
    assert env["AZURE_FEDERATED_TOKEN_FILE"] == mounts["azure-token"] + "/" + vols["azure-token"]["path"]
    assert vols["azure-token"]["audience"] == "api://AzureADTokenExchange"
    assert env["AZURE_AUTHORITY_HOST"] == "https://login.microsoftonline.us/"
    assert list(env)[-1] == "NO_PROXY", "extraEnv comes last"
    # The webhooks' annotation and label would make them add the same again.
    assert "annotations" not in one(docs, "ServiceAccount")["metadata"]
    assert "azure.workload.identity/use" not in dep["spec"]["template"]["metadata"]["labels"]
    assert f"--aws-role-arn=arn:aws:iam::210987654321:role/registry-reader" in args(dep)
    # The CronJob and its install Job get the same.
    for d in workloads(render("ci/clouds-values.yaml", sets=["mode=cronjob"])):
        assert env_of(d)["AWS_ROLE_ARN"] == ROLE and "azure-token" in {v["name"] for v in pod_spec(d)["volumes"]}, d["kind"]


# --- contradictory values fail with a message ------------------------------


@test
def contradictions_fail():
    cases = [
        (["auth=json-key"], "credentials.existingSecret"),
        (["federation.enabled=true"], "federation.audience"),
        (["federation.enabled=true", "federation.audience=//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/kubelet", "credentials.existingSecret=k"], "choose one"),
        (["federation.enabled=true", "federation.audience=//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/kubelet", "auth=json-key",
          "credentials.existingSecret="], "existingSecret"),
        (["targets.secrets[0].name=a", "targets.secrets[1].name=b", "targets.secrets[1].key=x"], "one key"),
        (["targets.allNamespaces=true", "targets.createSecrets=true"], "createSecrets"),
        (["targets.prune=true"], "targets.namespaceSelector"),
        (["targets.allNamespaces=true", "targets.prune=true"], "targets.namespaceSelector"),
        (["targets.serviceAccounts={default}"], "fan-out"),
        (["targets.annotatedServiceAccounts=true"], "fan-out"),
        (["targets.allNamespaces=true", "targets.secrets[0].name=a", "targets.secrets[1].name=b"],
         "exactly one Secret name"),
        (["targets.namespaces={a}", "targets.excludeNamespaces={b}"], "excludeNamespaces"),
        (["targets.allNamespaces=true", "targets.namespaces={a}"], "only one"),
        (["targets.excludeNamespaces={a}"], "excludeNamespaces"),
        (["targets.allNamespaces=true", "targets.secrets[0].name=a", "targets.secrets[0].namespace=b"],
         "leave namespace empty"),
        (["impersonate.delegates={hop-one@project-1.iam.gserviceaccount.com}"], "impersonate.serviceAccount"),
        (["impersonate.endpoint=https://iam.example.com"], "impersonate.serviceAccount"),
        (["impersonate.serviceAccount=puller@project-1.iam.gserviceaccount.com", "auth=json-key", "credentials.existingSecret=k"], "auth=oauth"),
        (["targets.secrets=null"], "targets.secrets"),
        (["mode=none"], "credentialProvider.nodeInstaller.enabled"),
        (["credentialProvider.workloadIdentityProvider=//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/kubelet",
          "credentialProvider.keyFile=/k.json"], "set one of them"),
        (["credentialProvider.nodeInstaller.enabled=true", "credentialProvider.nodeInstaller.recheckInterval=10ms"],
         "at least 1s"),
        (["aws.injectWebIdentity=true"], "aws.roleArn"),
        (["azure.injectWorkloadIdentity=true", f"azure.clientId={CLIENT}"], "azure.tenantId"),
        (["azure.authorityHost=https://login.microsoftonline.us/"], "azure.injectWorkloadIdentity"),
        (["credentialProvider.ecr.tokenAudience=sts.amazonaws.com"], "credentialProvider.ecr.identity is not pod"),
        (["credentialProvider.acr.identity=node", "credentialProvider.acr.tokenAudience=api://AzureADTokenExchange"],
         "credentialProvider.acr.identity is not pod"),
    ]
    for sets, needle in cases:
        err = render(sets=sets, expect_fail=True)
        assert needle in err, f"{sets}: {needle!r} not in {err!r}"


# --- leader election -----------------------------------------------------------


@test
def replicas_elect_a_leader_through_one_lease_named_in_rbac():
    docs = render("ci/leader-election-values.yaml")
    dep = one(docs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    a = args(dep)
    assert "--leader-elect" in a and "--leader-elect-lease-name=t-regcred" in a, a
    roles = [r for r in kinds(docs, "Role") if r["metadata"]["name"] == "t-regcred-leader-election"]
    assert len(roles) == 1 and roles[0]["metadata"]["namespace"] == NS, roles
    lease_rules = {tuple(r["verbs"]): r.get("resourceNames") for r in rules(roles[0]) if "leases" in r["resources"]}
    assert lease_rules == {("get", "patch"): ["t-regcred"], ("create",): None}, lease_rules
    binding = [b for b in kinds(docs, "RoleBinding") if b["metadata"]["name"] == "t-regcred-leader-election"]
    assert binding and binding[0]["subjects"][0]["name"] == "t-regcred", binding
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    term = pod_spec(dep)["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    soft = pod_spec(one(render(sets=["replicaCount=2"]), "Deployment"))["affinity"]["podAntiAffinity"]
    assert "preferredDuringSchedulingIgnoredDuringExecution" in soft, soft
    assert pod_spec(one(render(sets=["replicaCount=2", "affinity.podAntiAffinity.x=1"]), "Deployment"))["affinity"][
        "podAntiAffinity"] == {"x": 1}, "affinity's own podAntiAffinity wins"


@test
def one_replica_elects_no_leader_unless_asked():
    docs = render()
    dep = one(docs, "Deployment")
    assert dep["spec"]["replicas"] == 1
    assert not [x for x in args(dep) if x.startswith("--leader-elect")]
    assert not [r for r in kinds(docs, "Role") if r["metadata"]["name"].endswith("-leader-election")]
    assert "affinity" not in pod_spec(dep) and not kinds(docs, "PodDisruptionBudget")
    asked = args(one(render(sets=["leaderElection.enabled=true"]), "Deployment"))
    assert "--leader-elect" in asked, asked


# --- kubelet credential provider: the node installer -----------------------

INSTALLER = "ci/credential-provider-values.yaml"


def daemonset(docs):
    return one(docs, "DaemonSet")


@test
def node_installer_is_off_by_default():
    for f in sorted(os.listdir(os.path.join(CHART, "ci"))):
        if f != os.path.basename(INSTALLER):
            assert not kinds(render("ci/" + f), "DaemonSet"), f


@test
def node_installer_alone_renders_only_the_daemonset():
    docs = render(INSTALLER)
    assert [d["kind"] for d in docs] == ["DaemonSet"], [d["kind"] for d in docs]
    ds = daemonset(docs)
    spec = pod_spec(ds)
    c = container(ds)
    assert c["args"] == [
        "install-credential-provider",
        "--bin-dir=/usr/local/lib/kubelet-credential-providers",
        "--config=/etc/kubernetes/credential-provider/regcred.json",
        "--workload-identity-provider=//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/pool/providers/kubelet",
        "--ecr-pod-identity", "--acr-pod-identity", "--acr-token-audience=api://AzureADTokenExchange",
        "--recheck-interval=5m", "--log-format=json",
        "--", "--registry=europe-west1-docker.pkg.dev",
    ], c["args"]
    # Each host directory mounted at its own path, created if missing; the
    # config's directory alone, not all of /etc/kubernetes.
    volumes = {v["name"]: v["hostPath"] for v in spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert volumes == {
        "bin-dir": {"path": "/usr/local/lib/kubelet-credential-providers", "type": "DirectoryOrCreate"},
        "config-dir": {"path": "/etc/kubernetes/credential-provider", "type": "DirectoryOrCreate"},
    }, volumes
    assert mounts == {n: v["path"] for n, v in volumes.items()}, mounts
    assert not any(m.get("readOnly") for m in c["volumeMounts"])
    # Root for the host's root-owned directories, and nothing more.
    assert spec["securityContext"]["runAsUser"] == 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = c["securityContext"]
    assert csc["allowPrivilegeEscalation"] is False and csc["privileged"] is False
    assert csc["readOnlyRootFilesystem"] is True and csc["capabilities"] == {"drop": ["ALL"]}
    assert spec["automountServiceAccountToken"] is False and "serviceAccountName" not in spec
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]


@test
def node_installer_shares_one_mount_when_the_config_sits_in_the_bin_dir():
    ds = daemonset(render(sets=["credentialProvider.nodeInstaller.enabled=true",
                                "credentialProvider.keyFile=/etc/kubernetes/regcred/key.json"]))
    assert [v["name"] for v in pod_spec(ds)["volumes"]] == ["bin-dir"]
    assert args(ds)[-2:] == ["--", "--key-file=/etc/kubernetes/regcred/key.json"], args(ds)
    assert not any(a.startswith("--workload-identity-provider") for a in args(ds)), "node identity"


@test
def node_installer_passes_each_clouds_identity():
    base = ["credentialProvider.nodeInstaller.enabled=true"]
    cloud_flags = lambda ds: [a for a in args(ds) if re.match(r"--(match-|ecr-|acr-)", a)]
    assert cloud_flags(daemonset(render(sets=base))) == [], "neither cloud by default"
    cases = [
        (["credentialProvider.ecr.identity=node"], ["--match-ecr"]),
        (["credentialProvider.acr.identity=node"], ["--match-acr"]),
        (["credentialProvider.ecr.identity=pod"], ["--ecr-pod-identity"]),
        (["credentialProvider.acr.identity=pod"], ["--acr-pod-identity"]),
        (["credentialProvider.ecr.identity=pod", "credentialProvider.ecr.tokenAudience=sts.amazonaws.com.cn",
          "credentialProvider.acr.identity=node"],
         ["--ecr-pod-identity", "--ecr-token-audience=sts.amazonaws.com.cn", "--match-acr"]),
    ]
    for sets, flags in cases:
        assert cloud_flags(daemonset(render(sets=base + sets))) == flags, sets
    # Beside Google's pod identity too: each cloud gets an entry of its own.
    pool = "credentialProvider.workloadIdentityProvider=//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/kubelet"
    a = args(daemonset(render(sets=base + [pool, "credentialProvider.ecr.identity=node"])))
    assert "--match-ecr" in a and any(x.startswith("--workload-identity-provider=") for x in a), a


@test
def admin_service_never_selects_the_installer():
    docs = render("ci/deployment-values.yaml", sets=["credentialProvider.nodeInstaller.enabled=true"])
    selector = one(docs, "Service")["spec"]["selector"]
    ds_labels = daemonset(docs)["spec"]["template"]["metadata"]["labels"]
    assert not all(ds_labels.get(k) == v for k, v in selector.items()), (selector, ds_labels)
    ds_selector = daemonset(docs)["spec"]["selector"]["matchLabels"]
    deploy_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not all(deploy_labels.get(k) == v for k, v in ds_selector.items()), "the DaemonSet selects no refresher pod"


@test
def notes_tell_the_kubelet_flags():
    text = notes("credentialProvider.nodeInstaller.enabled=true")
    assert "--image-credential-provider-bin-dir=/etc/kubernetes/image-credential-provider\n" in text, text
    assert "--image-credential-provider-config=/etc/kubernetes/image-credential-provider/config.json\n" in text
    assert "Node identity" in text and "kubectl get secret" in text, "the Secret part stays"
    assert "credential provider" not in notes().lower(), "nothing about it when it is off"
    assert "regcred-ecr" not in text and "Amazon ECR" not in text, "no ECR entry unless asked"
    text = notes("credentialProvider.nodeInstaller.enabled=true", "credentialProvider.ecr.identity=pod",
                 "credentialProvider.acr.identity=node")
    assert "/etc/kubernetes/image-credential-provider/regcred-ecr (the same file" in text, text
    assert "regcred-acr" not in text, "node identity beside Google's node identity shares regcred's entry"
    assert "eks.amazonaws.com/ecr-role-arn" in text and "audience sts.amazonaws.com" in text, text
    assert "Azure Container Registry, node identity" in text, text


@test
def readme_kubelet_configs_are_what_the_installer_writes():
    """The README's CredentialProviderConfig examples (node identity, Google
    pod identity, pod identity for Google, ECR and ACR) are what `regcred
    install-credential-provider` writes for the same identities (as YAML
    there, JSON here). Needs the binary."""
    binary = regcred_binary()
    if not binary:
        raise Skip("no regcred binary: cargo build --bin regcred, or set REGCRED_BIN")
    import tempfile
    readme = open(os.path.join(os.path.dirname(os.path.dirname(CHART)), "README.md")).read()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)
              if "kind: CredentialProviderConfig" in b]
    assert len(blocks) == 3, f"{len(blocks)} CredentialProviderConfig examples in the README"
    # The README's placeholders, which regcred refuses as a pool provider,
    # stand for these values.
    pool = "//iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/{}/providers/{}"
    placeholders, values = ("PROJECT_NUMBER", "POOL", "PROVIDER"), ("123456789012", "pool-id", "provider-id")
    for block, flags in zip(blocks, [["--", "--key-file=/etc/kubernetes/regcred/wif.json"],
                                     [f"--workload-identity-provider={pool.format(*values)}"],
                                     [f"--workload-identity-provider={pool.format(*values)}",
                                      "--ecr-pod-identity", "--acr-pod-identity"]]):
        with tempfile.TemporaryDirectory() as d:
            config = os.path.join(d, "config.json")
            p = subprocess.run([binary, "install-credential-provider", f"--bin-dir={d}", f"--config={config}",
                                "--exit-after-install", *flags], capture_output=True, text=True, env={})
            assert p.returncode == 0, p.stderr
            written = json.load(open(config))
        written = json.loads(json.dumps(written).replace(pool.format(*values), pool.format(*placeholders)))
        assert block == written, f"README:\n{block}\ninstaller:\n{written}"


# --- sidecar examples -----------------------------------------------------


# --- Prometheus Operator objects and the Grafana dashboard -----------------

SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
PROMETHEUS_RULE_API = "monitoring.coreos.com/v1/PrometheusRule"
MONITORING_ON = ["metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true"]


@test
def monitoring_objects_are_off_by_default():
    for api in ((), (SERVICE_MONITOR_API, PROMETHEUS_RULE_API)):
        docs = render(api_versions=api)
        for kind in ("ServiceMonitor", "PrometheusRule", "ConfigMap", "Service"):
            assert not kinds(docs, kind), f"{kind} rendered by default (APIs {api})"


@test
def monitoring_objects_need_the_api_or_force():
    # Enabled, but the cluster does not serve monitoring.coreos.com/v1.
    docs = render(sets=MONITORING_ON)
    assert not kinds(docs, "ServiceMonitor") and not kinds(docs, "PrometheusRule")
    assert not kinds(docs, "Service"), "the admin Service is only for the ServiceMonitor here"
    # Each kind follows its own API.
    docs = render(sets=MONITORING_ON, api_versions=[SERVICE_MONITOR_API])
    assert kinds(docs, "ServiceMonitor") and not kinds(docs, "PrometheusRule")
    docs = render(sets=MONITORING_ON, api_versions=[PROMETHEUS_RULE_API])
    assert kinds(docs, "PrometheusRule") and not kinds(docs, "ServiceMonitor")
    # Forced: rendered without the API (offline rendering).
    docs = render(sets=MONITORING_ON + ["metrics.serviceMonitor.force=true", "metrics.prometheusRule.force=true"])
    one(docs, "ServiceMonitor")
    one(docs, "PrometheusRule")


@test
def service_monitor_scrapes_the_admin_port():
    docs = render(sets=["metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=kps",
                        "metrics.serviceMonitor.interval=15s", "metrics.serviceMonitor.scrapeTimeout=5s"],
                  api_versions=[SERVICE_MONITOR_API])
    sm = one(docs, "ServiceMonitor")
    svc = one(docs, "Service")
    d = one(docs, "Deployment")
    assert sm["metadata"]["namespace"] == NS
    assert sm["metadata"]["labels"]["release"] == "kps"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NS]}
    match = sm["spec"]["selector"]["matchLabels"]
    assert all(svc["metadata"]["labels"].get(k) == v for k, v in match.items()), "selects no Service"
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["admin"]
    e = sm["spec"]["endpoints"][0]
    assert (e["path"], e["interval"], e["scrapeTimeout"]) == ("/metrics", "15s", "5s")
    assert [p["name"] for p in svc["spec"]["ports"]] == ["admin"]
    ports = {p["name"]: p["containerPort"] for p in container(d)["ports"]}
    assert ports["admin"] == 8080
    assert "--admin-addr=0.0.0.0:8080" in args(d)


@test
def notes_name_monitoring_objects_or_why_not():
    p = subprocess.run(["helm", "install", "t", CHART, "--namespace", NS, "--dry-run=client",
                        "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true",
                        "--set", "metrics.prometheusRule.force=true", "--set", "metrics.dashboard.enabled=true"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    notes = p.stdout.split("NOTES:", 1)[1]
    assert "No ServiceMonitor" in notes and "metrics.serviceMonitor.force=true" in notes, notes
    assert f"PrometheusRule {NS}/t-regcred" in notes, notes
    assert f"ConfigMap {NS}/t-regcred-dashboard" in notes, notes


def notes(*sets):
    cmd = ["helm", "install", "t", CHART, "--namespace", NS, "--dry-run=client"]
    for s in sets:
        cmd += ["--set", s]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout.split("NOTES:", 1)[1]


@test
def notes_warn_when_no_credential_source_is_configured():
    assert "WARNING: no Google credential source" in notes()
    for configured in [
        'serviceAccount.annotations.iam\\.gke\\.io/gcp-service-account=pull@p.iam.gserviceaccount.com',
        "credentials.existingSecret=key",
        "federation.enabled=true,federation.audience=//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/kubelet",
        "extraEnv[0].name=GOOGLE_APPLICATION_CREDENTIALS,extraEnv[0].value=/k/key.json",
    ]:
        n = notes(configured)
        assert "WARNING: no Google credential source" not in n, (configured, n)
    assert "acts as pull@p.iam.gserviceaccount.com" in notes(
        'serviceAccount.annotations.iam\\.gke\\.io/gcp-service-account=pull@p.iam.gserviceaccount.com')


@test
def notes_say_a_secret_in_the_release_namespace_serves_only_that_namespace():
    n = notes()
    assert f"gcr-pull in {NS} serves only pods in {NS}" in n and "targets.namespaces={apps,ci}" in n, n
    n = notes("targets.secrets[0].name=gcr-pull,targets.secrets[0].namespace=apps")
    assert "serves only pods" not in n and "apps/gcr-pull" in n, n


@test
def notes_weigh_the_cronjob_schedule_against_the_token_lifetime():
    n = notes("mode=cronjob", "cronjob.schedule=*/20 * * * *")
    assert "up to 20 minutes between runs; the\naccess tokens live 60 minutes." in n and "more than half" not in n, n
    n = notes("mode=cronjob", "cronjob.schedule=*/45 * * * *")
    assert "more than half their life" in n, n


@test
def artifact_hub_annotations_name_the_default_image():
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    with open(os.path.join(CHART, "values.yaml")) as f:
        values = yaml.safe_load(f)
    ann = chart["annotations"]
    assert ann["artifacthub.io/license"] == "Apache-2.0"
    images = yaml.safe_load(ann["artifacthub.io/images"])
    assert [i["image"] for i in images] == [f'{values["image"]["repository"]}:{chart["appVersion"]}']
    changes = yaml.safe_load(ann["artifacthub.io/changes"])
    assert changes and all(c["kind"] in ("added", "changed", "deprecated", "removed", "fixed", "security")
                           and c["description"] for c in changes)


def readme_alerts():
    """The alert rules in the top-level README's Operations section."""
    with open(os.path.join(CHART, "..", "..", "README.md")) as f:
        text = f.read()
    blocks = re.findall(r"```yaml\n(groups:.*?)```", text, re.S)
    assert len(blocks) == 1, "README: expected one alert rule block"
    return {r["alert"]: r for r in yaml.safe_load(blocks[0])["groups"][0]["rules"]}


def normalise(expr, selector):
    return " ".join(expr.replace("{" + selector + "}", "").split())


@test
def prometheus_rule_carries_the_readme_alerts():
    pr = one(render(sets=["metrics.prometheusRule.enabled=true"], api_versions=[PROMETHEUS_RULE_API]),
             "PrometheusRule")
    rules_ = {r["alert"]: r for g in pr["spec"]["groups"] for r in g["rules"]}
    readme = readme_alerts()
    assert set(rules_) == set(readme), (set(rules_), set(readme))
    for name, r in rules_.items():
        assert f'namespace="{NS}"' in r["expr"], f"{name} not scoped to the release namespace"
        assert normalise(r["expr"], f'namespace="{NS}"') == normalise(readme[name]["expr"], ""), name
        assert r["for"] == readme[name].get("for", "0s"), name
        assert r["labels"]["severity"] == "warning"
        assert r["annotations"]["summary"]


@test
def prometheus_rule_thresholds_follow_values():
    pr = one(render(sets=["metrics.prometheusRule.enabled=true",
                          "metrics.prometheusRule.credentialExpiringSoon.thresholdSeconds=300",
                          "metrics.prometheusRule.credentialExpiringSoon.for=5m",
                          "metrics.prometheusRule.credentialExpiringSoon.severity=critical",
                          "metrics.prometheusRule.refreshFailing.failures=5",
                          "metrics.prometheusRule.refreshFailing.window=30m",
                          "metrics.prometheusRule.refreshFailing.for=10m",
                          "metrics.prometheusRule.selector=job=\"regcred\"",
                          "metrics.prometheusRule.labels.release=kps"],
                    api_versions=[PROMETHEUS_RULE_API]), "PrometheusRule")
    assert pr["metadata"]["labels"]["release"] == "kps"
    rules_ = {r["alert"]: r for g in pr["spec"]["groups"] for r in g["rules"]}
    exp = rules_["RegcredCredentialExpiringSoon"]
    assert exp["expr"].endswith("- time() < 300"), exp["expr"]
    assert 'regcred_credential_expiry_timestamp_seconds{job="regcred"}' in exp["expr"]
    assert (exp["for"], exp["labels"]["severity"]) == ("5m", "critical")
    fail = rules_["RegcredRefreshFailing"]
    assert 'regcred_refresh_failures_total{job="regcred"}[30m]) > 5' in fail["expr"], fail["expr"]
    assert 'regcred_write_failures_total{job="regcred"}[30m]) > 5' in fail["expr"], fail["expr"]
    assert fail["for"] == "10m"


@test
def monitoring_needs_deployment_mode():
    for s in MONITORING_ON:
        err = render(sets=["mode=cronjob", s], expect_fail=True)
        assert "mode=deployment" in err, err
    # The dashboard alone is fine in any mode (it reads what Prometheus has).
    one(render(sets=["mode=cronjob", "metrics.dashboard.enabled=true"]), "ConfigMap")


def readme_metrics():
    """Metric names from the top-level README's metrics table."""
    with open(os.path.join(CHART, "..", "..", "README.md")) as f:
        text = f.read()
    found = dict(re.findall(r"^\| `(regcred_[a-z_]+)(?:\{[^}]*\})?` \| (\w+) \|", text, re.M))
    assert "regcred_credential_expiry_timestamp_seconds" in found, found
    names = set()
    for name, kind in found.items():
        names.add(name)
        if kind == "histogram":
            names |= {name + "_bucket", name + "_sum", name + "_count"}
    return names


@test
def dashboard_configmap_for_grafana_sidecar():
    docs = render(sets=["metrics.dashboard.enabled=true", "metrics.dashboard.annotations.grafana_folder=Registry",
                        "metrics.dashboard.namespace=monitoring"])
    cm = one(docs, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Registry"}
    assert cm["metadata"]["namespace"] == "monitoring"
    assert list(cm["data"]) == ["regcred.json"]
    dash = json.loads(cm["data"]["regcred.json"])
    with open(os.path.join(CHART, "dashboards", "regcred.json")) as f:
        assert dash == json.load(f)
    assert one(render(sets=["metrics.dashboard.enabled=true"]), "ConfigMap")["metadata"]["namespace"] == NS


@test
def dashboard_queries_name_real_metrics():
    with open(os.path.join(CHART, "dashboards", "regcred.json")) as f:
        dash = json.load(f)
    known = readme_metrics()
    exprs = {p["title"]: [t["expr"] for t in p["targets"]] for p in dash["panels"]}
    used = set()
    for title, es in exprs.items():
        assert es, f"panel {title!r} has no query"
        for e in es:
            names = set(re.findall(r"\bregcred_[a-z_]+", e))
            assert names, f"{title}: {e} queries no regcred metric"
            unknown = names - known
            assert not unknown, f"{title}: unknown metrics {unknown}"
            assert 'namespace=~"$namespace"' in e, f"{title}: {e} ignores the namespace variable"
            used |= names
    for needed in ("regcred_credential_expiry_timestamp_seconds", "regcred_refresh_failures_total",
                   "regcred_write_failures_total", "regcred_token_mint_duration_seconds_bucket"):
        assert needed in used, f"no panel shows {needed}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "namespace"}


def check_sidecar(init, app_mount_path, output_file):
    assert init["restartPolicy"] == "Always"
    a = init["args"]
    assert a[0] == "run"
    assert f"--output-file={output_file}" in a
    assert not any(x.startswith("--secret") for x in a)
    admin = [x for x in a if x.startswith("--admin-addr=")][0]
    port = int(admin.rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in init["ports"]}
    probe = init["startupProbe"]["httpGet"]
    assert probe["path"] == "/readyz" and ports[probe["port"]] == port
    assert init["livenessProbe"]["httpGet"]["path"] == "/livez"
    sc = init["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    mount = [m for m in init["volumeMounts"] if output_file.startswith(m["mountPath"] + "/")]
    assert mount and "subPath" not in mount[0]
    assert mount[0]["mountPath"] == app_mount_path
    return mount[0]["name"]


@test
def sidecar_pod_example():
    with open(os.path.join(CHART, "examples/sidecar-pod.yaml")) as f:
        pod = yaml.safe_load(f)
    spec = pod["spec"]
    (init,) = spec["initContainers"]
    (app,) = spec["containers"]
    vol = check_sidecar(init, "/run/regcred", "/run/regcred/config.json")
    volume = [v for v in spec["volumes"] if v["name"] == vol][0]
    assert volume["emptyDir"]["medium"] == "Memory"
    app_mount = [m for m in app["volumeMounts"] if m["name"] == vol][0]
    assert app_mount["mountPath"] == "/run/regcred" and app_mount["readOnly"] is True
    assert "subPath" not in app_mount
    assert spec["automountServiceAccountToken"] is False


def strategic_merge(base, patch):
    """The subset of Kubernetes strategic merge patch the examples use: maps
    merge, null deletes, lists of named objects merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = strategic_merge(out[k], v)
            else:
                out[k] = v
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(
            isinstance(x, dict) and "name" in x for x in base + patch):
        out = [copy.deepcopy(x) for x in base]
        for p in patch:
            idx = [i for i, x in enumerate(out) if x["name"] == p["name"]]
            if idx:
                out[idx[0]] = strategic_merge(out[idx[0]], p)
            else:
                out.append(strategic_merge({}, p))
        return out
    return patch


# The parts of Gitpod's image-builder-mk3 Deployment the patch touches: the
# registry Secret mounted as a directory, key .dockerconfigjson as
# pull-secret.json.
GITPOD_IMAGE_BUILDER = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "image-builder-mk3", "namespace": "gitpod"},
    "spec": {
        "selector": {"matchLabels": {"component": "image-builder-mk3"}},
        "template": {
            "metadata": {"labels": {"component": "image-builder-mk3"}},
            "spec": {
                "volumes": [{"name": "pull-secret", "secret": {
                    "secretName": "image-builder-registry-secret",
                    "items": [{"key": ".dockerconfigjson", "path": "pull-secret.json"}]}}],
                "containers": [{
                    "name": "image-builder-mk3",
                    "image": "image-builder-mk3:latest",
                    "args": ["run", "--config", "/config/image-builder.json"],
                    "securityContext": {"runAsUser": 33333, "allowPrivilegeEscalation": False},
                    "volumeMounts": [{"name": "pull-secret", "mountPath": "/config/pull-secret"}],
                }],
            },
        },
    },
}


@test
def gitpod_sidecar_patch_example():
    with open(os.path.join(CHART, "examples/gitpod-image-builder-sidecar-patch.yaml")) as f:
        patch = yaml.safe_load(f)
    merged = strategic_merge(GITPOD_IMAGE_BUILDER, patch)
    spec = merged["spec"]["template"]["spec"]
    (vol,) = spec["volumes"]
    assert "secret" not in vol and vol["emptyDir"]["medium"] == "Memory"
    (init,) = spec["initContainers"]
    name = check_sidecar(init, "/config/pull-secret", "/config/pull-secret/pull-secret.json")
    assert name == vol["name"]
    builder_uid = spec["containers"][0]["securityContext"]["runAsUser"]
    assert init["securityContext"]["runAsUser"] == builder_uid
    out = os.environ.get("REGCRED_GITPOD_MERGED")
    if out:
        with open(out, "w") as f:
            yaml.safe_dump(merged, f)


@test
def readme_sidecar_snippet_matches_example():
    with open(os.path.join(CHART, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(CHART, "examples/sidecar-pod.yaml")) as f:
        pod = yaml.safe_load(f)
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)]
    snippets = [b for b in blocks if isinstance(b, dict) and "initContainers" in b]
    assert snippets, "README has no sidecar snippet"
    assert snippets[0]["initContainers"] == pod["spec"]["initContainers"], \
        "README sidecar snippet differs from examples/sidecar-pod.yaml"
    assert snippets[0]["volumes"] == pod["spec"]["volumes"]


# --- values documentation and schema ----------------------------------------


@test
def every_value_is_documented():
    """Each key in values.yaml carries a `# --` comment, or sits under a key
    that does (a map documented as a whole)."""
    with open(os.path.join(CHART, "values.yaml")) as f:
        lines = f.read().splitlines()
    documented_at = []  # indents of ancestors documented as a whole
    parents = []
    missing = []
    comment = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        if not stripped:
            comment = []
            continue
        indent = len(line) - len(line.lstrip())
        m = re.match(r"^(\s*)(- )?([A-Za-z][\w.-]*):(.*)$", line)
        while parents and parents[-1][0] >= indent:
            parents.pop()
        while documented_at and documented_at[-1] >= indent:
            documented_at.pop()
        if m and not m.group(2):
            has_doc = any(c.startswith("# --") for c in comment)
            if has_doc:
                documented_at.append(indent)
            elif not documented_at and m.group(4).strip() not in ("",):
                missing.append(".".join([p[1] for p in parents] + [m.group(3)]))
            parents.append((indent, m.group(3)))
        comment = []
    assert not missing, f"undocumented values: {missing}"


def schema_paths(schema, prefix=""):
    assert schema.get("type") != "object" or "properties" not in schema or \
        schema.get("additionalProperties") is False, f"{prefix or '/'} allows unknown keys"
    for k, sub in schema.get("properties", {}).items():
        yield prefix + "." + k if prefix else k
        yield from schema_paths(sub, prefix + "." + k if prefix else k)
    if isinstance(schema.get("additionalProperties"), dict):
        yield prefix + ".*"  # a map: any key
    if isinstance(schema.get("items"), dict):
        yield from schema_paths(schema["items"], prefix + "[]")


def value_paths(values, prefix=""):
    for k, v in values.items():
        p = prefix + "." + k if prefix else k
        yield p
        if isinstance(v, dict):
            yield from value_paths(v, p)
        if isinstance(v, list):
            for item in v:
                if isinstance(item, dict):
                    yield from value_paths(item, p + "[]")


@test
def schema_is_strict_and_covers_every_value():
    with open(os.path.join(CHART, "values.schema.json")) as f:
        schema = json.load(f)
    with open(os.path.join(CHART, "values.yaml")) as f:
        values = yaml.safe_load(f)
    known = set(schema_paths(schema))
    # A map's keys may hold dots (`kubernetes.io/os`): any map above the path will do.
    maps = [k[:-1] for k in known if k.endswith(".*")]
    missing = [p for p in value_paths(values)
               if p not in known and not any(p.startswith(m) for m in maps)]
    assert not missing, f"values missing from the schema: {missing}"


def main():
    only = sys.argv[1:]
    passed = failed = skipped = 0
    for fn in TESTS:
        if only and fn.__name__ not in only:
            continue
        try:
            fn()
        except Skip as e:
            skipped += 1
            print(f"skip {fn.__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - report every failure, keep going
            failed += 1
            print(f"FAIL {fn.__name__}: {e}")
            if not isinstance(e, AssertionError):
                traceback.print_exc()
        else:
            passed += 1
            print(f"ok   {fn.__name__}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
