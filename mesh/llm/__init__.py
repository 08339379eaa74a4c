"""LLM agents: model providers (OpenAI-compatible, Ollama), the tool box, the declarative agent of mesh.yaml."""
