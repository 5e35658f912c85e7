// Package kubernetes holds the Kubernetes packaging of the agent: a
// Kustomize base (base/) with what every workload shares, the namespace,
// the discovery RBAC, the Service, the Prometheus Operator's ServiceMonitor
// and a PrometheusRule, and the workloads built on it (one directory each).
// Its Go code generates base/prometheusrule.yaml from
// alerts/vitals.rules.yml (PrometheusRule); its tests decode every manifest
// strictly into the Kubernetes and Prometheus Operator API types, render
// each kustomization with Kustomize's own library, check the pods against
// the restricted Pod Security Standard and the agent's configs with the
// agent's own loader, and check that the PrometheusRule is the rules file.
package kubernetes
