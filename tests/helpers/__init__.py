"""Reusable test machinery: processes, ports, git repos, leak checks."""
