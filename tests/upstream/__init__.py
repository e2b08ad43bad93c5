"""Differential tests against KubeVirt's own code: its CRD schemas, its workload updater and
its eviction webhook."""
