"""Helpers for the CNI plugin's tests: the plugin as a runtime execs it, and podman."""
