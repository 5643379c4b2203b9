{{/* Names and labels shared by every template. */}}

{{- define "taskq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "taskq.fullname" -}}
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

{{- define "taskq.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "taskq.labels" -}}
helm.sh/chart: {{ include "taskq.chart" . }}
{{ include "taskq.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: taskq
{{- end }}

{{- define "taskq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "taskq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "taskq.operatorSelectorLabels" -}}
{{ include "taskq.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "taskq.apiSelectorLabels" -}}
{{ include "taskq.selectorLabels" . }}
app.kubernetes.io/component: api
{{- end }}

{{- define "taskq.postgresqlSelectorLabels" -}}
{{ include "taskq.selectorLabels" . }}
app.kubernetes.io/component: postgresql
{{- end }}

{{- define "taskq.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "taskq.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from an image value (repository, tag, digest): `list <image> $`. */}}
{{- define "taskq.imageRef" -}}
{{- $image := index . 0 }}
{{- if $image.digest -}}
{{ $image.repository }}@{{ $image.digest }}
{{- else -}}
{{ $image.repository }}:{{ $image.tag | default (index . 1).Chart.AppVersion }}
{{- end }}
{{- end }}

{{- define "taskq.image" -}}
{{ include "taskq.imageRef" (list .Values.image .) }}
{{- end }}

{{- define "taskq.apiImage" -}}
{{ include "taskq.imageRef" (list .Values.api.image .) }}
{{- end }}

{{- define "taskq.apiName" -}}
{{- printf "%s-api" (include "taskq.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "taskq.postgresqlName" -}}
{{- printf "%s-postgresql" (include "taskq.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret and key of the operator's default DSN, or "" when there is none. */}}
{{- define "taskq.databaseSecret" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else if .Values.postgresql.enabled }}
{{- include "taskq.postgresqlName" . }}
{{- end }}
{{- end }}

{{- define "taskq.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.secretKey }}
{{- else }}
{{- "dsn" }}
{{- end }}
{{- end }}

{{/*
The Secret and key of the API's DSN: its own `api.database`, else the operator's default
database. Fails when there is neither: an API without a database could never become ready.
*/}}
{{- define "taskq.apiDatabaseSecret" -}}
{{- $secret := .Values.api.database.existingSecret | default (include "taskq.databaseSecret" .) }}
{{- if not $secret }}
{{- fail "api.enabled needs a database: set api.database.existingSecret, database.existingSecret or postgresql.enabled" }}
{{- end }}
{{- $secret }}
{{- end }}

{{- define "taskq.apiDatabaseSecretKey" -}}
{{- if .Values.api.database.existingSecret }}
{{- .Values.api.database.secretKey }}
{{- else }}
{{- include "taskq.databaseSecretKey" . }}
{{- end }}
{{- end }}

{{/*
True ("true") when every watched namespace is an exact name: the namespaced permissions are then
granted by one Role per namespace. Empty list (all namespaces) or a glob: a ClusterRole.
*/}}
{{- define "taskq.namespacedRbac" -}}
{{- $exact := gt (len .Values.operator.watchNamespaces) 0 }}
{{- range .Values.operator.watchNamespaces }}
{{- if regexMatch "[*?\\[\\]!]" . }}
{{- $exact = false }}
{{- end }}
{{- end }}
{{- if $exact }}true{{ end }}
{{- end }}

{{/*
What the operator does in the namespaces it watches (docs/helm.md explains every rule):
- taskqueues, workerpools, taskqapikeys, taskschedules: kopf lists and watches them, patches its
  finalizer and bookkeeping annotations onto them; WorkerPools and TaskSchedules read their
  TaskQueues (get).
- taskqueues/status, workerpools/status, taskqapikeys/status, taskschedules/status: the operator
  writes status through the subresource.
- workerpools/finalizers, taskqapikeys/finalizers update: a pool's Deployment and DSN Secret, and
  a key's Secret, carry an ownerReference with blockOwnerDeletion, which clusters enforcing
  OwnerReferencesPermissionEnforcement allow only to who may update the owner's finalizers.
- deployments get, create, patch: reads a pool's Deployment state; writes it by server-side
  apply, a PATCH that the API server authorizes as create when the object does not exist yet.
- deployments/scale patch: while the API server refuses a pool's new template, the operator
  scales the Deployment it last accepted through its scale subresource.
- secrets get, create, patch: reads DSN Secrets named by TaskQueues and TaskqApiKeys, and a
  key's own Secret; server-side apply (create, then patch) of the per-pool copy
  `<pool>-taskq-dsn` of the default DSN and of a TaskqApiKey's Secret. By name: never list or
  watch, which would read every Secret of the namespace.
- events create: kopf posts Warning Events on the resources.
*/}}
{{- define "taskq.namespacedRules" -}}
- apiGroups: ["taskq.dev"]
  resources: ["taskqueues", "workerpools", "taskqapikeys", "taskschedules"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["taskq.dev"]
  resources: ["taskqueues/status", "workerpools/status", "taskqapikeys/status", "taskschedules/status"]
  verbs: ["get", "patch"]
- apiGroups: ["taskq.dev"]
  resources: ["workerpools/finalizers", "taskqapikeys/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* The name of the Secret the chart generates for the dashboard's session secret. */}}
{{- define "taskq.apiSessionGeneratedName" -}}
{{- printf "%s-api-session" (include "taskq.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret holding the dashboard's session secret: the user's, else the generated one. */}}
{{- define "taskq.apiSessionSecret" -}}
{{- .Values.api.dashboard.sessionSecret.existingSecret | default (include "taskq.apiSessionGeneratedName" .) }}
{{- end }}

{{/*
Refuse dashboard values that cannot work, naming the value as written and the fix. Rendered by
api-session-secret.yaml, whether or not the API is on.
- the dashboard is served by the API's pods: without api.enabled nothing would serve it;
- api.extraEnv setting TASKQ_API_DASHBOARD or TASKQ_API_SESSION_SECRET beside
  api.dashboard.enabled: two entries of one name, the later silently winning;
- an existing Secret named like the one the chart generates: on the upgrade that sets it, Helm
  deletes the generated Secret (no longer in the release) and the pods cannot start;
- an existing Secret the cluster holds (lookup; nothing to check under `helm template`) without
  the key, or with a value shorter than the 32 characters taskq-api requires.
*/}}
{{- define "taskq.apiDashboardChecks" -}}
{{- if .Values.api.forwardedAllowIps }}
{{- range $i, $env := .Values.api.extraEnv }}
{{- if eq $env.name "TASKQ_API_FORWARDED_ALLOW_IPS" }}
{{- fail (printf "api.extraEnv[%d].name=TASKQ_API_FORWARDED_ALLOW_IPS conflicts with api.forwardedAllowIps, which sets it: keep one of the two" $i) }}
{{- end }}
{{- end }}
{{- end }}
{{- $dashboard := .Values.api.dashboard }}
{{- if $dashboard.enabled }}
{{- if not .Values.api.enabled }}
{{- fail "api.dashboard.enabled=true needs api.enabled=true: the dashboard is served by the API server's pods. Set api.enabled=true (with a database), or leave api.dashboard.enabled false" }}
{{- end }}
{{- range $i, $env := .Values.api.extraEnv }}
{{- if has $env.name (list "TASKQ_API_DASHBOARD" "TASKQ_API_SESSION_SECRET") }}
{{- fail (printf "api.extraEnv[%d].name=%s conflicts with api.dashboard.enabled=true, which sets TASKQ_API_DASHBOARD and TASKQ_API_SESSION_SECRET itself: remove that entry (name your own Secret with api.dashboard.sessionSecret.existingSecret)" $i $env.name) }}
{{- end }}
{{- end }}
{{- $existing := $dashboard.sessionSecret.existingSecret }}
{{- $key := $dashboard.sessionSecret.key }}
{{- if $existing }}
{{- if eq $existing (include "taskq.apiSessionGeneratedName" .) }}
{{- fail (printf "api.dashboard.sessionSecret.existingSecret=%s is the name of the Secret the chart generates, and a Secret named as existing is not generated: helm would delete it, and the pods could not start. Leave existingSecret empty to keep the generated secret, or name a Secret of your own" $existing) }}
{{- end }}
{{- $found := lookup "v1" "Secret" .Release.Namespace $existing }}
{{- if $found }}
{{- if not (hasKey ($found.data | default dict) $key) }}
{{- fail (printf "api.dashboard.sessionSecret.existingSecret=%s: the Secret has no key %q (api.dashboard.sessionSecret.key): add it, or set api.dashboard.sessionSecret.key to the key that holds the session secret" $existing $key) }}
{{- end }}
{{- if lt (len (index $found.data $key | b64dec)) 32 }}
{{- fail (printf "api.dashboard.sessionSecret.existingSecret=%s: key %q holds fewer than 32 characters, and taskq-api refuses a shorter session secret: put 32 or more random characters there, e.g. openssl rand -base64 32" $existing $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
