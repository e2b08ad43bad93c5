"""Tests of the command line: serve, report and plan, and the pure modules they print with."""
