"""Tests of the parallel file toolkit."""
