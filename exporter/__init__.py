"""kubevirt-update-exporter: which KubeVirt VMIs run in outdated launcher pods, why, what to do."""

__version__ = "0.1.0"
