"""Tests of the repository itself: README, layers, version."""
