"""Tests of the pure core and its vocabulary: projection, derivation, cache, rendering."""
