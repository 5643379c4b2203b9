"""End-to-end tests on a real local control plane (see docs/control-plane.md)."""
