{{/*
The chart's name (app.kubernetes.io/name).
*/}}
{{- define "experiment.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The experiment's full name: the release name, nuclab-exp-<experiment>. At most 52 characters,
so that the StatefulSet's controller-revision-hash label (<name>-<hash>) stays within 63; the
schema and nuclab.spec enforce it, and this fails loudly instead of truncating.
*/}}
{{- define "experiment.fullname" -}}
{{- $name := default .Release.Name .Values.fullnameOverride }}
{{- if gt (len $name) 52 }}
{{- fail (printf "fullname %q is longer than 52 characters: a StatefulSet's revision label would not fit" $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{/*
The headless Service through which peers find each other.
*/}}
{{- define "experiment.headless" -}}
{{- printf "%s-headless" (include "experiment.fullname" .) }}
{{- end }}

{{/*
The Service's DNS name, as peers resolve it.
*/}}
{{- define "experiment.serviceDNS" -}}
{{- printf "%s.%s.svc.%s" (include "experiment.headless" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{- define "experiment.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object: the standard ones plus nuclab.io/experiment.
*/}}
{{- define "experiment.labels" -}}
helm.sh/chart: {{ include "experiment.chart" . }}
{{ include "experiment.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nuclab
nuclab.io/experiment: {{ include "experiment.experimentName" . | quote }}
{{- end }}

{{/*
Selector labels: name + instance only (a StatefulSet's selector can never change).
*/}}
{{- define "experiment.selectorLabels" -}}
app.kubernetes.io/name: {{ include "experiment.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "experiment.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "experiment.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "experiment.image" -}}
{{- if .tag }}
{{- printf "%s:%s" .repository .tag }}
{{- else }}
{{- .repository }}
{{- end }}
{{- end }}

{{/*
Units users think in -> Kubernetes quantities: cores -> millicores, MiB -> Mi,
Mbit/s -> bit/s for the CNI bandwidth plugin (whole Mbit/s as M, fractions as k).
*/}}
{{- define "experiment.cpu" -}}
{{- printf "%.0fm" (mulf . 1000) }}
{{- end }}

{{- define "experiment.memory" -}}
{{- printf "%dMi" (int64 .) }}
{{- end }}

{{- define "experiment.bandwidth" -}}
{{- $v := float64 . }}
{{- if eq $v (floor $v) }}
{{- printf "%.0fM" $v }}
{{- else }}
{{- printf "%.0fk" (mulf $v 1000) }}
{{- end }}
{{- end }}

{{/*
Whether the Prometheus Operator's PodMonitor API exists (then a PodMonitor replaces the
prometheus.io/* scrape annotations).
*/}}
{{- define "experiment.podMonitor" -}}
{{- if and .Values.metrics.enabled (ne .Values.metrics.podMonitor "false") }}
{{- if or (eq .Values.metrics.podMonitor "true") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PodMonitor") }}
{{- true }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Whether the experiment asks for netem (latency or loss, per peer or in the matrix): NOTES.txt
says what the nodes need. nuclab's node agent (roles/net_agent) applies it, not the pods.
*/}}
{{- define "experiment.netem" -}}
{{- with .Values.network }}
{{- if or (gt (float64 .latency) 0.0) (gt (float64 .loss) 0.0) }}
{{- true }}
{{- end }}
{{- range .matrix }}
{{- if or (gt (float64 (.delay | default 0)) 0.0) (gt (float64 (.loss | default 0)) 0.0) }}
{{- true }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A container security context that meets the restricted Pod Security Standard.
*/}}
{{- define "experiment.restricted" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser | int64 }}
runAsGroup: {{ .Values.securityContext.runAsGroup | int64 }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
{{- end }}

{{/*
The experiment's name: experiment.name, else the release name without "nuclab-exp-"
(so `helm install nuclab-exp-purple charts/experiment` is experiment purple).
*/}}
{{- define "experiment.experimentName" -}}
{{- $name := default (trimPrefix "nuclab-exp-" .Release.Name) .Values.experiment.name }}
{{- if or (gt (len $name) 41) (not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $name)) }}
{{- fail (printf "experiment.name: %q is not allowed; a DNS-1123 label of at most 41 characters" $name) }}
{{- end }}
{{- $name }}
{{- end }}
