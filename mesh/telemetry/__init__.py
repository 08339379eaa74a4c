"""Seeing the mesh: Prometheus metrics (``metrics``) of every agent, tool server and graph run."""
