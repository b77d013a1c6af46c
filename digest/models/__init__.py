"""Model files: the registry of known models (registry.py), the embedded default model that
`make install` derives (embedded.py) from the model in a PyPI wheel (wheel.py), llama.cpp's
quantizer and the GGUF formats it writes (quantize.py), the GGUF header reader every one of them and
the engines use (gguf.py), and the `digest models` commands (cli.py)."""
