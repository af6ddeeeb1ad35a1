{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "regcred.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's resources. */}}
{{- define "regcred.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "regcred.selectorLabels" -}}
app.kubernetes.io/name: {{ include "regcred.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "regcred.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "regcred.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "regcred.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "regcred.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "regcred.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* True (non-empty) when the Deployment's replicas elect a leader. */}}
{{- define "regcred.leaderElection" -}}
{{- if and (eq .Values.mode "deployment") (or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1)) }}true{{ end }}
{{- end }}

{{/* True (non-empty) when regcred writes into namespaces it selects itself. */}}
{{- define "regcred.fanOut" -}}
{{- with .Values.targets }}
{{- if or .allNamespaces .namespaceSelector .namespaces }}true{{ end }}
{{- end }}
{{- end }}

{{/*
The target Secrets as a JSON list of {name, namespace, key}, with the
namespace defaulted to the release namespace (left empty under fan-out) and
the key defaulted to .dockerconfigjson.
*/}}
{{- define "regcred.targets" -}}
{{- $fanOut := include "regcred.fanOut" . }}
{{- $out := list }}
{{- range .Values.targets.secrets }}
{{- $ns := .namespace | default "" }}
{{- if and (not $fanOut) (not $ns) }}{{ $ns = $.Release.Namespace }}{{ end }}
{{- $out = append $out (dict "name" .name "namespace" $ns "key" (.key | default ".dockerconfigjson")) }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* The one Secret key every target uses. */}}
{{- define "regcred.secretKey" -}}
{{- $keys := list }}
{{- range (include "regcred.targets" . | fromJsonArray) }}{{ $keys = append $keys .key }}{{ end }}
{{- $keys | uniq | first | default ".dockerconfigjson" }}
{{- end }}

{{/* Paths inside the container. */}}
{{- define "regcred.keyDir" -}}/etc/regcred/key{{- end }}
{{- define "regcred.federationDir" -}}/etc/regcred/federation{{- end }}
{{- define "regcred.tokenDir" -}}/var/run/secrets/regcred/token{{- end }}
{{- /* Where EKS's and AKS's webhooks put the token, so logs and docs read the same. */}}
{{- define "regcred.awsTokenDir" -}}/var/run/secrets/eks.amazonaws.com/serviceaccount{{- end }}
{{- define "regcred.azureTokenDir" -}}/var/run/secrets/azure/tokens{{- end }}

{{/*
The ServiceAccount annotations: serviceAccount.annotations plus what EKS's
and AKS's webhooks read (not when the chart sets the identity up itself:
the webhook would add the same variables a second time).
*/}}
{{- define "regcred.serviceAccountAnnotations" -}}
{{- $v := .Values }}
{{- $a := deepCopy $v.serviceAccount.annotations }}
{{- if and $v.aws.roleArn (not $v.aws.injectWebIdentity) }}
{{- $_ := set $a "eks.amazonaws.com/role-arn" $v.aws.roleArn }}
{{- end }}
{{- if and $v.azure.clientId (not $v.azure.injectWorkloadIdentity) }}
{{- $_ := set $a "azure.workload.identity/client-id" $v.azure.clientId }}
{{- with $v.azure.tenantId }}{{ $_ := set $a "azure.workload.identity/tenant-id" . }}{{ end }}
{{- end }}
{{- with $a }}{{ toYaml . }}{{ end }}
{{- end }}

{{/* The pod's labels beyond the selector: podLabels, and AKS's opt-in label for its webhook. */}}
{{- define "regcred.podLabels" -}}
{{- $v := .Values }}
{{- $l := deepCopy $v.podLabels }}
{{- if and $v.azure.clientId (not $v.azure.injectWorkloadIdentity) }}
{{- $_ := set $l "azure.workload.identity/use" "true" }}
{{- end }}
{{- with $l }}{{ toYaml . }}{{ end }}
{{- end }}

{{/* The regcred container's environment: the clouds' identities the chart sets up, then extraEnv. */}}
{{- define "regcred.env" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $env := list }}
{{- if $v.aws.injectWebIdentity }}
{{- $env = append $env (dict "name" "AWS_ROLE_ARN" "value" $v.aws.roleArn) }}
{{- $env = append $env (dict "name" "AWS_WEB_IDENTITY_TOKEN_FILE" "value" (printf "%s/token" (include "regcred.awsTokenDir" $root))) }}
{{- end }}
{{- if $v.azure.injectWorkloadIdentity }}
{{- $env = append $env (dict "name" "AZURE_CLIENT_ID" "value" $v.azure.clientId) }}
{{- $env = append $env (dict "name" "AZURE_TENANT_ID" "value" $v.azure.tenantId) }}
{{- $env = append $env (dict "name" "AZURE_FEDERATED_TOKEN_FILE" "value" (printf "%s/azure-identity-token" (include "regcred.azureTokenDir" $root))) }}
{{- with $v.azure.authorityHost }}
{{- $env = append $env (dict "name" "AZURE_AUTHORITY_HOST" "value" .) }}
{{- end }}
{{- end }}
{{- $env = concat $env $v.extraEnv }}
{{- with $env }}{{ toYaml . }}{{ end }}
{{- end }}

{{/*
A duration as regcred reads it (humantime; the schema has checked the
syntax), in milliseconds, as a float: "1h30m" -> 5.4e+06.
*/}}
{{- define "regcred.durationMs" -}}
{{- $ms := dict "nanos" 0.000001 "nsec" 0.000001 "ns" 0.000001 "usec" 0.001 "us" 0.001 "µs" 0.001
  "millis" 1.0 "msec" 1.0 "ms" 1.0 "seconds" 1000.0 "second" 1000.0 "secs" 1000.0 "sec" 1000.0 "s" 1000.0
  "minutes" 60000.0 "minute" 60000.0 "mins" 60000.0 "min" 60000.0 "m" 60000.0
  "hours" 3600000.0 "hour" 3600000.0 "hrs" 3600000.0 "hr" 3600000.0 "h" 3600000.0
  "days" 86400000.0 "day" 86400000.0 "d" 86400000.0
  "weeks" 604800000.0 "week" 604800000.0 "wks" 604800000.0 "wk" 604800000.0 "w" 604800000.0
  "months" 2630016000.0 "month" 2630016000.0 "M" 2630016000.0
  "years" 31557600000.0 "year" 31557600000.0 "yrs" 31557600000.0 "yr" 31557600000.0 "y" 31557600000.0 }}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)? *[a-zA-Zµ]+" (toString .) -1 }}
{{- $unit := regexFind "[a-zA-Zµ]+$" . }}
{{- $total = addf $total (mulf (float64 (regexFind "^[0-9]+(\\.[0-9]+)?" .)) (get $ms $unit)) }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
One field of a cron schedule, as Kubernetes reads it (robfig/cron: lists,
ranges, steps, `*`, `?`, month and weekday names), expanded to a JSON object
whose keys are the values it matches. Call with (dict "field" F "what" NAME
"lo" N "hi" N "names" (dict "JAN" 1 ...) "schedule" S).
*/}}
{{- define "regcred.cronField" -}}
{{- $out := dict }}
{{- range splitList "," .field }}
{{- $item := upper . }}
{{- range $name, $n := $.names }}{{ $item = replace $name (toString $n) $item }}{{ end }}
{{- if not (regexMatch "^(\\*|\\?|[0-9]+(-[0-9]+)?)(/[0-9]+)?$" $item) }}
{{- fail (printf "cronjob.schedule %q: %q is not a valid %s field (Kubernetes would refuse the CronJob)" $.schedule $.field $.what) }}
{{- end }}
{{- $range := regexReplaceAll "/.*" $item "" }}
{{- $step := 1 }}
{{- if contains "/" $item }}{{ $step = regexReplaceAll ".*/" $item "" | atoi }}{{ end }}
{{- $a := $.lo }}{{ $b := $.hi }}
{{- if regexMatch "^[0-9]+-[0-9]+$" $range }}
{{- $a = regexReplaceAll "-.*" $range "" | atoi }}{{ $b = regexReplaceAll ".*-" $range "" | atoi }}
{{- else if regexMatch "^[0-9]+$" $range }}
{{- $a = atoi $range }}
{{- if not (contains "/" $item) }}{{ $b = $a }}{{ end }}
{{- end }}
{{- if or (lt $step 1) (lt $a $.lo) (gt $b $.hi) (gt $a $b) }}
{{- fail (printf "cronjob.schedule %q: %q is out of range for the %s field (%d-%d; steps at least 1)" $.schedule $.field $.what $.lo $.hi) }}
{{- end }}
{{- range untilStep $a (add1 $b | int) $step }}{{ $_ := set $out (toString .) true }}{{ end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
The longest time between two runs of cronjob.schedule, in minutes (at least
1440 when the schedule skips some days); fails on a schedule Kubernetes
would refuse.
*/}}
{{- define "regcred.cronGapMinutes" -}}
{{- $s := .Values.cronjob.schedule | trim }}
{{- $macros := dict "@yearly" "0 0 1 1 *" "@annually" "0 0 1 1 *" "@monthly" "0 0 1 * *" "@weekly" "0 0 * * 0"
  "@daily" "0 0 * * *" "@midnight" "0 0 * * *" "@hourly" "0 * * * *" }}
{{- if hasPrefix "@every " $s }}
{{- $d := trimPrefix "@every " $s | trim }}
{{- if not (regexMatch "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$" $d) }}
{{- fail (printf "cronjob.schedule %q: @every takes a Go duration such as 20m or 1h30m" $s) }}
{{- end }}
{{- divf (include "regcred.durationMs" $d | float64) 60000.0 | ceil | int }}
{{- else }}
{{- $fields := regexSplit " +" (get $macros $s | default $s) -1 }}
{{- if ne (len $fields) 5 }}
{{- fail (printf "cronjob.schedule %q: expected five fields (minute hour day-of-month month day-of-week) or a macro such as @daily; a time zone goes in cronjob.timeZone" $s) }}
{{- end }}
{{- $months := dict "JAN" 1 "FEB" 2 "MAR" 3 "APR" 4 "MAY" 5 "JUN" 6 "JUL" 7 "AUG" 8 "SEP" 9 "OCT" 10 "NOV" 11 "DEC" 12 }}
{{- $days := dict "SUN" 0 "MON" 1 "TUE" 2 "WED" 3 "THU" 4 "FRI" 5 "SAT" 6 }}
{{- $min := include "regcred.cronField" (dict "field" (index $fields 0) "what" "minute" "lo" 0 "hi" 59 "names" dict "schedule" $s) | fromJson }}
{{- $hour := include "regcred.cronField" (dict "field" (index $fields 1) "what" "hour" "lo" 0 "hi" 23 "names" dict "schedule" $s) | fromJson }}
{{- $dom := include "regcred.cronField" (dict "field" (index $fields 2) "what" "day-of-month" "lo" 1 "hi" 31 "names" dict "schedule" $s) | fromJson }}
{{- $month := include "regcred.cronField" (dict "field" (index $fields 3) "what" "month" "lo" 1 "hi" 12 "names" $months "schedule" $s) | fromJson }}
{{- $dow := include "regcred.cronField" (dict "field" (index $fields 4) "what" "day-of-week" "lo" 0 "hi" 6 "names" $days "schedule" $s) | fromJson }}
{{- $runs := list }}
{{- range $h := until 24 }}{{ if hasKey $hour (toString $h) }}
{{- range $m := until 60 }}{{ if hasKey $min (toString $m) }}{{ $runs = append $runs (add (mul $h 60) $m) }}{{ end }}{{ end }}
{{- end }}{{ end }}
{{- $gap := sub (add (first $runs) 1440) (last $runs) }}
{{- $prev := first $runs }}
{{- range rest $runs }}{{ $gap = max $gap (sub . $prev) }}{{ $prev = . }}{{ end }}
{{- if not (and (eq (len $dom) 31) (eq (len $month) 12) (eq (len $dow) 7)) }}{{ $gap = max $gap 1440 }}{{ end }}
{{- $gap }}
{{- end }}
{{- end }}

{{/*
How long the access tokens regcred writes live, in minutes: impersonate.tokenLifetime
when set (impersonated tokens), else the hour every other Google access token lives.
*/}}
{{- define "regcred.tokenLifetimeMinutes" -}}
{{- with .Values.impersonate.tokenLifetime }}
{{- divf (include "regcred.durationMs" . | float64) 60000.0 | floor | int }}
{{- else }}60{{ end }}
{{- end }}

{{/*
Rejects combinations of values that the schema cannot express, with a message
that says what to change.
*/}}
{{- define "regcred.validate" -}}
{{- $v := .Values }}
{{- $cp := $v.credentialProvider }}
{{- if ne $v.mode "none" }}
{{- include "regcred.validateRefresher" . }}
{{- else if not $cp.nodeInstaller.enabled }}
{{- fail "mode=none renders no Deployment or CronJob, and credentialProvider.nodeInstaller.enabled is off: nothing would be installed. Turn the node installer on, or choose mode=deployment or cronjob" }}
{{- end }}
{{- if and $cp.workloadIdentityProvider $cp.keyFile }}
{{- fail "credentialProvider.keyFile is for node identity, but credentialProvider.workloadIdentityProvider makes every pull use the pod's own identity: set one of them" }}
{{- end }}
{{- range $cloud := list "ecr" "acr" }}
{{- $c := index $cp $cloud }}
{{- if and $c.tokenAudience (ne $c.identity "pod") }}
{{- fail (printf "credentialProvider.%s.tokenAudience is the audience of pods' tokens, but credentialProvider.%s.identity is not pod: set identity=pod, or leave tokenAudience empty" $cloud $cloud) }}
{{- end }}
{{- end }}
{{- if $cp.nodeInstaller.enabled }}
{{- $ms := include "regcred.durationMs" $cp.nodeInstaller.recheckInterval | float64 }}
{{- if and (gt $ms 0.0) (lt $ms 1000.0) }}
{{- fail (printf "credentialProvider.nodeInstaller.recheckInterval=%s: expected 0 (never) or at least 1s" $cp.nodeInstaller.recheckInterval) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The checks of the Deployment's and CronJob's values. */}}
{{- define "regcred.validateRefresher" -}}
{{- $v := .Values }}
{{- $t := $v.targets }}
{{- $fanOut := include "regcred.fanOut" . }}
{{- /* regcred's ranges on durations (the value parsers beside each flag in src/); the schema checked the syntax. */}}
{{- $timeout := include "regcred.durationMs" $v.refresh.requestTimeout | float64 }}
{{- if or (lt $timeout 100.0) (gt $timeout 600000.0) }}
{{- fail (printf "refresh.requestTimeout=%s: expected 100ms to 10m (the deadline of each request to Google or Kubernetes)" $v.refresh.requestTimeout) }}
{{- end }}
{{- if lt (include "regcred.durationMs" $v.refresh.resyncInterval | float64) 1000.0 }}
{{- fail (printf "refresh.resyncInterval=%s: must be at least 1s" $v.refresh.resyncInterval) }}
{{- end }}
{{- with $v.impersonate.tokenLifetime }}
{{- $ms := include "regcred.durationMs" . | float64 }}
{{- if or (lt $ms 1000.0) (gt $ms 43200000.0) (ne $ms (floor (divf $ms 1000.0) | mulf 1000.0)) }}
{{- fail (printf "impersonate.tokenLifetime=%s: expected whole seconds from 1s to 12h (43200s)" .) }}
{{- end }}
{{- end }}
{{- if include "regcred.leaderElection" . }}
{{- $le := $v.leaderElection }}
{{- $lease := include "regcred.durationMs" $le.leaseDuration | float64 }}
{{- $renew := include "regcred.durationMs" $le.renewDeadline | float64 }}
{{- $retry := include "regcred.durationMs" $le.retryPeriod | float64 }}
{{- if or (lt $lease 2000.0) (gt $lease 600000.0) (ne $lease (floor (divf $lease 1000.0) | mulf 1000.0)) }}
{{- fail (printf "leaderElection.leaseDuration=%s: expected whole seconds from 2s to 10m (a Lease records its duration in seconds)" $le.leaseDuration) }}
{{- end }}
{{- range $name, $ms := dict "renewDeadline" $renew "retryPeriod" $retry }}
{{- if or (lt $ms 100.0) (gt $ms 600000.0) }}
{{- fail (printf "leaderElection.%s=%s: expected 100ms to 10m" $name (get $le $name)) }}
{{- end }}
{{- end }}
{{- if ge $renew $lease }}
{{- fail (printf "leaderElection.renewDeadline=%s must be shorter than leaderElection.leaseDuration=%s: the leader stops writing at the renew deadline, and a standby takes over at the lease duration" $le.renewDeadline $le.leaseDuration) }}
{{- end }}
{{- if gt (mulf $retry 2.0) $renew }}
{{- fail (printf "leaderElection.retryPeriod=%s must be at most half the leaderElection.renewDeadline=%s, so the leader gets a second try at renewing before it stops" $le.retryPeriod $le.renewDeadline) }}
{{- end }}
{{- end }}
{{- if and (gt (int $v.replicaCount) 1) (ne $v.mode "deployment") }}
{{- fail (printf "replicaCount=%d is for mode=deployment: a CronJob runs one pod per schedule, and overlapping runs are already safe" (int $v.replicaCount)) }}
{{- end }}
{{- if eq $v.mode "cronjob" }}
{{- $gap := include "regcred.cronGapMinutes" . | int }}
{{- $lifetime := include "regcred.tokenLifetimeMinutes" . | int }}
{{- if and (eq $v.auth "oauth") (ge $gap $lifetime) }}
{{- fail (printf "cronjob.schedule %q leaves up to %d minutes between runs, but the access tokens it writes live %d minutes: pulls would fail until the next run. Run it more often (for example */30 * * * *), or set impersonate.tokenLifetime" $v.cronjob.schedule $gap $lifetime) }}
{{- end }}
{{- end }}
{{- if not $t.secrets }}
{{- fail "targets.secrets is empty: name at least one Secret for regcred to keep fresh" }}
{{- end }}
{{- $keys := list }}
{{- range (include "regcred.targets" . | fromJsonArray) }}{{ $keys = append $keys .key }}{{ end }}
{{- if gt (len ($keys | uniq)) 1 }}
{{- fail (printf "targets.secrets use different keys %v: regcred writes one key name (--secret-key) into every Secret; use one key or a second release" ($keys | uniq)) }}
{{- end }}
{{- if and (ne $v.auth "oauth") (not $v.credentials.existingSecret) }}
{{- fail (printf "auth=%s hands the service-account key itself to the registry: set credentials.existingSecret to the Secret holding the key" $v.auth) }}
{{- end }}
{{- if $v.federation.enabled }}
{{- if $v.credentials.existingSecret }}
{{- fail "federation.enabled and credentials.existingSecret are both set: regcred takes one credential file; choose one" }}
{{- end }}
{{- if not $v.federation.audience }}
{{- fail "federation.enabled needs federation.audience (the workload identity pool provider, //iam.googleapis.com/projects/.../providers/...)" }}
{{- end }}
{{- if ne $v.auth "oauth" }}
{{- fail "federation.enabled mints OAuth access tokens: set auth=oauth" }}
{{- end }}
{{- end }}
{{- if and $v.aws.injectWebIdentity (not $v.aws.roleArn) }}
{{- fail "aws.injectWebIdentity needs aws.roleArn: the IAM role that the pod's ServiceAccount token is exchanged for" }}
{{- end }}
{{- if and $v.azure.injectWorkloadIdentity (not (and $v.azure.clientId $v.azure.tenantId)) }}
{{- fail "azure.injectWorkloadIdentity needs azure.clientId and azure.tenantId: the app the pod's ServiceAccount token is federated with, and its tenant" }}
{{- end }}
{{- if and $v.azure.authorityHost (not $v.azure.injectWorkloadIdentity) }}
{{- fail "azure.authorityHost is set without azure.injectWorkloadIdentity: with AKS's webhook, the webhook sets AZURE_AUTHORITY_HOST" }}
{{- end }}
{{- if and $v.impersonate.delegates (not $v.impersonate.serviceAccount) }}
{{- fail "impersonate.delegates is set without impersonate.serviceAccount" }}
{{- end }}
{{- if and $v.impersonate.endpoint (not $v.impersonate.serviceAccount) }}
{{- fail "impersonate.endpoint is set without impersonate.serviceAccount: it is the API that impersonation calls" }}
{{- end }}
{{- if and $v.impersonate.serviceAccount (ne $v.auth "oauth") }}
{{- fail "impersonate.serviceAccount mints OAuth access tokens: set auth=oauth" }}
{{- end }}
{{- $modes := 0 }}
{{- if $t.allNamespaces }}{{ $modes = add1 $modes }}{{ end }}
{{- if $t.namespaceSelector }}{{ $modes = add1 $modes }}{{ end }}
{{- if $t.namespaces }}{{ $modes = add1 $modes }}{{ end }}
{{- if gt $modes 1 }}
{{- fail "set only one of targets.namespaces, targets.namespaceSelector and targets.allNamespaces" }}
{{- end }}
{{- if and $t.excludeNamespaces (not (or $t.allNamespaces $t.namespaceSelector)) }}
{{- fail "targets.excludeNamespaces applies to targets.allNamespaces or targets.namespaceSelector; set one of them (targets.namespaces lists the namespaces itself)" }}
{{- end }}
{{- if and $t.prune (not $t.namespaceSelector) }}
{{- fail "targets.prune removes the Secret from namespaces that stop matching targets.namespaceSelector: set targets.namespaceSelector, or turn prune off" }}
{{- end }}
{{- if and (or $t.serviceAccounts $t.annotatedServiceAccounts) (not $fanOut) }}
{{- fail "targets.serviceAccounts and targets.annotatedServiceAccounts patch ServiceAccounts in the namespaces fan-out selects: set targets.namespaces, targets.namespaceSelector or targets.allNamespaces" }}
{{- end }}
{{- if $fanOut }}
{{- if $t.createSecrets }}
{{- fail "targets.createSecrets cannot be combined with namespace fan-out: the namespaces are only known at run time, so regcred must create the Secrets itself" }}
{{- end }}
{{- if ne (len $t.secrets) 1 }}
{{- fail (printf "targets.secrets has %d entries, but namespace fan-out writes exactly one Secret name into every selected namespace: list one entry (use a second release for another name)" (len $t.secrets)) }}
{{- end }}
{{- range $t.secrets }}
{{- if .namespace }}
{{- fail (printf "targets.secrets[%s].namespace is set, but with namespace fan-out the Secret is written into every selected namespace: leave namespace empty" .name) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (ne $v.mode "deployment") (or $v.metrics.serviceMonitor.enabled $v.metrics.prometheusRule.enabled) }}
{{- fail "metrics.serviceMonitor and metrics.prometheusRule need mode=deployment: `regcred once` in a CronJob serves no metrics" }}
{{- end }}
{{- end }}

{{/*
Prometheus Operator objects: rendered when enabled and the cluster serves
their kind in monitoring.coreos.com/v1, or when forced (offline rendering).
Each prints "true" or nothing.
*/}}
{{- define "regcred.serviceMonitor" -}}
{{- $sm := .Values.metrics.serviceMonitor }}
{{- if and $sm.enabled (eq .Values.mode "deployment") (or $sm.force (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor")) }}true{{ end }}
{{- end }}

{{- define "regcred.prometheusRule" -}}
{{- $pr := .Values.metrics.prometheusRule }}
{{- if and $pr.enabled (eq .Values.mode "deployment") (or $pr.force (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule")) }}true{{ end }}
{{- end }}

{{/*
regcred's arguments. Call with (dict "root" $ "command" "run"|"once").
*/}}
{{- define "regcred.args" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $t := $v.targets }}
{{- $args := list .command (printf "--auth=%s" $v.auth) }}
{{- if $v.credentials.existingSecret }}
{{- $args = append $args (printf "--key-file=%s/key.json" (include "regcred.keyDir" $root)) }}
{{- else if $v.federation.enabled }}
{{- $args = append $args (printf "--key-file=%s/credential-configuration.json" (include "regcred.federationDir" $root)) }}
{{- end }}
{{- range $v.registries }}{{ $args = append $args (printf "--registry=%s" .) }}{{ end }}
{{- if $v.allRegistries }}{{ $args = append $args "--all-registries" }}{{ end }}
{{- range (include "regcred.targets" $root | fromJsonArray) }}
{{- if .namespace }}
{{- $args = append $args (printf "--secret=%s/%s" .namespace .name) }}
{{- else }}
{{- $args = append $args (printf "--secret=%s" .name) }}
{{- end }}
{{- end }}
{{- $key := include "regcred.secretKey" $root }}
{{- if ne $key ".dockerconfigjson" }}
{{- $args = append $args (printf "--secret-key=%s" $key) }}
{{- end }}
{{- if include "regcred.fanOut" $root }}
{{- range $t.namespaces }}{{ $args = append $args (printf "--namespace=%s" .) }}{{ end }}
{{- if $t.namespaceSelector }}
{{- $args = append $args (printf "--namespace-selector=%s" $t.namespaceSelector) }}
{{- end }}
{{- if $t.allNamespaces }}{{ $args = append $args "--all-namespaces" }}{{ end }}
{{- range $t.excludeNamespaces }}{{ $args = append $args (printf "--exclude-namespace=%s" .) }}{{ end }}
{{- if $t.prune }}{{ $args = append $args "--prune" }}{{ end }}
{{- range $t.serviceAccounts }}{{ $args = append $args (printf "--patch-service-account=%s" .) }}{{ end }}
{{- if $t.annotatedServiceAccounts }}{{ $args = append $args "--patch-annotated-service-accounts" }}{{ end }}
{{- /* regcred uses the throughput limits only for fan-out. */}}
{{- $args = append $args (printf "--max-concurrent-writes=%d" (int64 $t.maxConcurrentWrites)) }}
{{- $args = append $args (printf "--max-requests-per-second=%d" (int64 $t.maxRequestsPerSecond)) }}
{{- end }}
{{- with $v.impersonate }}
{{- if .serviceAccount }}
{{- $args = append $args (printf "--impersonate=%s" .serviceAccount) }}
{{- if .delegates }}
{{- $args = append $args (printf "--impersonate-delegates=%s" (join "," .delegates)) }}
{{- end }}
{{- with .endpoint }}{{ $args = append $args (printf "--impersonation-endpoint=%s" .) }}{{ end }}
{{- end }}
{{- /* Also read by credential files that impersonate (federation). */}}
{{- with .tokenLifetime }}{{ $args = append $args (printf "--token-lifetime=%s" .) }}{{ end }}
{{- end }}
{{- with $v.aws.assumeRoleArn }}{{ $args = append $args (printf "--aws-role-arn=%s" .) }}{{ end }}
{{- if eq .command "run" }}
{{- $args = append $args (printf "--refresh-before=%s" $v.refresh.before) }}
{{- $args = append $args (printf "--jitter=%s" $v.refresh.jitter) }}
{{- $args = append $args (printf "--resync-interval=%s" $v.refresh.resyncInterval) }}
{{- $args = append $args (printf "--admin-addr=0.0.0.0:%d" (int $v.admin.port)) }}
{{- if include "regcred.leaderElection" $root }}
{{- $le := $v.leaderElection }}
{{- $args = concat $args (list "--leader-elect" (printf "--leader-elect-lease-name=%s" (include "regcred.fullname" $root))) }}
{{- $args = append $args (printf "--leader-elect-lease-duration=%s" $le.leaseDuration) }}
{{- $args = append $args (printf "--leader-elect-renew-deadline=%s" $le.renewDeadline) }}
{{- $args = append $args (printf "--leader-elect-retry-period=%s" $le.retryPeriod) }}
{{- end }}
{{- end }}
{{- if $v.rotationEvents }}{{ $args = append $args "--rotation-events" }}{{ end }}
{{- $args = append $args (printf "--request-timeout=%s" $v.refresh.requestTimeout) }}
{{- $args = append $args (printf "--log-format=%s" $v.log.format) }}
{{- $args = append $args (printf "--log-level=%s" $v.log.level) }}
{{- $args = concat $args $v.extraArgs }}
{{- toYaml $args }}
{{- end }}

{{/*
The pod spec shared by the Deployment, the CronJob and the install Job.
Call with (dict "root" $ "command" "run"|"once").
*/}}
{{- define "regcred.podSpec" -}}
{{- $root := .root }}
{{- $v := $root.Values -}}
serviceAccountName: {{ include "regcred.serviceAccountName" $root }}
# regcred talks to the Kubernetes API to write the Secrets.
automountServiceAccountToken: true
enableServiceLinks: false
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
containers:
  - name: regcred
    image: {{ include "regcred.image" $root }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args:
      {{- include "regcred.args" . | nindent 6 }}
    {{- with include "regcred.env" . }}
    env:
      {{- . | nindent 6 }}
    {{- end }}
    {{- if eq .command "run" }}
    ports:
      - name: admin
        containerPort: {{ $v.admin.port }}
        protocol: TCP
    startupProbe:
      httpGet:
        path: /livez
        port: admin
      periodSeconds: 2
      failureThreshold: 30
    livenessProbe:
      httpGet:
        path: /livez
        port: admin
      periodSeconds: 20
      timeoutSeconds: 3
      failureThreshold: 3
    readinessProbe:
      httpGet:
        path: /readyz
        port: admin
      periodSeconds: 10
      timeoutSeconds: 3
      failureThreshold: 3
    {{- end }}
    resources:
      {{- toYaml $v.resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    {{- if or $v.credentials.existingSecret $v.federation.enabled $v.aws.injectWebIdentity $v.azure.injectWorkloadIdentity }}
    volumeMounts:
      {{- if $v.credentials.existingSecret }}
      - name: key
        mountPath: {{ include "regcred.keyDir" $root }}
        readOnly: true
      {{- end }}
      {{- if $v.federation.enabled }}
      - name: federation
        mountPath: {{ include "regcred.federationDir" $root }}
        readOnly: true
      - name: federation-token
        mountPath: {{ include "regcred.tokenDir" $root }}
        readOnly: true
      {{- end }}
      {{- if $v.aws.injectWebIdentity }}
      - name: aws-token
        mountPath: {{ include "regcred.awsTokenDir" $root }}
        readOnly: true
      {{- end }}
      {{- if $v.azure.injectWorkloadIdentity }}
      - name: azure-token
        mountPath: {{ include "regcred.azureTokenDir" $root }}
        readOnly: true
      {{- end }}
    {{- end }}
{{- if or $v.credentials.existingSecret $v.federation.enabled $v.aws.injectWebIdentity $v.azure.injectWorkloadIdentity }}
volumes:
  {{- if $v.credentials.existingSecret }}
  # A directory mount (not subPath), so a rotated key reaches the pod.
  - name: key
    secret:
      secretName: {{ $v.credentials.existingSecret }}
      defaultMode: 0440
      items:
        - key: {{ $v.credentials.key }}
          path: key.json
  {{- end }}
  {{- if $v.federation.enabled }}
  - name: federation
    configMap:
      name: {{ include "regcred.fullname" $root }}-federation
      defaultMode: 0444
  - name: federation-token
    projected:
      defaultMode: 0440
      sources:
        - serviceAccountToken:
            path: token
            audience: {{ $v.federation.token.audience | default (printf "https:%s" $v.federation.audience) }}
            expirationSeconds: {{ $v.federation.token.expirationSeconds }}
  {{- end }}
  {{- /* The kubelet renews projected tokens at 80 % of their life; EKS's and AKS's webhooks ask for these lifetimes. */}}
  {{- if $v.aws.injectWebIdentity }}
  - name: aws-token
    projected:
      defaultMode: 0440
      sources:
        - serviceAccountToken:
            path: token
            audience: {{ $v.aws.tokenAudience }}
            expirationSeconds: 86400
  {{- end }}
  {{- if $v.azure.injectWorkloadIdentity }}
  - name: azure-token
    projected:
      defaultMode: 0440
      sources:
        - serviceAccountToken:
            path: azure-identity-token
            audience: {{ $v.azure.tokenAudience }}
            expirationSeconds: 3600
  {{- end }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $affinity := deepCopy $v.affinity }}
{{- if and (eq .command "run") (gt (int $v.replicaCount) 1) $v.podAntiAffinity (not (hasKey $affinity "podAntiAffinity")) }}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "regcred.selectorLabels" $root | fromYaml)) }}
{{- if eq $v.podAntiAffinity "hard" }}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) }}
{{- else }}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) }}
{{- end }}
{{- end }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "regcred.podMetadata" -}}
labels:
  {{- include "regcred.selectorLabels" . | nindent 2 }}
  {{- /* The admin Service selects it: the installer's pods share the selector labels. */}}
  app.kubernetes.io/component: refresher
  {{- with include "regcred.podLabels" . }}
  {{- . | nindent 2 }}
  {{- end }}
{{- with .Values.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The installer's labels: the selector labels and its component. */}}
{{- define "regcred.installerSelectorLabels" -}}
{{ include "regcred.selectorLabels" . }}
app.kubernetes.io/component: credential-provider-installer
{{- end }}

{{/*
The node installer's arguments: `install-credential-provider` with the host
paths, then after `--` the flags the kubelet's config passes to
`regcred credential-provider`.
*/}}
{{- define "regcred.installerArgs" -}}
{{- $v := .Values }}
{{- $cp := $v.credentialProvider }}
{{- $ni := $cp.nodeInstaller }}
{{- $args := list "install-credential-provider" (printf "--bin-dir=%s" $ni.binDir) (printf "--config=%s" $ni.configFile) }}
{{- with $cp.workloadIdentityProvider }}{{ $args = append $args (printf "--workload-identity-provider=%s" .) }}{{ end }}
{{- if eq $cp.ecr.identity "node" }}{{ $args = append $args "--match-ecr" }}{{ end }}
{{- if eq $cp.ecr.identity "pod" }}{{ $args = append $args "--ecr-pod-identity" }}{{ end }}
{{- with $cp.ecr.tokenAudience }}{{ $args = append $args (printf "--ecr-token-audience=%s" .) }}{{ end }}
{{- if eq $cp.acr.identity "node" }}{{ $args = append $args "--match-acr" }}{{ end }}
{{- if eq $cp.acr.identity "pod" }}{{ $args = append $args "--acr-pod-identity" }}{{ end }}
{{- with $cp.acr.tokenAudience }}{{ $args = append $args (printf "--acr-token-audience=%s" .) }}{{ end }}
{{- $args = append $args (printf "--recheck-interval=%s" $ni.recheckInterval) }}
{{- $args = append $args (printf "--log-format=%s" $v.log.format) }}
{{- $provider := list }}
{{- with $cp.keyFile }}{{ $provider = append $provider (printf "--key-file=%s" .) }}{{ end }}
{{- $provider = concat $provider $cp.extraArgs }}
{{- if $provider }}{{ $args = concat $args (list "--") $provider }}{{ end }}
{{- toYaml $args }}
{{- end }}
