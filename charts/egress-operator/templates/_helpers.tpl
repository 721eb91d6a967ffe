{{/* The chart name, truncated for label values. */}}
{{- define "egress-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the operator's objects: `egress-operator` for a release named like it. */}}
{{- define "egress-operator.fullname" -}}
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

{{- define "egress-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "egress-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "egress-operator.labels" -}}
{{ include "egress-operator.selectorLabels" . }}
app.kubernetes.io/part-of: egress-operator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "egress-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "egress-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository[:tag][@digest]; the tag defaults to the chart's appVersion. Call with (list image root). */}}
{{- define "egress-operator.image" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* The operator's flags (see `egress-operator run --help`); the same flags config/operator passes. */}}
{{- define "egress-operator.args" -}}
- run
- --namespace={{ .Release.Namespace }}
{{- if .Values.leaderElection.enabled }}
- --leader-elect
- --lease-duration-seconds={{ .Values.leaderElection.leaseDurationSeconds }}
{{- else }}
- --no-leader-elect
{{- end }}
- --admin-port={{ .Values.adminPort }}
- --log-level={{ .Values.logLevel }}
- --log-format={{ .Values.logFormat }}
- --coredns-mode={{ .Values.coredns.mode }}
- --coredns-namespace={{ .Values.coredns.namespace }}
- --dns-rules={{ .Values.coredns.dnsRules }}
- --proxy-image={{ include "egress-operator.image" (list .Values.proxy.image .) }}
- --proxy-replicas={{ .Values.proxy.replicas }}
{{- if .Values.proxy.autoscaling.enabled }}
- --proxy-max-replicas={{ .Values.proxy.autoscaling.maxReplicas }}
- --proxy-target-cpu-utilization={{ .Values.proxy.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
- --suffix={{ .Values.proxy.suffix }}
{{- range $key, $value := .Values.proxy.podAnnotations }}
- {{ printf "--proxy-pod-annotation=%s=%s" $key $value | quote }}
{{- else }}
- --proxy-pod-annotation=none
{{- end }}
- --proxy-tls-mount-path={{ .Values.proxy.tlsMountPath }}
- --proxy-port={{ .Values.proxy.port }}
- --proxy-cpu-request={{ .Values.proxy.resources.cpuRequest }}
- --proxy-memory-request={{ .Values.proxy.resources.memoryRequest }}
- --proxy-memory-limit={{ .Values.proxy.resources.memoryLimit }}
- --proxy-max-connections={{ .Values.proxy.maxConnections }}
{{- if .Values.proxy.accessLog.enabled }}
- --proxy-access-log
{{- else }}
- --no-proxy-access-log
{{- end }}
{{- if .Values.proxy.accessLog.paths }}
- --proxy-log-paths
{{- end }}
{{- if .Values.proxy.confirmLoad }}
- --confirm-proxy-load
{{- else }}
- --no-confirm-proxy-load
{{- end }}
{{- range $key, $value := .Values.proxy.clientNamespaceLabels }}
- {{ printf "--proxy-client-namespace-label=%s=%s" $key $value | quote }}
{{- end }}
- --cluster-domain={{ .Values.clusterDomain }}
- --coredns-configmap={{ .Values.coredns.configMap }}
- --coredns-custom-configmap={{ .Values.coredns.customConfigMap }}
{{- if .Values.lockdown.enabled }}
- --lockdown
{{- range .Values.lockdown.clusterCIDRs }}
- --lockdown-cluster-cidr={{ . }}
{{- end }}
{{- end }}
- --resync-seconds={{ .Values.resyncSeconds }}
{{- end }}

{{/* "true" when the cluster serves policy/v1 PodDisruptionBudgets (Kubernetes 1.21+), else empty. */}}
{{- define "egress-operator.pdbServed" -}}
{{- if and (.Capabilities.APIVersions.Has "policy/v1") (semverCompare ">=1.21.0-0" .Capabilities.KubeVersion.Version) -}}
true
{{- end }}
{{- end }}

{{/*
Combinations of values the operator would refuse at startup (a crash loop behind a successful install), refused
here instead.
*/}}
{{- define "egress-operator.validate" -}}
{{- if and .Values.proxy.autoscaling.enabled (lt (int .Values.proxy.autoscaling.maxReplicas) (int .Values.proxy.replicas)) }}
{{- fail "proxy.autoscaling.maxReplicas must be at least proxy.replicas" }}
{{- end }}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail "leaderElection.enabled=false needs replicaCount: 1 (more replicas would all reconcile at once)" }}
{{- end }}
{{- $suffix := lower (trimSuffix "." .Values.proxy.suffix) }}
{{- $domain := lower (trimSuffix "." .Values.clusterDomain) }}
{{- if or (eq $suffix $domain) (hasSuffix (printf ".%s" $domain) $suffix) }}
{{- fail (printf "proxy.suffix %s lies within the cluster domain %s, whose names the kubernetes plugin answers: use a name outside it, such as egress.local" $suffix $domain) }}
{{- end }}
{{- end }}
