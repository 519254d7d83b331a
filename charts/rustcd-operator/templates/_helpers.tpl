{{/*
The chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "rustcd-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: the release name, with the chart name unless it already contains it.
*/}}
{{- define "rustcd-operator.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "rustcd-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels every object carries.
*/}}
{{- define "rustcd-operator.labels" -}}
helm.sh/chart: {{ include "rustcd-operator.chart" . }}
{{ include "rustcd-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: rustcd
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the operator's pods (immutable once a Deployment exists: keep them stable).
*/}}
{{- define "rustcd-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rustcd-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "rustcd-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rustcd-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator's image reference.
*/}}
{{- define "rustcd-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end }}

{{/*
Fails rendering on value combinations the schema cannot catch when it is skipped.
*/}}
{{- define "rustcd-operator.validate" -}}
{{- if and .Values.rbac.namespaced (not .Values.watchNamespace) }}
{{- fail "rbac.namespaced=true grants access to watchNamespace only: set watchNamespace too" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true (two active operators would fight over the clusters)" }}
{{- end }}
{{- end }}

{{/*
The operator's permissions on the objects of the clusters it runs (ClusterRole or namespaced Role).
*/}}
{{- define "rustcd-operator.managerRules" -}}
- apiGroups: ["rustcd.io"]
  resources: ["etcdclusters"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["rustcd.io"]
  resources: ["etcdclusters/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["rustcd.io"]
  resources: ["etcdclusters/scale"]
  verbs: ["get"]
# Backups: EtcdBackups (spec.backup's schedule creates and prunes them) and the Jobs that take them.
- apiGroups: ["rustcd.io"]
  resources: ["etcdbackups"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: ["rustcd.io"]
  resources: ["etcdbackups/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["pods", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# spec.tls: the operator reads the CA and its own client certificate from Secrets to call the members.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# spec.tls.*.issuerRef: the operator requests the member and operator certificates from cert-manager.
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["get", "create", "patch"]
{{- end }}
