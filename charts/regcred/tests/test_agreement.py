#!/usr/bin/env python3
"""The chart refuses at install time exactly what regcred refuses at start-up.

For a table of edge-case values of every chart value that becomes a regcred
flag, this renders the chart with `helm template` and asks the regcred binary
itself (`--dry-run`: validates the command line and environment, contacts
nothing, reads no file) whether it would start:

  - chart renders  -> the rendered container's args and env of every regcred
    container (Deployment, CronJob, install Job) are run with --dry-run;
  - chart refuses  -> the command line the chart renders for the same values
    without the value under test, plus the flags that value maps to (the
    mapping is checked on every case the chart accepts: the rendered args
    must contain those flags).

A case passes when both accept or both refuse. The binary is the authority:
when a rule changes on either side without the other, a case here fails.
Every flag that the chart's `regcred.args` template can render must appear
in some case, so a new flag cannot go unchecked.

A few values are never seen by `regcred --dry-run` (the CronJob schedule, the
federation audience that the chart turns into a projected token's audience
and a credential file, extraArgs/extraEnv the chart passes through): those
cases carry the verdict the chart must give, and why.

Run: python3 charts/regcred/tests/test_agreement.py [--table]
Needs helm on PATH, PyYAML, and the regcred binary (target/debug/regcred, or
REGCRED_BIN). --table prints the whole table (value, chart, binary).
"""
import json
import os
import re
import subprocess
import sys

import yaml

CHART = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(CHART))
BIN = os.environ.get("REGCRED_BIN", os.path.join(ROOT, "target", "debug", "regcred"))
KUBE_VERSION = os.environ.get("REGCRED_KUBE_VERSION", "1.35.0")
NS = "regcred"

FED = {"federation.enabled": True,
       "federation.audience": "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/pool/providers/k8s"}
FAN_SEL = {"targets.namespaceSelector": "regcred.dev/pull-secret=true"}
CRON = {"mode": "cronjob"}
POOL = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/pool/providers/kubelet"
SA = "puller@project-1.iam.gserviceaccount.com"
NODE = {"mode": "none", "credentialProvider.nodeInstaller.enabled": True}
AWS_INJECT = {"registries": ["123456789012.dkr.ecr.eu-west-1.amazonaws.com"], "aws.injectWebIdentity": True,
              "aws.roleArn": "arn:aws:iam::123456789012:role/puller"}
AZURE_INJECT = {"registries": ["myregistry.azurecr.io"], "azure.injectWorkloadIdentity": True,
                "azure.clientId": "00001111-aaaa-2222-bbbb-3333cccc4444", "azure.tenantId": "contoso.onmicrosoft.com"}
ROLE_ARNS = ["arn:aws:iam::123456789012:role/puller", "arn:aws-cn:iam::123456789012:role/team/ci/puller",
             "arn:aws-us-gov:iam::123456789012:role/p+=,.@_-", "arn:aws:iam::123456789012:role/" + "p" * 65,
             "arn:aws:iam::12345678901:role/puller", "arn:aws-iso:iam::123456789012:role/puller",
             "arn:aws:iam::123456789012:user/puller", "arn:aws:iam::123456789012:role//puller",
             "arn:aws:iam::123456789012:role/pul ler", "arn:aws:sts::123456789012:role/puller"]
CLIENT_IDS = ["00001111-aaaa-2222-bbbb-3333cccc4444", "00001111-AAAA-2222-BBBB-3333CCCC4444",
              "00001111-aaaa-2222-bbbb-3333cccc444", "00001111aaaa2222bbbb3333cccc4444", "app"]
TENANTS = ["72f988bf-86f1-41af-91ab-2d7cd011db47", "contoso.onmicrosoft.com", ".contoso", "-x", "a/b",
           "t" * 256, "t" * 257]


class Case:
    """values: the chart values under test; context: values that make the
    case meaningful (accepted on their own); flags (env): what `values` adds
    to regcred's command line (environment); expect: for values regcred never sees, the
    chart's required verdict (True: renders) and why."""

    def __init__(self, name, values, flags=(), context=None, expect=None, why="", env=None):
        self.name, self.values, self.flags = name, values, list(flags)
        # What `values` adds to regcred's environment, like `flags`.
        self.env = env or {}
        self.context = context or {}
        self.expect, self.why = expect, why


def reg(host):
    return Case(f"registries={host!r}", {"registries": [host]}, [f"--registry={host}"])


def dur(path, flag, value, context=None):
    return Case(f"{path}={value!r}", {path: value}, [f"{flag}={value}"], context)


CASES = [
    # Registry hosts: regcred's rule (src/registry.rs) is gcr.io, *.gcr.io and
    # LOCATION-docker.pkg.dev, bare host names, any case.
    reg("gcr.io"), reg("eu.gcr.io"), reg("europe-west1-docker.pkg.dev"),
    reg("us-docker.pkg.dev"), reg("GCR.IO"), reg("Europe-West1-Docker.pkg.dev"),
    reg("docker.io"), reg("ghcr.io"), reg("quay.io"), reg("europe-west1-docker.pkg.dev:443"),
    reg("gcr.io:443"), reg("https://gcr.io"), reg("gcr.io/project"), reg("docker.pkg.dev"),
    reg("evil.com-docker.pkg.dev"), reg("-docker.pkg.dev"), reg("a.b-docker.pkg.dev"),
    reg("gcr..io"), reg("-x.gcr.io"), reg("gcr.io."), reg("notgcr.io"), reg("mirror.gcr.io.example.com"),
    reg(""), reg("gcr.io,docker.io"), reg("gcr.io,"),
    Case("registries=['gcr.io,us.gcr.io']", {"registries": ["gcr.io,us.gcr.io"]}, expect=False,
         why="one host per entry: regcred splits a flag value at commas, the chart's list does not"),
    Case("registries=[' gcr.io']", {"registries": [" gcr.io"]}, expect=False,
         why="regcred trims spaces; the chart wants the host alone"),
    reg("a" * 64 + ".gcr.io"), reg("a" * 56 + "-docker.pkg.dev"), reg("a" * 57 + "-docker.pkg.dev"),
    reg(".".join(["a" * 63] * 4) + ".gcr.io"), reg(".".join(["a" * 63] * 3) + "." + "a" * 54 + ".gcr.io"),
    # Amazon ECR and ECR Public (parse_ecr in src/registry.rs).
    *[reg(h) for h in [
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "123456789012.DKR.ECR.US-EAST-1.AMAZONAWS.COM",
        "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com", "123456789012.dkr.ecr.eu-west-1.amazonaws.com.cn",
        "123456789012.dkr.ecr.ca-central-1.amazonaws.com", "123456789012.dkr.ecr.cnx-west-1.amazonaws.com",
        "12345678901.dkr.ecr.eu-west-1.amazonaws.com", "1234567890123.dkr.ecr.eu-west-1.amazonaws.com",
        "12345678901a.dkr.ecr.eu-west-1.amazonaws.com", "123456789012.dkr.ecr.eu-west.amazonaws.com",
        "123456789012.dkr.ecr.eu-west-x.amazonaws.com", "123456789012.dkr.ecr.eu.amazonaws.com",
        "123456789012.dkr.ecr.amazonaws.com", "123456789012.dkr.ecr-x.eu-west-1.amazonaws.com",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com:443", "public.ecr.aws", "PUBLIC.ECR.AWS", "ecr.aws",
        "x.public.ecr.aws"]],
    # Azure Container Registry (parse_acr in src/registry.rs).
    *[reg(h) for h in [
        "myregistry.azurecr.io", "MyRegistry.AzureCR.io", "contoso01.azurecr.cn", "govreg.azurecr.us",
        "myregistry-abcdef1234.azurecr.io", "reg.azurecr.io", "myregistry.azurecr.de", "my.registry.azurecr.io",
        "myregistry.azurecr.io.evil.com", "azurecr.io", "my_registry.azurecr.io", "myregistry-.azurecr.io",
        "myreg-a-b.azurecr.io", "a" * 50 + ".azurecr.io", "a" * 51 + ".azurecr.io",
        "a" * 50 + "-" + "b" * 12 + ".azurecr.io", "a" * 50 + "-" + "b" * 13 + ".azurecr.io"]],
    Case("allRegistries=true", {"allRegistries": True}, ["--all-registries"]),
    # Durations (humantime in regcred; the ranges are regcred's).
    *[dur("refresh.requestTimeout", "--request-timeout", v)
      for v in ["10s", "100ms", "99ms", "0", "0s", "10m", "10m1s", "11m", "1.5s", "-1s", "banana", "10", "1h", "2 min"]],
    *[dur("refresh.before", "--refresh-before", v) for v in ["15m", "0", "0s", "-5m", "12h", "13h", "soon", "1h30m", "1.5h"]],
    *[dur("refresh.jitter", "--jitter", v) for v in ["1m", "0s", "banana", "-1s"]],
    *[dur("refresh.resyncInterval", "--resync-interval", v) for v in ["10m", "1s", "999ms", "0s", "0", "banana"]],
    *[dur("impersonate.tokenLifetime", "--token-lifetime", v)
      for v in ["1h", "1800s", "12h", "13h", "12h1s", "43200s", "43201s", "0s", "0", "1s", "1500ms", "1.5h", "-1h", "banana", "1h 30m"]],
    # Impersonation: Google's service account emails (src/source/email.rs).
    *[Case(f"impersonate.serviceAccount={v!r}", {"impersonate.serviceAccount": v}, [f"--impersonate={v}"])
      for v in [SA, "puller@project-1.example.com.iam.gserviceaccount.com", "123456789012-compute@developer.gserviceaccount.com",
                "project-1@appspot.gserviceaccount.com", "service-123456789012@gcp-sa-artifactregistry.iam.gserviceaccount.com",
                "pull@project-1.iam.gserviceaccount.com", "puller@p.iam.gserviceaccount.com", "Puller@project-1.iam.gserviceaccount.com",
                "a" * 31 + "@project-1.iam.gserviceaccount.com", "a" * 30 + "@" + "b" * 30 + "." + "c" * 63 + "." + "d" * 63 + ".iam.gserviceaccount.com",
                "a" * 30 + "@" + "b" * 30 + "." + "c" * 63 + "." + "d" * 63 + "." + "e" * 50 + ".iam.gserviceaccount.com",
                SA + "#frag", SA + "?alt=json", "a@b.c%2F..%2Fx", "x@y.z&alt=1", "a@b.c\\x", SA + "/x", SA + ":signJwt",
                "puller\uff20project-1.iam.gserviceaccount.com", "\u0440uller@project-1.iam.gserviceaccount.com",
                "pull", "pull@localhost", "a/b@c.d", "a@b.c", "pull @p.iam.gserviceaccount.com", "a+b@c.d", "a@b@c.d",
                "puller@evil.com", SA + ".evil.com", "puller@project-1.example.gserviceaccount.com"]],
    Case("impersonate.delegates=[good]", {"impersonate.delegates": ["hop-one@project-1.iam.gserviceaccount.com"]},
         ["--impersonate-delegates=hop-one@project-1.iam.gserviceaccount.com"], {"impersonate.serviceAccount": SA}),
    Case("impersonate.delegates=[nope]", {"impersonate.delegates": ["nope"]}, ["--impersonate-delegates=nope"],
         {"impersonate.serviceAccount": SA}),
    Case("impersonate.delegates without serviceAccount", {"impersonate.delegates": ["hop-one@project-1.iam.gserviceaccount.com"]},
         ["--impersonate-delegates=hop-one@project-1.iam.gserviceaccount.com"]),
    *[Case(f"impersonate.endpoint={v!r}", {"impersonate.endpoint": v}, [f"--impersonation-endpoint={v}"],
           {"impersonate.serviceAccount": SA})
      for v in ["https://iamcredentials.p.googleapis.com", "http://127.0.0.1:9999/", "http://[::1]:9999", "https://h/v1",
                "iam.local", "https://", "ftp://h", "https://u@h", "https://h?x", "https://h#x", "https://h x"]],
    Case("impersonate.serviceAccount with auth=json-key", {"auth": "json-key"}, ["--auth=json-key"],
         {"impersonate.serviceAccount": SA, "credentials.existingSecret": "key"}),
    # Auth and credentials.
    Case("credentials.existingSecret='key'", {"credentials.existingSecret": "key"}, ["--key-file=/etc/regcred/key/key.json"]),
    Case("federation.enabled", {"federation.enabled": True},
         ["--key-file=/etc/regcred/federation/credential-configuration.json"], {"federation.audience": FED["federation.audience"]}),
    Case("auth=json-key with a key", {"auth": "json-key"}, ["--auth=json-key"], {"credentials.existingSecret": "key"}),
    Case("auth=json-key-base64 with a key", {"auth": "json-key-base64"}, ["--auth=json-key-base64"], {"credentials.existingSecret": "key"}),
    Case("auth=json-key without a key", {"auth": "json-key"}, ["--auth=json-key"], expect=False,
         why="regcred needs the key file itself at start (it reads it, which --dry-run does not); the chart checks the value that provides it"),
    Case("auth=password", {"auth": "password"}, ["--auth=password"]),
    # Secrets and keys.
    *[Case(f"targets.secrets[0].name={v!r}", {"targets.secrets": [{"name": v}]}, [f"--secret={NS}/{v}"])
      for v in ["gcr-pull", "a.b", "Gcr-Pull", "gcr_pull", "-x", "x-", "a" * 253, "a" * 254, "a..b", "x/y"]],
    *[Case(f"targets.secrets[0].namespace={v!r}", {"targets.secrets": [{"name": "p", "namespace": v}]}, [f"--secret={v}/p"])
      for v in ["ci", "Ci", "a.b", "a" * 63, "a" * 64, "-ci"]],
    *[Case(f"targets.secrets[0].key={v!r}", {"targets.secrets": [{"name": "p", "key": v}]}, [f"--secret-key={v}"])
      for v in ["registry-auth.json", "config.json", "a/b", "..", ".", "a b", "k" * 253, "k" * 254]],
    # Fan-out.
    *[Case(f"targets.namespaces={v!r}", {"targets.namespaces": v}, [f"--namespace={n}" for n in v])
      for v in [["ci"], ["ci", "gitpod"], ["Ci"], ["a.b"], ["a" * 64], ["-x"]]],
    *[Case(f"targets.namespaceSelector={v!r}", {"targets.namespaceSelector": v}, [f"--namespace-selector={v}"])
      for v in ["regcred.dev/pull-secret=true", "env in (a,b)", "!skip", " "]],
    Case("targets.allNamespaces=true", {"targets.allNamespaces": True}, ["--all-namespaces"]),
    Case("namespaces and allNamespaces", {"targets.allNamespaces": True}, ["--all-namespaces"], {"targets.namespaces": ["ci"]}),
    *[Case(f"targets.excludeNamespaces={v!r}", {"targets.excludeNamespaces": v}, [f"--exclude-namespace={p}" for p in v],
           {"targets.allNamespaces": True})
      for v in [["tmp-*"], ["ci-??"], ["*"], ["kube-system"], ["Kube_*"], [""], ["a b"], ["x-"], ["a" * 64]]],
    Case("targets.excludeNamespaces=['a,b']", {"targets.excludeNamespaces": ["a,b"]}, context={"targets.allNamespaces": True},
         expect=False, why="one pattern per entry: regcred splits a flag value at commas, the chart's list does not"),
    Case("targets.namespaces=['ci,gitpod']", {"targets.namespaces": ["ci,gitpod"]}, expect=False,
         why="one namespace per entry: regcred splits a flag value at commas, the chart's list does not"),
    Case("excludeNamespaces with namespaces", {"targets.excludeNamespaces": ["x"]}, ["--exclude-namespace=x"], {"targets.namespaces": ["ci"]}),
    Case("excludeNamespaces without fan-out", {"targets.excludeNamespaces": ["x"]}, ["--exclude-namespace=x"]),
    Case("prune with namespaceSelector", {"targets.prune": True}, ["--prune"], FAN_SEL),
    Case("prune with allNamespaces", {"targets.prune": True}, ["--prune"], {"targets.allNamespaces": True}),
    Case("prune without fan-out", {"targets.prune": True}, ["--prune"]),
    *[Case(f"targets.serviceAccounts={v!r}", {"targets.serviceAccounts": v}, [f"--patch-service-account={s}" for s in v], FAN_SEL)
      for v in [["default"], ["a.b"], ["Default"], ["a_b"], ["a" * 254]]],
    Case("serviceAccounts without fan-out", {"targets.serviceAccounts": ["default"]}, ["--patch-service-account=default"]),
    Case("annotatedServiceAccounts with fan-out", {"targets.annotatedServiceAccounts": True}, ["--patch-annotated-service-accounts"], FAN_SEL),
    Case("annotatedServiceAccounts without fan-out", {"targets.annotatedServiceAccounts": True}, ["--patch-annotated-service-accounts"]),
    Case("two secrets with fan-out", {"targets.secrets": [{"name": "a"}, {"name": "b"}]}, ["--secret=b"], FAN_SEL),
    *[Case(f"targets.maxConcurrentWrites={v}", {"targets.maxConcurrentWrites": v}, [f"--max-concurrent-writes={v}"], FAN_SEL)
      for v in [1, 0, 64, -1]],
    *[Case(f"targets.maxRequestsPerSecond={v}", {"targets.maxRequestsPerSecond": v}, [f"--max-requests-per-second={v}"], FAN_SEL)
      for v in [0, 100, 4294967295, 4294967296, -1]],
    # Logging and the admin server.
    *[Case(f"log.level={v!r}", {"log.level": v}, [f"--log-level={v}"])
      for v in ["info", "debug", "regcred=debug,info", "info,kube=warn", "bogus", "INFO", "", "regcred=loud", "=info"]],
    *[Case(f"log.format={v!r}", {"log.format": v}, [f"--log-format={v}"]) for v in ["json", "text", "xml"]],
    Case("admin.port=8080", {"admin.port": 8080}, ["--admin-addr=0.0.0.0:8080"]),
    Case("admin.port=65535", {"admin.port": 65535}, ["--admin-addr=0.0.0.0:65535"]),
    Case("admin.port=65536", {"admin.port": 65536}, ["--admin-addr=0.0.0.0:65536"]),
    Case("admin.port=0", {"admin.port": 0}, expect=False,
         why="regcred accepts port 0 (any free port, useful in tests), but the chart's probes and Service need a fixed port"),
    Case("rotationEvents=true", {"rotationEvents": True}, ["--rotation-events"]),
    # The same values under `regcred once` (CronJob and install Job).
    Case("cronjob: refresh.requestTimeout=0s", {"refresh.requestTimeout": "0s"}, ["--request-timeout=0s"], CRON),
    Case("cronjob: impersonate.tokenLifetime=13h", {"impersonate.tokenLifetime": "13h"}, ["--token-lifetime=13h"], CRON),
    Case("cronjob: registries=[docker.io]", {"registries": ["docker.io"]}, ["--registry=docker.io"], CRON),
    # Values regcred --dry-run never sees: the chart's own verdict.
    *[Case(f"cronjob.schedule={v!r}", {"cronjob.schedule": v}, context=CRON, expect=ok, why=why) for v, ok, why in [
        ("*/30 * * * *", True, "every 30 minutes, tokens live 1h"),
        ("*/45 * * * *", True, "at :00 and :45: the longest gap is 45 minutes"),
        ("0,30 * * * *", True, "every 30 minutes"),
        ("*/10 8-17 * * *", False, "no run between 17:50 and 08:00: 1-hour tokens expire"),
        ("0 * * * *", False, "hourly: the token expires as the next run starts"),
        ("@hourly", False, "hourly: the token expires as the next run starts"),
        ("0 */2 * * *", False, "every 2 hours, tokens live 1 hour"),
        ("*/30 * * * 1-5", False, "nothing on weekends"),
        ("@every 20m", True, "every 20 minutes"),
        ("@every 2h", False, "every 2 hours"),
        ("banana", False, "not a cron schedule: Kubernetes refuses the CronJob"),
        ("* * * *", False, "four fields: Kubernetes refuses the CronJob"),
        ("61 * * * *", False, "minute 61: Kubernetes refuses the CronJob"),
        ("*/0 * * * *", False, "step 0: Kubernetes refuses the CronJob"),
        ("CRON_TZ=UTC */30 * * * *", False, "Kubernetes refuses a time zone in the schedule (use cronjob.timeZone)"),
    ]],
    Case("cronjob.schedule='0 */2 * * *' with 3h impersonated tokens", {"cronjob.schedule": "0 */2 * * *"},
         context={**CRON, "impersonate.serviceAccount": SA, "impersonate.tokenLifetime": "3h"},
         expect=True, why="tokens live 3 hours"),
    Case("cronjob.schedule='0 0 * * *' with auth=json-key", {"cronjob.schedule": "0 0 * * *"},
         context={**CRON, "auth": "json-key", "credentials.existingSecret": "key"}, expect=True, why="a key never expires"),
    *[Case(f"federation.audience={v!r}", {"federation.audience": v}, context={"federation.enabled": True}, expect=ok, why=why)
      for v, ok, why in [
        (FED["federation.audience"], True, "a workload identity pool provider"),
        ("//iam.googleapis.com/locations/global/workforcePools/wf/providers/oidc", True, "a workforce pool provider"),
        ("pool", False, "renders the token audience https:pool, which no provider allows"),
        ("projects/123/locations/global/workloadIdentityPools/pool/providers/k8s", False, "missing //iam.googleapis.com/"),
        ("//iam.googleapis.com/projects/my-project/locations/global/workloadIdentityPools/pool/providers/k8s", False,
         "Security Token Service wants the project number, not its id"),
        ("", False, "federation needs the provider"),
    ]],
    Case("federation with credentials.existingSecret", {"credentials.existingSecret": "key"}, context=FED, expect=False,
         why="regcred takes one credential file"),
    # The credential provider's node installer (a DaemonSet): regcred
    # install-credential-provider --dry-run also runs credential-provider
    # --dry-run with the flags after `--`.
    *[Case(f"credentialProvider.workloadIdentityProvider={v!r}", {"credentialProvider.workloadIdentityProvider": v},
           [f"--workload-identity-provider={v}"], NODE)
      for v in [POOL, POOL.replace("/pool/", "/pool-1/"), POOL.replace("/pool/", "/p-1/"), POOL.replace("/kubelet", "/k8s"),
                POOL.replace("/pool/", "/" + "p" * 33 + "/"), POOL.replace("123456789012", "my-project"), POOL + "?x", POOL + "/x",
                "pool", "//iam.googleapis.com/projects/1/workloadIdentityPools/p",
                "//iam.googleapis.com/locations/global/workforcePools/wf/providers/oidc"]],
    Case("credentialProvider.keyFile='/etc/kubernetes/regcred/key.json'",
         {"credentialProvider.keyFile": "/etc/kubernetes/regcred/key.json"}, ["--key-file=/etc/kubernetes/regcred/key.json"], NODE),
    Case("credentialProvider.keyFile='key.json'", {"credentialProvider.keyFile": "key.json"}, context=NODE, expect=False,
         why="the kubelet runs the provider in its own working directory: the chart wants an absolute path on the node"),
    Case("credentialProvider.keyFile with workloadIdentityProvider", {"credentialProvider.keyFile": "/k.json"},
         ["--key-file=/k.json"], {**NODE, "credentialProvider.workloadIdentityProvider": POOL}, expect=False,
         why="pod identity never reads the node's key: the chart asks for one or the other"),
    # ECR and ACR images: not sent, node identity or pod identity; an
    # audience only with pod identity (clap: requires, conflicts_with).
    *[Case(f"credentialProvider.{cloud}.identity={v!r}{beside}", {f"credentialProvider.{cloud}.identity": v}, flags, ctx)
      for cloud in ("ecr", "acr")
      for beside, ctx in (("", NODE), (" with workloadIdentityProvider", {**NODE, "credentialProvider.workloadIdentityProvider": POOL}))
      for v, flags in (("node", [f"--match-{cloud}"]), ("pod", [f"--{cloud}-pod-identity"]))],
    *[Case(f"credentialProvider.{cloud}.identity='both'", {f"credentialProvider.{cloud}.identity": "both"}, context=NODE,
           expect=False, why="one identity per cloud: the schema's enum, as clap refuses --match-X with --X-pod-identity")
      for cloud in ("ecr", "acr")],
    *[Case(f"credentialProvider.{cloud}.tokenAudience={v!r} with identity={identity!r}",
           {f"credentialProvider.{cloud}.tokenAudience": v}, [f"--{cloud}-token-audience={v}"],
           {**NODE, f"credentialProvider.{cloud}.identity": identity})
      for cloud, v in (("ecr", "sts.amazonaws.com"), ("acr", "api://AzureADTokenExchangeChina"))
      for identity in ("pod", "node", "")],
    *[Case(f"credentialProvider.ecr.tokenAudience={v!r}", {"credentialProvider.ecr.tokenAudience": v},
           [f"--ecr-token-audience={v}"], {**NODE, "credentialProvider.ecr.identity": "pod"})
      for v in ["sts amazonaws", "sts.amazonaws.com\n", "a" * 1024, "a" * 1025, "stѕ.amazonaws.com"]],
    Case("credentialProvider.extraArgs=[--impersonate=...]", {"credentialProvider.extraArgs": [f"--impersonate={SA}"]},
         [f"--impersonate={SA}"], NODE),
    *[Case(f"credentialProvider.extraArgs={v!r}", {"credentialProvider.extraArgs": v}, context=NODE, expect=True,
           why="passed through unchecked, like extraArgs; the installer refuses them at start (tests/provider_install.rs)")
      for v in [["--registry=docker.io"], ["--bogus"], ["--token-lifetime=13h"]]],
    Case("credentialProvider.extraArgs=['registry=gcr.io']", {"credentialProvider.extraArgs": ["registry=gcr.io"]},
         context=NODE, expect=False, why="not a flag: the schema wants --"),
    *[Case(f"credentialProvider.nodeInstaller.recheckInterval={v!r}", {"credentialProvider.nodeInstaller.recheckInterval": v},
           [f"--recheck-interval={v}"], NODE)
      for v in ["1m", "0", "1s", "999ms", "banana"]],
    *[Case(f"credentialProvider.nodeInstaller.{k}={v!r}", {f"credentialProvider.nodeInstaller.{k}": v}, [f"--{flag}={v}"], NODE)
      for k, flag in [("binDir", "bin-dir"), ("configFile", "config")] for v in ["/var/lib/kubelet/plugins", "relative"]],
    Case("node installer: log.format=xml", {"log.format": "xml"}, ["--log-format=xml"], {**NODE, "mode": "none"}),
    # Leader election (src/leader/args.rs): on above one replica, or when asked.
    Case("replicaCount=2", {"replicaCount": 2},
         ["--leader-elect", "--leader-elect-lease-name=t-regcred", "--leader-elect-lease-duration=15s",
          "--leader-elect-renew-deadline=10s", "--leader-elect-retry-period=2s"]),
    Case("leaderElection.enabled with one replica", {"leaderElection.enabled": True},
         ["--leader-elect", "--leader-elect-lease-name=t-regcred"]),
    *[dur("leaderElection.leaseDuration", "--leader-elect-lease-duration", v, {"replicaCount": 2})
      for v in ["15s", "2s", "1s", "10m", "11m", "2500ms", "11s", "10s", "0", "banana"]],
    *[dur("leaderElection.renewDeadline", "--leader-elect-renew-deadline", v, {"replicaCount": 2})
      for v in ["10s", "4s", "14s", "15s", "20s", "99ms", "banana"]],
    *[dur("leaderElection.retryPeriod", "--leader-elect-retry-period", v, {"replicaCount": 2})
      for v in ["2s", "5s", "5001ms", "6s", "100ms", "99ms", "banana"]],
    # Amazon ECR and Azure identities. With the chart's own injection,
    # regcred reads them (AWS_ROLE_ARN through RoleArn, AZURE_CLIENT_ID and
    # AZURE_TENANT_ID, AZURE_AUTHORITY_HOST); for EKS's and AKS's webhooks
    # they are annotations that regcred never sees, and the schema alone
    # must hold them to the same rules.
    *[Case(f"aws.roleArn={arn!r} (injected)", {"aws.roleArn": arn}, context=AWS_INJECT, env={"AWS_ROLE_ARN": arn})
      for arn in ROLE_ARNS],
    *[Case(f"aws.roleArn={arn!r} (EKS's webhook)", {"aws.roleArn": arn}, expect=ok,
           why="an annotation for EKS's webhook; the schema holds it to RoleArn's rule")
      for arn, ok in [("arn:aws:iam::123456789012:role/puller", True), ("arn:aws:iam::12345:role/puller", False),
                      ("role/puller", False)]],
    *[Case(f"aws.assumeRoleArn={arn!r}", {"aws.assumeRoleArn": arn}, [f"--aws-role-arn={arn}"]) for arn in ROLE_ARNS],
    Case("aws.injectWebIdentity without roleArn", {"aws.injectWebIdentity": True}, expect=False,
         why="the projected token is exchanged for aws.roleArn; without it regcred would not use the token"),
    Case("aws.tokenAudience=''", {"aws.tokenAudience": ""}, context=AWS_INJECT, expect=False,
         why="a projected token needs an audience"),
    *[Case(f"azure.clientId={c!r} (injected)", {"azure.clientId": c}, context=AZURE_INJECT, env={"AZURE_CLIENT_ID": c})
      for c in CLIENT_IDS],
    *[Case(f"azure.tenantId={t!r} (injected)", {"azure.tenantId": t}, context=AZURE_INJECT, env={"AZURE_TENANT_ID": t})
      for t in TENANTS],
    *[Case(f"azure.clientId={c!r} (AKS's webhook)", {"azure.clientId": c}, expect=ok,
           why="an annotation for AKS's webhook; the schema holds it to ClientId's rule")
      for c, ok in [(CLIENT_IDS[0], True), ("app", False)]],
    *[Case(f"azure.authorityHost={h!r}", {"azure.authorityHost": h}, context=AZURE_INJECT, env={"AZURE_AUTHORITY_HOST": h})
      for h in ["https://login.microsoftonline.us/", "https://login.chinacloudapi.cn", "login.microsoftonline.com",
                "ftp://login.example.com"]],
    Case("azure.injectWorkloadIdentity without tenantId", {"azure.tenantId": ""}, context=AZURE_INJECT, expect=False,
         why="the token exchange names the tenant; AKS's webhook fills it in, the chart cannot"),
    Case("replicaCount=2 with mode=cronjob", {"replicaCount": 2}, context=CRON, expect=False,
         why="a CronJob runs one pod per schedule; the chart refuses a value it would ignore"),
    Case("replicaCount=0", {"replicaCount": 0}, expect=False, why="the schema wants at least one replica"),
    Case("extraArgs=[--watch-timeout=500s]", {"extraArgs": ["--watch-timeout=500s"]}, context=FAN_SEL, expect=True,
         why="passed through unchecked (the chart README says so); regcred refuses it at start"),
]


def set_args(values):
    out = []
    for path, value in values.items():
        out += ["--set-json", f"{path}={json.dumps(value)}"]
    return out


def render(values):
    cmd = ["helm", "template", "t", CHART, "--namespace", NS, "--kube-version", KUBE_VERSION] + set_args(values)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return None, p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "failed"
    return [d for d in yaml.safe_load_all(p.stdout) if d], ""


def containers(docs):
    """(args, env) of every regcred container rendered."""
    out = []
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    for d in docs:
        spec = d.get("spec", {})
        if d["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if d["kind"] not in ("Deployment", "CronJob", "Job", "DaemonSet"):
            continue
        for c in spec["template"]["spec"]["containers"]:
            if c["name"] not in ("regcred", "install"):
                continue
            env = {}
            for e in c.get("env", []):
                if "value" in e:
                    env[e["name"]] = str(e["value"])
                elif "configMapKeyRef" in e.get("valueFrom", {}):
                    ref = e["valueFrom"]["configMapKeyRef"]
                    env[e["name"]] = configmaps.get(ref["name"], {}).get(ref["key"], "")
                else:
                    # A Secret or the downward API: a stand-in value of the
                    # right shape; --dry-run reads no file and no Secret.
                    env[e["name"]] = "x"
            out.append((c["args"], env))
    return out


def binary(args, env):
    """regcred's verdict: (ok, message)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REGCRED_") and k not in ("RUST_LOG",)}
    clean.update(env)
    p = subprocess.run([BIN, *with_flags(args, ["--dry-run"])], capture_output=True, text=True, env=clean)
    if p.returncode not in (0, 2):
        raise AssertionError(f"regcred {args} --dry-run exited {p.returncode}: {p.stderr}")
    return p.returncode == 0, p.stderr.strip()


# Flags regcred takes more than once: a case's value adds to the others.
REPEATABLE = {"--registry", "--secret", "--namespace", "--exclude-namespace", "--patch-service-account"}


def with_flags(args, flags):
    """`args` with `flags` added, replacing flags of the same name (regcred
    refuses a flag given twice, which would make any refusal agree), and
    before a `--` (after it, the installer's flags for credential-provider)."""
    names = {f.split("=", 1)[0] for f in flags} - REPEATABLE
    cut = args.index("--") if "--" in args else len(args)
    head = [a for a in args[:cut] if a.split("=", 1)[0] not in names or a == "--dry-run"]
    return head + flags + args[cut:]


def merged(*dicts):
    out = {}
    for d in dicts:
        out.update(d)
    return out


def run_case(case):
    """Returns (chart_ok, binary_ok or None, detail, failure or None)."""
    docs, chart_err = render(merged(case.context, case.values))
    chart_ok = docs is not None
    if case.expect is not None:
        if chart_ok != case.expect:
            return chart_ok, None, chart_err, f"chart {'renders' if chart_ok else 'refuses'}; must {'render' if case.expect else 'refuse'}: {case.why}"
        return chart_ok, None, case.why or chart_err, None
    if chart_ok:
        runs = containers(docs)
        if not runs:
            return chart_ok, None, "", "no regcred container rendered"
        for args, env in runs:
            missing = [f for f in case.flags if f not in args]
            missing += [f"{k}={v}" for k, v in case.env.items() if env.get(k) != v]
            if missing:
                return chart_ok, None, "", f"the rendered container lacks {missing}: the case's mapping is wrong ({args}, {env})"
    else:
        base, err = render(case.context)
        if base is None:
            return chart_ok, None, "", f"the case's context alone does not render: {err}"
        runs = [(with_flags(args, case.flags), {**env, **case.env}) for args, env in containers(base)]
    verdicts = [binary(args, env) for args, env in runs]
    binary_ok = all(ok for ok, _ in verdicts)
    message = next((m for ok, m in verdicts if not ok), "")
    detail = chart_err if not chart_ok else message
    if chart_ok != binary_ok:
        side = "the chart renders what regcred refuses" if chart_ok else "the chart refuses what regcred accepts"
        return chart_ok, binary_ok, detail, f"{side}: chart: {chart_err or 'ok'}; regcred: {message or 'ok'}"
    return chart_ok, binary_ok, detail, None


def uncovered_flags():
    """Flags the chart's regcred.args can render that no case exercises."""
    helpers = open(os.path.join(CHART, "templates", "_helpers.tpl")).read()
    rendered = set()
    for define in ("regcred.args", "regcred.installerArgs"):
        block = helpers.split(f'define "{define}"', 1)[1].split("{{- end }}\n\n", 1)[0]
        rendered |= set(re.findall(r'"(--[a-z-]+)', block))
    covered = {f.split("=", 1)[0] for c in CASES for f in c.flags}
    return sorted(rendered - covered)


def main():
    missing = uncovered_flags()
    if missing:
        print(f"test_agreement: no case covers the flags {missing} that the chart renders")
        return 1
    if not os.path.exists(BIN):
        print(f"test_agreement: {BIN} not found: build it with `cargo build` (or set REGCRED_BIN)", file=sys.stderr)
        return 2
    table = "--table" in sys.argv
    failures = 0
    verdict = {True: "accepts", False: "refuses", None: "-"}
    for case in CASES:
        chart_ok, binary_ok, detail, failure = run_case(case)
        if failure:
            failures += 1
            print(f"FAIL {case.name}: {failure}")
        elif table:
            print(f"| `{case.name}` | {verdict[chart_ok]} | {verdict[binary_ok]} | {detail[:140]} |")
    print(f"test_agreement: {len(CASES) - failures} agree, {failures} disagree")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
