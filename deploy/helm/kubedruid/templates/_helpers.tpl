{{- define "kubedruid.name" -}}kubedruid{{- end -}}
{{- define "kubedruid.labels" -}}
app.kubernetes.io/name: kubedruid
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: kubedruid
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
{{- define "kubedruid.selector" -}}
app.kubernetes.io/name: kubedruid
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
