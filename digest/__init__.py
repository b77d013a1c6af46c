"""digest: an offline daily-digest generator (README.md).

The version lives here alone: pyproject.toml reads it (setuptools' dynamic version), and so do the
manifests, the feeds' User-Agent and the config that `digest init` writes. Bump it with each change
of behaviour, and say what changed in CHANGELOG.md.
"""

__version__ = "0.8.0"
