"""One run of a config: its wiring, the generation methods, the completion stage, the store."""
