"""Prefect flows: orchestration only; every task calls a function of the `synthgen` package."""
