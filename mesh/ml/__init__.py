"""Machine-learning parts that run on numpy alone: the MiniLM sentence embedder."""
