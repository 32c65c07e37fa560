// Package k8s holds logitpair's Kubernetes manifests (a kustomize base, the
// overlays small, paper and gpu, and the gpu component; see README.md) and
// their test: every overlay is rendered with the kustomize Go API, every
// object decoded with strict field checking into the Kubernetes API types (and
// the Prometheus Operator's PodMonitor type), and the objects' references to
// each other and to the binaries' flags are checked. The package has no
// non-test code.
package k8s
