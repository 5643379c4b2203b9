"""Desired-state logic per kind: read what is, decide, write through the ports."""
