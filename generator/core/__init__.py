"""The shared core: records, errors, paths, atomic writes, text normalisation and the Jinja
sandbox. It imports nothing else from the project; it is the only part of `generator` that
`filters/` imports."""
