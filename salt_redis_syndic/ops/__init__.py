"""Operator views: DC status and job reports for the runner, estate reports, Prometheus metrics."""
