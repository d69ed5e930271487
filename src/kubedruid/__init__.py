"""kubedruid: run Apache Druid on Kubernetes, with KubeDB's Druid API and safe TLS changes."""

__version__ = "0.1.0"
