"""Tests of the serving stack: the fleet, snapshots, settings, self-metrics and HTTP."""
