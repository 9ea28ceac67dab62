{{/*
The chart's name, truncated to the 63 characters a DNS label allows.
*/}}
{{- define "shadoweval.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name, the prefix of every object: the release name, plus the chart name unless
the release name already contains it.
*/}}
{{- define "shadoweval.fullname" -}}
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
{{- define "shadoweval.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "shadoweval.labels" -}}
helm.sh/chart: {{ include "shadoweval.chart" . }}
{{ include "shadoweval.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: shadoweval
{{- end }}

{{/*
Labels that select this release's pods; add app.kubernetes.io/component to tell the proxy
from the scorer.
*/}}
{{- define "shadoweval.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shadoweval.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The service account the pods run as.
*/}}
{{- define "shadoweval.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "shadoweval.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: the digest when set, else the tag (default: the chart's appVersion).
*/}}
{{- define "shadoweval.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The proxy configuration file: the config block with listen (port, processes) and admin set
by the chart. A
sidecar listens on localhost only (the application is in the same pod); the admin port is
open to the pod network for probes and Prometheus.
*/}}
{{- define "shadoweval.configFile" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $host := ternary "127.0.0.1" "0.0.0.0" (eq .Values.mode "sidecar") }}
{{- $_ := set $cfg "listen" (dict "host" $host "port" .Values.proxy.port "processes" .Values.proxy.processes) }}
{{- $_ := set $cfg "admin" (dict "host" "0.0.0.0" "port" .Values.proxy.adminPort) }}
{{- toYaml $cfg }}
{{- end }}

{{/*
The scorer's configuration file (`shadoweval score --config`): scorer.config, which has the
scorer's own shape (source, sink, scorers, ...; config/scorer.yaml), never the proxy's. A
Kafka source and sink take what they leave unset from the proxy's Kafka sink in config.sink:
bootstrap_servers (with its security, unless they name their own servers), the pairs topic
(source) and scores_topic (sink). admin is set from scorer.adminPort.
*/}}
{{- define "shadoweval.scorerConfigFile" -}}
{{- $cfg := deepCopy (.Values.scorer.config | default dict) }}
{{- $proxySink := .Values.config.sink | default dict }}
{{- $kafka := eq (toString $proxySink.kind) "kafka" }}
{{- $topics := dict "source" "topic" "sink" "scores_topic" }}
{{- range $section := list "source" "sink" }}
{{- $s := index $cfg $section | default dict }}
{{- if eq (toString $s.kind) "kafka" }}
{{- if $kafka }}
{{- /* The proxy's cluster, with its security settings; another cluster brings its own. */}}
{{- if and (not (hasKey $s "bootstrap_servers")) $proxySink.bootstrap_servers }}
{{- $_ := set $s "bootstrap_servers" (deepCopy $proxySink.bootstrap_servers) }}
{{- if and (not (hasKey $s "security")) $proxySink.security }}
{{- $_ := set $s "security" (deepCopy $proxySink.security) }}
{{- end }}
{{- end }}
{{- $topic := index $proxySink (index $topics $section) }}
{{- if and (not (hasKey $s "topic")) $topic }}
{{- $_ := set $s "topic" $topic }}
{{- end }}
{{- end }}
{{- if not $s.bootstrap_servers }}
{{- fail (printf "scorer.config.%s is Kafka but has no bootstrap_servers: use a Kafka sink in config.sink (kind: kafka, bootstrap_servers; docs/kafka.md), whose servers the scorer then uses, or set scorer.config.%s.bootstrap_servers" $section $section) }}
{{- end }}
{{- end }}
{{- $_ := set $cfg $section $s }}
{{- end }}
{{- $_ := set $cfg "admin" (dict "host" "0.0.0.0" "port" .Values.scorer.adminPort) }}
{{- toYaml $cfg }}
{{- end }}

{{/*
Environment variables from Secrets; fails when a candidate's api_key_env has no entry, so a
missing credential is caught at install time instead of by a crash-looping pod.
*/}}
{{- define "shadoweval.secretEnv" -}}
{{- $names := list }}
{{- range .Values.secretEnv }}
{{- $names = append $names .name }}
{{- end }}
{{- range .Values.config.candidates }}
{{- if and .api_key_env (not (has .api_key_env $names)) }}
{{- fail (printf "config.candidates[%s].api_key_env is %s, but secretEnv has no entry named %s (its secretName and secretKey)" .name .api_key_env .api_key_env) }}
{{- end }}
{{- end }}
{{- range .Values.secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .secretKey }}
{{- end }}
{{- end }}

{{/*
The proxy container, shared by the standalone Deployment and the sidecar. Takes a dict:
ctx (the chart's scope), sidecar (bool).
*/}}
{{- define "shadoweval.proxyContainer" -}}
{{- $ := .ctx }}
{{- $sidecar := .sidecar }}
{{- $v := $.Values }}
{{- $prefix := ternary "shadow-" "" $sidecar -}}
- name: shadoweval
  image: {{ include "shadoweval.image" $ }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if and $sidecar $v.sidecar.native }}
  restartPolicy: Always
  {{- end }}
  args: ["serve", "--config", "/etc/shadoweval/shadoweval.yaml"]
  # Relative paths in the config (the file sink's pairs.jsonl) land on the data volume.
  workingDir: /var/lib/shadoweval
  ports:
    - name: {{ $prefix }}proxy
      containerPort: {{ $v.proxy.port }}
      protocol: TCP
    - name: {{ $prefix }}admin
      containerPort: {{ $v.proxy.adminPort }}
      protocol: TCP
  {{- $env := include "shadoweval.secretEnv" $ }}
  {{- if or $env $v.extraEnv }}
  env:
    {{- with $env }}
    {{- . | trim | nindent 4 }}
    {{- end }}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ $prefix }}admin
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 3
  readinessProbe:
    httpGet:
      path: /readyz
      port: {{ $prefix }}admin
    periodSeconds: 5
    timeoutSeconds: 2
    failureThreshold: 2
  {{- if $sidecar }}
  {{- with $v.sidecar.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- else }}
  {{- with $v.proxy.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  {{- with $v.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: {{ $prefix }}config
      mountPath: /etc/shadoweval
      readOnly: true
    - name: {{ $prefix }}data
      mountPath: /var/lib/shadoweval
    - name: {{ $prefix }}tmp
      mountPath: /tmp
    {{- with $v.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
The volumes of the proxy container. Takes a dict: ctx (the chart's scope), sidecar (bool).
*/}}
{{- define "shadoweval.proxyVolumes" -}}
{{- $ := .ctx }}
{{- $v := $.Values }}
{{- $prefix := ternary "shadow-" "" .sidecar -}}
- name: {{ $prefix }}config
  configMap:
    name: {{ include "shadoweval.fullname" $ }}
- name: {{ $prefix }}data
  {{- if $v.dataVolume.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ $v.dataVolume.existingClaim }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ $v.dataVolume.sizeLimit }}
  {{- end }}
- name: {{ $prefix }}tmp
  emptyDir:
    medium: Memory
    sizeLimit: 64Mi
{{- with $v.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The scope of this chart: its own when rendered here, the subchart's when an application
chart that depends on shadoweval includes the sidecar templates with its own scope.
*/}}
{{- define "shadoweval.scopeOf" -}}
{{- if and .Subcharts (hasKey .Subcharts "shadoweval") }}shadoweval{{ end }}
{{- end }}

{{/*
For the application's pod spec: the proxy as a container. In the application's chart
(which lists shadoweval as a dependency):

  containers:
    - name: app
      env:
        - name: OPENAI_BASE_URL
          value: http://127.0.0.1:8080/v1
    {{- include "shadoweval.sidecar" . | nindent 4 }}
  volumes:
    {{- include "shadoweval.sidecarVolumes" . | nindent 4 }}

With sidecar.native: true, include it under initContainers instead.
*/}}
{{- define "shadoweval.sidecar" -}}
{{- $ctx := . }}
{{- if include "shadoweval.scopeOf" . }}
{{- $ctx = index .Subcharts "shadoweval" }}
{{- end }}
{{- include "shadoweval.proxyContainer" (dict "ctx" $ctx "sidecar" true) | trim }}
{{- end }}

{{/*
For the application's pod spec: the volumes the sidecar mounts (see shadoweval.sidecar).
*/}}
{{- define "shadoweval.sidecarVolumes" -}}
{{- $ctx := . }}
{{- if include "shadoweval.scopeOf" . }}
{{- $ctx = index .Subcharts "shadoweval" }}
{{- end }}
{{- include "shadoweval.proxyVolumes" (dict "ctx" $ctx "sidecar" true) | trim }}
{{- end }}
