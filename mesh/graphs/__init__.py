"""Graphs of mesh.yaml: the mesh's vertex kinds (``vertices``) and the runtime that runs them on the Pregel engine (``runtime``).

This package's import is light (``mesh.config`` imports ``vertices`` to
validate graphs); ``runtime`` pulls in the A2A client, the guard and the engine.
"""
