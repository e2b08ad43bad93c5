"""Fault and scale tests against the real test cluster, and tests of that harness."""
