{{/*
Name of every object the chart creates (Deployment, ServiceAccount, RBAC, the
report Service, the leader Lease): "<release>-operator", or fullnameOverride.
`helm install anneal charts/anneal` gives "anneal-operator", the names the
operator's own defaults and deploy/ use.
*/}}
{{- define "anneal.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "anneal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "anneal.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the operator's pods (never change them on upgrade). */}}
{{- define "anneal.selectorLabels" -}}
app.kubernetes.io/name: anneal
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "anneal.labels" -}}
{{ include "anneal.selectorLabels" . }}
app.kubernetes.io/part-of: anneal
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "anneal.operatorImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "anneal.trainerImage" -}}
{{- printf "%s:%s" .Values.trainer.image.repository (default .Chart.AppVersion .Values.trainer.image.tag) -}}
{{- end -}}

{{- define "anneal.fetchImage" -}}
{{- printf "%s:%s" .Values.fetch.image.repository (default .Chart.AppVersion .Values.fetch.image.tag) -}}
{{- end -}}

{{/* Where trainer pods post their events: the report Service, which reaches only the leader. */}}
{{- define "anneal.reportBaseUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "anneal.fullname" .) .Release.Namespace (int .Values.service.reportPort) -}}
{{- end -}}

{{/* Refuses console settings that would show jobs to whoever reaches the pod. */}}
{{- define "anneal.consoleChecks" -}}
{{- if and .Values.console.expose (eq .Values.console.auth "none") }}
{{- fail "console.expose needs console.auth token or header: without sign-in the console shows every job to whoever reaches it" }}
{{- end }}
{{- if and .Values.console.expose (eq .Values.console.auth "header") .Values.networkPolicy.enabled (not .Values.console.allowFrom) }}
{{- fail "console.auth header with console.expose needs console.allowFrom (your proxy's pods): anyone else reaching the port could set the headers" }}
{{- end }}
{{- if and .Values.console.ingress.enabled (not .Values.console.expose) }}
{{- fail "console.ingress.enabled needs console.expose" }}
{{- end }}
{{- end -}}
