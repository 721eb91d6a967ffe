{{- /* temp */ -}}
{{- define "egress-operator.rules.cluster" }}
- apiGroups:
  - egress.dev
  resources:
  - egresshosts
  verbs:
  - get
  - list
  - watch
- apiGroups:
  - egress.dev
  resources:
  - egresshosts/status
  verbs:
  - get
  - patch
  - update
- apiGroups:
  - ''
  resources:
  - events
  verbs:
  - create
  - patch
- apiGroups:
  - ''
  resources:
  - namespaces
  verbs:
  - get
  - list
  - watch
- apiGroups:
  - networking.k8s.io
  resources:
  - networkpolicies
  verbs:
  - get
  - list
  - watch
  - create
  - patch
  - update
  - delete
{{- end }}
{{- define "egress-operator.rules.namespace" }}
- apiGroups:
  - ''
  resources:
  - configmaps
  - secrets
  verbs:
  - get
  - list
  - watch
  - create
  - patch
  - update
  - delete
- apiGroups:
  - ''
  resources:
  - services
  - serviceaccounts
  verbs:
  - get
  - list
  - watch
  - create
  - patch
  - update
  - delete
- apiGroups:
  - apps
  resources:
  - deployments
  verbs:
  - get
  - list
  - watch
  - create
  - patch
  - update
  - delete
- apiGroups:
  - policy
  resources:
  - poddisruptionbudgets
  verbs:
  - get
  - list
  - watch
  - create
  - patch
  - update
  - delete
- apiGroups:
  - coordination.k8s.io
  resources:
  - leases
  verbs:
  - get
  - list
  - watch
  - create
  - update
  - patch
{{- end }}
{{- define "egress-operator.rules.coredns" }}
- apiGroups:
  - ''
  resources:
  - configmaps
  verbs:
  - get
  - list
  - watch
- apiGroups:
  - ''
  resources:
  - configmaps
  resourceNames:
  - coredns
  - coredns-custom
  verbs:
  - patch
  - update
- apiGroups:
  - ''
  resources:
  - configmaps
  verbs:
  - create
{{- end }}
