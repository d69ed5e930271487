"""The local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok, cert-manager) built from Go
modules and run as loopback processes, for the demo and the integration tests."""
