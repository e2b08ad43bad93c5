"""Tests of the API client (exporter.kube): decoding, faults from a fake server, a real one."""
