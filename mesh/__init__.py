"""The mesh runtime: config, serving, guard enforcement and the Pregel engine (knows no particular agent)."""
