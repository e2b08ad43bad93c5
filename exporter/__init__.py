"""kubevirt-update-exporter: which KubeVirt VMIs run in outdated virt-launcher pods, why, and what to do."""

__version__ = "0.1.0"
