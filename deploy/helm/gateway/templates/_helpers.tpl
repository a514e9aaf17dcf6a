{{/*
Names and labels shared by every template. The kustomize base names every object `gateway`
and labels it `app.kubernetes.io/name: gateway`; the chart keeps that label (so the job label
and the dashboard's defaults stay `gateway`) and adds Helm's standard ones.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Object names: fullnameOverride, else the release name when it already contains the chart
name (release `gateway` → `gateway`, as in the kustomize base), else `<release>-<name>`.
*/}}
{{- define "gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "gateway.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The labels that select the gateway's pods. */}}
{{- define "gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "gateway.labels" -}}
{{ include "gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubernaut
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The controller namespace, where RRs live and the Role grants access: config.kubernetes.namespace,
else the release namespace (the gateway then defaults to its pod's own namespace, the same one).
*/}}
{{- define "gateway.controllerNamespace" -}}
{{- default .Release.Namespace .Values.config.kubernetes.namespace }}
{{- end }}

{{/* The port of a listen address such as `0.0.0.0:8080` or `[::]:8080`. */}}
{{- define "gateway.port" -}}
{{- $port := splitList ":" . | last }}
{{- if not (regexMatch "^[0-9]+$" $port) }}
{{- fail (printf "listen address %q has no port" .) }}
{{- end }}
{{- $port | atoi }}
{{- end }}

{{/*
Whole seconds of a gateway duration (`250ms`, `25s`, `1m`, `1h`, `0`), rounded up, for the
grace-period check in the Deployment.
*/}}
{{- define "gateway.seconds" -}}
{{- $d := toString . }}
{{- if eq $d "0" }}0
{{- else if hasSuffix "ms" $d }}{{ div (add (trimSuffix "ms" $d | atoi) 999) 1000 }}
{{- else if hasSuffix "s" $d }}{{ trimSuffix "s" $d | atoi }}
{{- else if hasSuffix "m" $d }}{{ mul (trimSuffix "m" $d | atoi) 60 }}
{{- else if hasSuffix "h" $d }}{{ mul (trimSuffix "h" $d | atoi) 3600 }}
{{- else }}{{ fail (printf "%q is not a duration like 250ms or 25s" $d) }}
{{- end }}
{{- end }}

{{/*
The gateway's config file: the `config` values, key for key, without the two keys whose empty
value means "unset" (kubernetes.namespace, kubernetes.kubeconfig).
*/}}
{{- define "gateway.configFile" -}}
{{- $config := deepCopy .Values.config }}
{{- $kubernetes := omit $config.kubernetes "namespace" "kubeconfig" }}
{{- range $key := list "namespace" "kubeconfig" }}
{{- with get $config.kubernetes $key }}
{{- $_ := set $kubernetes $key . }}
{{- end }}
{{- end }}
{{- $_ := set $config "kubernetes" $kubernetes }}
{{- /* Empty TLS files mean plain HTTP: leave them out. */ -}}
{{- $tls := omit $config.tls "cert_file" "key_file" "client_ca_file" }}
{{- range $key := list "cert_file" "key_file" "client_ca_file" }}
{{- with get $config.tls $key }}
{{- $_ := set $tls $key . }}
{{- end }}
{{- end }}
{{- $_ := set $config "tls" $tls }}
{{- /* An empty history_size means the gateway's default (the threshold): leave it out. */ -}}
{{- if not $config.storm.history_size }}
{{- $_ := set $config "storm" (omit $config.storm "history_size") }}
{{- end }}
{{- toYaml $config }}
{{- end }}
