{{/*
The prefix of every object's name: the release name when it already holds
the chart's name (release "podiam": podiam-webhook, podiam-auth...), else
<release>-<chart>, so that two releases never share a cluster-scoped name.
At most 47 characters: the longest Service name, <prefix>-webhook-metrics,
must stay a DNS label (63).
*/}}
{{- define "podiam.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 47 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 47 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 47 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The namespace of every namespaced object. */}}
{{- define "podiam.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{/* The name of a component's objects: (list $ "webhook") gives podiam-webhook. */}}
{{- define "podiam.component" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "podiam.fullname" $root) (index . 1) -}}
{{- end -}}

{{/*
The version podiam runs: image.tag when set (an operator pinning another
release), else the chart's appVersion.
*/}}
{{- define "podiam.version" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/* Labels of objects shared by every component (Namespace, CRD). */}}
{{- define "podiam.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "podiam.version" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: podiam
{{- end -}}

{{/*
The selector of a component's pods: (list $ "webhook"). Only the name, as in
the plain manifests of earlier versions, because a selector cannot change.
*/}}
{{- define "podiam.selectorLabels" -}}
app.kubernetes.io/name: {{ include "podiam.component" . }}
{{- end -}}

{{/*
Labels of a component's pods: (list $ "webhook"). Only labels that stay the
same from one chart version to the next (no helm.sh/chart, no version), so
that upgrading the chart restarts only the pods whose spec changed.
*/}}
{{- define "podiam.podLabels" -}}
{{ include "podiam.selectorLabels" . }}
app.kubernetes.io/component: {{ index . 1 }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/part-of: podiam
{{- end -}}

{{/* Labels of a component's objects: (list $ "webhook"). */}}
{{- define "podiam.labels" -}}
{{ include "podiam.selectorLabels" . }}
app.kubernetes.io/component: {{ index . 1 }}
{{ include "podiam.commonLabels" (index . 0) }}
{{- end -}}

{{/*
podiam's image, by version: the tag defaults to the chart's appVersion;
image.digest, when set, pins the content (repository:tag@digest).
*/}}
{{- define "podiam.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if eq $tag "latest" -}}
{{- fail "image.tag must name a version, not latest: a tag that moves gives nodes different binaries" -}}
{{- end -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- with .Values.image.digest }}@{{ . }}{{ end -}}
{{- end -}}

{{/*
A memory size in bytes, or "" when it is not one this chart compares: a
Kubernetes quantity, binary (256Mi, 1Gi) or decimal (256M, 1G: powers of 10),
or in bytes (268435456), or a GOMEMLIMIT (200MiB, 1GiB).
*/}}
{{- define "podiam.bytes" -}}
{{- $s := toString . -}}
{{- $units := dict "" 1 "B" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "KiB" 1024 "Mi" 1048576 "MiB" 1048576 "Gi" 1073741824 "GiB" 1073741824 "Ti" 1099511627776 "TiB" 1099511627776 -}}
{{- if regexMatch "^[0-9]+(B|k|M|G|T|Ki|KiB|Mi|MiB|Gi|GiB|Ti|TiB)?$" $s -}}
{{- $n := regexFind "^[0-9]+" $s -}}
{{- $unit := trimPrefix $n $s -}}
{{- mul (atoi $n) (get $units $unit) -}}
{{- end -}}
{{- end -}}

{{/*
The GOMEMLIMIT env entry of a component: (list $ "webhook" $values). Only
from an explicit goMemLimit ("" renders none); refused unless it is below the
container's memory limit, where the runtime would otherwise let the heap grow
past the limit and the kernel kill the container.
*/}}
{{- define "podiam.goMemLimit" -}}
{{- $key := index . 1 -}}
{{- $c := index . 2 -}}
{{- $limit := "" -}}
{{- with $c.resources }}{{ with .limits }}{{ $limit = get . "memory" | default "" | toString }}{{ end }}{{ end -}}
{{- with $c.goMemLimit }}
{{- if ne . "off" }}
{{- $want := include "podiam.bytes" . -}}
{{- $have := include "podiam.bytes" $limit -}}
{{- if and $want $have (ge (atoi $want) (atoi $have)) -}}
{{- fail (printf "%s.goMemLimit (%s) must be below %s.resources.limits.memory (%s): the Go runtime would let the heap grow past the limit and the container be killed. Lower goMemLimit, or set it to \"\" to render none" $key . $key $limit) -}}
{{- end -}}
{{- end -}}
- name: GOMEMLIMIT
  value: {{ . | quote }}
{{- end -}}
{{- end -}}

{{/*
The scheduling fields of a component's pod spec, from its values:
priorityClassName, nodeSelector, affinity, tolerations, imagePullSecrets.
*/}}
{{- define "podiam.scheduling" -}}
{{- $root := index . 0 -}}
{{- $c := index . 1 -}}
{{- with $c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
The agent's backend URL: podiam auth's Service unless set. Without podiam
auth in this release there is no Service to default to.
*/}}
{{- define "podiam.agent.authURL" -}}
{{- if .Values.agent.podiam.authURL -}}
{{- .Values.agent.podiam.authURL -}}
{{- else if not .Values.auth.enabled -}}
{{- fail "agent.podiam.authURL is required when agent.backend is podiam and auth.enabled is false: the URL of podiam auth's Service (https://<name>.<namespace>.svc)" -}}
{{- else -}}
{{- printf "https://%s.%s.svc" (include "podiam.component" (list . "auth")) (include "podiam.namespace" .) -}}
{{- end -}}
{{- end -}}

{{/* The ServiceAccount podiam auth accepts agents' tokens from. */}}
{{- define "podiam.auth.agentServiceAccount" -}}
{{- if .Values.auth.agentServiceAccount -}}
{{- .Values.auth.agentServiceAccount -}}
{{- else -}}
{{- printf "%s/%s" (include "podiam.namespace" .) (include "podiam.component" (list . "agent")) -}}
{{- end -}}
{{- end -}}

{{/*
IRSA without the podiam webhook, for podiam's own pods (roleArn of auth and
issuerSync): the env, volume mount and volume the webhook would inject, so
that a pod created before the webhook answers (one-release install, webhook
down) still has AWS credentials. Such pods carry the skip label.
*/}}
{{- define "podiam.irsa.env" -}}
- name: AWS_ROLE_ARN
  value: {{ . | quote }}
- name: AWS_WEB_IDENTITY_TOKEN_FILE
  value: /var/run/secrets/eks.amazonaws.com/serviceaccount/token
- name: AWS_STS_REGIONAL_ENDPOINTS
  value: regional
{{- end -}}

{{- define "podiam.irsa.volumeMount" -}}
- name: aws-iam-token
  mountPath: /var/run/secrets/eks.amazonaws.com/serviceaccount
  readOnly: true
{{- end -}}

{{- define "podiam.irsa.volume" -}}
- name: aws-iam-token
  projected:
    sources:
      - serviceAccountToken:
          audience: sts.amazonaws.com
          expirationSeconds: 86400
          path: token
{{- end -}}

{{/*
The cluster name the agent sends: agent.clusterName, else podiam auth's when
this release runs it. Both set and different would only show at run time, as
ResourceNotFoundException on every request: refused here.
*/}}
{{- define "podiam.agent.clusterName" -}}
{{- $g := .Values.agent -}}
{{- $a := .Values.auth -}}
{{- if and $a.enabled $g.clusterName $a.clusterName (ne $g.clusterName $a.clusterName) -}}
{{- fail (printf "agent.clusterName (%s) differs from auth.clusterName (%s): podiam auth would answer every agent request with ResourceNotFoundException. Leave agent.clusterName empty to use auth.clusterName" $g.clusterName $a.clusterName) -}}
{{- end -}}
{{- $name := $g.clusterName -}}
{{- if and (not $name) $a.enabled -}}{{- $name = $a.clusterName -}}{{- end -}}
{{- required "agent.clusterName is required when agent.enabled (without auth.enabled): podiam auth's clusterName, or the EKS cluster's name" $name -}}
{{- end -}}

{{/* The ConfigMap holding podiam auth's CA, which the agent mounts. */}}
{{- define "podiam.agent.caConfigMap" -}}
{{- .Values.agent.podiam.caConfigMap | default (printf "%s-ca" (include "podiam.component" (list . "auth"))) -}}
{{- end -}}

{{/*
The namespace's Pod Security Admission level: namespace.podSecurity, else
privileged when the agent runs here (hostNetwork, uid 0, added
capabilities), restricted otherwise.
*/}}
{{- define "podiam.podSecurity" -}}
{{- .Values.namespace.podSecurity | default (ternary "privileged" "restricted" (eq (toString .Values.agent.enabled) "true")) -}}
{{- end -}}

{{/*
A PodDisruptionBudget's minAvailable, checked: (list "webhook" $values).
A count (an integer or a numeric string, which renders as the integer) or a
percentage, which the API server rounds up (60% of 2 replicas keeps 2).
Refused when it keeps every replica: such a budget blocks every node drain.
*/}}
{{- define "podiam.minAvailable" -}}
{{- $key := index . 0 -}}
{{- $c := index . 1 -}}
{{- $s := toString $c.podDisruptionBudget.minAvailable -}}
{{- $replicas := int $c.replicas -}}
{{- $keep := 0 -}}
{{- if regexMatch "^[0-9]+%$" $s -}}
{{- $keep = div (add (mul (atoi (trimSuffix "%" $s)) $replicas) 99) 100 -}}
{{- else if regexMatch "^[0-9]+$" $s -}}
{{- $keep = atoi $s -}}
{{- else -}}
{{- fail (printf "%s.podDisruptionBudget.minAvailable (%s) must be a count or a percentage (50%%)" $key $s) -}}
{{- end -}}
{{- if ge (int $keep) $replicas -}}
{{- fail (printf "%s.podDisruptionBudget.minAvailable (%s) must be below %s.replicas (%d): it keeps %d (a percentage is rounded up), and a budget that keeps every replica blocks node drains" $key $s $key $replicas (int $keep)) -}}
{{- end -}}
{{- $s -}}
{{- end -}}
