"""The user's own documents: reading (read.py), the corpus a config names (corpus.py), chunks (chunk.py)."""
