// Package discoverytest holds fakes for the discovery package's tests:
// KubeAPI, an HTTP server that speaks the Kubernetes API's list and
// watch for pods, services and endpointslices, since no kube-apiserver
// runs in a test.
package discoverytest
