"""Talking to the model: the vLLM server, the bundled model, and the engine that sends requests."""
