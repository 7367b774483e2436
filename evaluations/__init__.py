"""Attacks, suites, the runner, metrics and sanity checks. Imports only the core."""
