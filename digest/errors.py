"""The project's own exceptions. Each carries the exit code the CLI returns for it."""

from __future__ import annotations

# The documented exit codes (docs/errors.md).
EXIT_INVALID = 1  # `digest check` found problems
EXIT_USAGE = 2  # bad command line (typer/click)
EXIT_CONFIG = 3
EXIT_FEED = 4
EXIT_MODEL = 5
EXIT_OUTPUT = 6
EXIT_GENERATION = 7
EXIT_LOCKED = 8  # another run holds the lock for this output
EXIT_INPUT_CHANGED = 9  # `digest replay`: an input the manifest names is missing or differs
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C): 128 + 2, as shells report it
EXIT_TERMINATED = 143  # SIGTERM: 128 + 15


class DigestError(Exception):
    """An expected failure: the CLI prints its message on one line and exits with `exit_code`."""

    exit_code = EXIT_INVALID


class ConfigError(DigestError):
    exit_code = EXIT_CONFIG


class FeedError(DigestError):
    exit_code = EXIT_FEED


class ModelError(DigestError):
    exit_code = EXIT_MODEL


class OutputError(DigestError):
    exit_code = EXIT_OUTPUT


class PromptError(ConfigError):
    """A prompt template is missing or names a field we do not have."""


class GenerationError(DigestError):
    """The engine could not produce a usable text (a request too long for the context, ...)."""

    exit_code = EXIT_GENERATION


class LockedError(DigestError):
    """Another `digest run` holds the lock on the same output directory."""

    exit_code = EXIT_LOCKED


class InputChangedError(DigestError):
    """An input named by a manifest (snapshot file, model, prompt, config) is missing or its hash differs."""

    exit_code = EXIT_INPUT_CHANGED


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an interrupt so that the same cleanup runs as for Ctrl-C."""


class PeerError(GenerationError):
    """`digest bench --llama-server`: the peer server is missing, cannot start, or answers badly."""
