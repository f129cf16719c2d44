"""Chaos harness: checker and schedule unit tests, real chaos runs on a local cluster."""
