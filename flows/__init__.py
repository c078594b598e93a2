"""Orchestration: the Prefect flows and the serptrain CLI."""
