"""Running the mesh beyond one machine: Kubernetes manifests from mesh.yaml (see kubernetes.py)."""
