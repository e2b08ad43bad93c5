{{/*
Names, labels and the exporter container, shared by every template.
*/}}

{{/* Chart name, at most 63 characters (a DNS label). */}}
{{- define "kue.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: "<release>-<chart>", or the release name when it already contains the chart name. */}}
{{- define "kue.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the exporter's pods; never change them on upgrade (selectors are immutable). */}}
{{- define "kue.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kue.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "kue.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kue.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: metrics
app.kubernetes.io/part-of: kubevirt-update-exporter
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The ServiceAccount the exporter's pods run as (deployment mode). */}}
{{- define "kue.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kue.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The ServiceAccount granted our permissions: ours, or the sidecar's host pod's. */}}
{{- define "kue.subjectName" -}}
{{- if eq .Values.mode "sidecar" -}}
{{- required "sidecar.serviceAccount.name is required when mode is sidecar" .Values.sidecar.serviceAccount.name -}}
{{- else -}}
{{- include "kue.serviceAccountName" . -}}
{{- end -}}
{{- end -}}

{{- define "kue.subjectNamespace" -}}
{{- if eq .Values.mode "sidecar" -}}
{{- default .Release.Namespace .Values.sidecar.serviceAccount.namespace -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* The image reference: a digest wins over the tag; the tag defaults to the appVersion. */}}
{{- define "kue.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The port the exporter listens on in the current mode. */}}
{{- define "kue.port" -}}
{{- if eq .Values.mode "sidecar" -}}
{{- .Values.sidecar.port -}}
{{- else -}}
{{- .Values.port -}}
{{- end -}}
{{- end -}}

{{/* --listen HOST:PORT; an IPv6 host is bracketed. */}}
{{- define "kue.listen" -}}
{{- if contains ":" .Values.listenHost -}}
{{- printf "[%s]:%v" .Values.listenHost (include "kue.port" .) -}}
{{- else -}}
{{- printf "%s:%v" .Values.listenHost (include "kue.port" .) -}}
{{- end -}}
{{- end -}}

{{/* HTTP or HTTPS, for probes and the ServiceMonitor. */}}
{{- define "kue.scheme" -}}
{{- if .Values.tls.enabled -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{/* Where the TLS and bearer-token Secrets are mounted in the container. */}}
{{- define "kue.tlsDir" -}}/etc/kubevirt-update-exporter/tls{{- end -}}
{{- define "kue.tokenDir" -}}/etc/kubevirt-update-exporter/token{{- end -}}

{{/*
The exporter container (a single list item), shared by the Deployment, the StatefulSet and the
sidecar ConfigMap. Flags are those of `serve` (exporter/settings.py); each has an environment
twin (KUBEVIRT_UPDATE_EXPORTER_<FLAG>), and the shard ordinal comes in through one
(KUBEVIRT_UPDATE_EXPORTER_SHARD) because it is only known per pod.
*/}}
{{- define "kue.container" -}}
- name: kubevirt-update-exporter
  image: {{ include "kue.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - serve
    - --listen={{ include "kue.listen" . }}
    - --log-format={{ .Values.log.format }}
    - --log-level={{ .Values.log.level }}
    {{- range .Values.namespaces }}
    - --namespace={{ . }}
    {{- end }}
    {{- with .Values.labelSelector }}
    - --label-selector={{ . }}
    {{- end }}
    {{- with .Values.metricAllowlist }}
    - --metric-allowlist={{ join "," . }}
    {{- end }}
    {{- with .Values.metricDenylist }}
    - --metric-denylist={{ join "," . }}
    {{- end }}
    {{- if .Values.tls.enabled }}
    - --tls-cert-file={{ include "kue.tlsDir" . }}/tls.crt
    - --tls-key-file={{ include "kue.tlsDir" . }}/tls.key
    {{- end }}
    {{- if .Values.bearerToken.enabled }}
    - --bearer-token-file={{ include "kue.tokenDir" . }}/{{ .Values.bearerToken.key }}
    {{- end }}
    {{- if and .Values.sharding.enabled (ne .Values.mode "sidecar") }}
    - --total-shards={{ .Values.sharding.replicas }}
    {{- end }}
    {{- range .Values.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  {{- if and .Values.sharding.enabled (ne .Values.mode "sidecar") }}
  env:
    # The StatefulSet controller labels each pod with its ordinal (Kubernetes 1.28+).
    - name: KUBEVIRT_UPDATE_EXPORTER_SHARD
      valueFrom:
        fieldRef:
          fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
  {{- end }}
  ports:
    - name: metrics
      containerPort: {{ include "kue.port" . }}
      protocol: TCP
  livenessProbe:
    httpGet:
      path: /healthz
      port: metrics
      scheme: {{ include "kue.scheme" . }}
    periodSeconds: {{ .Values.livenessProbe.periodSeconds }}
    timeoutSeconds: {{ .Values.livenessProbe.timeoutSeconds }}
    failureThreshold: {{ .Values.livenessProbe.failureThreshold }}
  {{- if ne .Values.mode "sidecar" }}
  {{- /* No readiness probe in a sidecar: our unreadiness (e.g. a forbidden kind) would take the host pod out of its Service. */}}
  readinessProbe:
    httpGet:
      path: /readyz
      port: metrics
      scheme: {{ include "kue.scheme" . }}
    periodSeconds: {{ .Values.readinessProbe.periodSeconds }}
    timeoutSeconds: {{ .Values.readinessProbe.timeoutSeconds }}
    failureThreshold: {{ .Values.readinessProbe.failureThreshold }}
  {{- end }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  {{- if or .Values.tls.enabled .Values.bearerToken.enabled (include "kue.projectedToken" .) }}
  volumeMounts:
    {{- if include "kue.projectedToken" . }}
    # In place of the automounted token: the same files, a token of our own lifetime.
    - name: kube-api-access
      mountPath: /var/run/secrets/kubernetes.io/serviceaccount
      readOnly: true
    {{- end }}
    {{- if .Values.tls.enabled }}
    - name: kubevirt-update-exporter-tls
      mountPath: {{ include "kue.tlsDir" . }}
      readOnly: true
    {{- end }}
    {{- if .Values.bearerToken.enabled }}
    - name: kubevirt-update-exporter-token
      mountPath: {{ include "kue.tokenDir" . }}
      readOnly: true
    {{- end }}
  {{- end }}
{{- end -}}

{{/*
"true" when the pod mounts its own projected ServiceAccount token volume
(serviceAccount.tokenExpirationSeconds), else empty. Sidecar mode cannot: the host pod owns the
token (values.schema.json refuses the value there; this guard covers --skip-schema-validation).
*/}}
{{- define "kue.projectedToken" -}}
{{- if not (kindIs "invalid" .Values.serviceAccount.tokenExpirationSeconds) -}}
{{- if eq .Values.mode "sidecar" -}}
{{- fail "serviceAccount.tokenExpirationSeconds cannot be set in sidecar mode: the host pod owns the ServiceAccount token (set expirationSeconds on its projected volume)" -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{/* The pod volumes the container mounts (a list, possibly empty). */}}
{{- define "kue.volumes" -}}
{{- if include "kue.projectedToken" . }}
# What the ServiceAccount admission plugin would inject (plugin/pkg/admission/serviceaccount,
# TokenVolumeSource), with our token lifetime; the kubelet renews the token at 80 % of it.
- name: kube-api-access
  projected:
    defaultMode: 0644
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: {{ int64 .Values.serviceAccount.tokenExpirationSeconds }}
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                apiVersion: v1
                fieldPath: metadata.namespace
{{- end }}
{{- if .Values.tls.enabled }}
- name: kubevirt-update-exporter-tls
  secret:
    secretName: {{ required "tls.secretName is required when tls.enabled" .Values.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- if .Values.bearerToken.enabled }}
- name: kubevirt-update-exporter-token
  secret:
    secretName: {{ required "bearerToken.secretName is required when bearerToken.enabled" .Values.bearerToken.secretName }}
    defaultMode: 0440
    items:
      - key: {{ .Values.bearerToken.key }}
        path: {{ .Values.bearerToken.key }}
{{- end }}
{{- end -}}

{{/* The pod spec of the Deployment and the StatefulSet. */}}
{{- define "kue.podTemplate" -}}
metadata:
  labels:
    {{- include "kue.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "kue.serviceAccountName" . }}
  # The exporter authenticates to the API server with this ServiceAccount's token: the
  # automounted one, or (serviceAccount.tokenExpirationSeconds) a projected volume of our own.
  automountServiceAccountToken: {{ not (include "kue.projectedToken" .) }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    {{- include "kue.container" . | nindent 4 }}
  {{- with (include "kue.volumes" . | trim) }}
  volumes:
    {{- . | nindent 4 }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* The RBAC rule on the given kubevirt.io resources: read-only, nothing else. */}}
{{- define "kue.readRule" -}}
- apiGroups: ["kubevirt.io"]
  resources:
    {{- range . }}
    - {{ . }}
    {{- end }}
  verbs: ["get", "list", "watch"]
{{- end -}}
