//go:build tools

// The node's programs (kubelet, kube-controller-manager, kube-scheduler,
// kube-proxy) are built from k8s.io/kubernetes's cmd/ packages, which are
// main packages and cannot be imported; importing their app packages here
// keeps their dependencies in go.mod and go.sum, so `go mod tidy` leaves them.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-proxy/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubernetes/cmd/kubelet/app"
)
