"""One engine shared by several callers, each in its own thread: `digest run --config a.toml --config
b.toml` writes several posts through one batch.

Each caller gets a member (an Engine). A member's `generate` waits until every member still in the
game has asked (or left); then all their requests go through the real engine in one `generate` call,
keys prefixed by the member, and each member gets back its own results. A caller whose run ends early
(a feed error, say) leaves, and the others go on without it. Because the batching engine's output does
not depend on what else is in the batch, each caller's texts are those of its own single run.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Sequence

from .base import Engine, Generation, ProgressCallback, Request, Stats

_SEP = "\x1f"  # between a member's name and a request key: no key contains it


class SharedBatch:
    def __init__(self, engine: Engine, members: Sequence[str], progress: ProgressCallback | None = None):
        if len(set(members)) != len(members):
            raise ValueError("member names must be unique")
        self.engine = engine
        self.progress = progress
        self._cond = threading.Condition()
        self._active = set(members)
        self._waiting: dict[str, Sequence[Request]] = {}
        self._done: dict[str, Generation | BaseException] = {}
        self._running = False

    def member(self, name: str) -> "Member":
        return Member(self, name)

    def leave(self, name: str) -> None:
        """`name` will ask for nothing more (safe to call twice)."""
        with self._cond:
            self._active.discard(name)
            self._start_if_ready()

    def generate(self, name: str, requests: Sequence[Request]) -> Generation:
        with self._cond:
            if name not in self._active:
                raise RuntimeError(f"member {name!r} has left the batch")
            self._waiting[name] = list(requests)
            self._start_if_ready()
            while name not in self._done:
                self._cond.wait()
            outcome = self._done.pop(name)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _start_if_ready(self) -> None:
        """With the lock held: run the batch when every active member is waiting."""
        while not self._running and self._waiting and set(self._waiting) >= self._active:
            batch, self._waiting = self._waiting, {}
            self._running = True
            self._cond.release()
            try:
                outcome = self._run(batch)
            finally:
                self._cond.acquire()
                self._running = False
            self._done.update(outcome)
            self._cond.notify_all()

    def _run(self, batch: dict[str, Sequence[Request]]) -> dict[str, Generation | BaseException]:
        combined = [dataclasses.replace(r, key=f"{name}{_SEP}{r.key}") for name, requests in batch.items()
                    for r in requests]
        try:
            generation = self.engine.generate(combined, self.progress)
        except BaseException as exc:  # every member of this batch fails the same way
            return {name: exc for name in batch}
        whole = generation.stats
        own: dict[str, list] = {name: [] for name in batch}
        for result in generation.results:
            name, key = result.key.split(_SEP, 1)
            own[name].append(dataclasses.replace(result, key=key))
        out: dict[str, Generation | BaseException] = {}
        for name, results in own.items():
            # A member's counts are its own; the times and steps are those of the batch it shared.
            stats = Stats(requests=len(results), prompt_tokens=sum(r.prompt_tokens for r in results),
                          completion_tokens=sum(r.completion_tokens for r in results),
                          sampled_tokens=sum(r.sampled_tokens for r in results),
                          rollbacks=sum(r.rollbacks for r in results),
                          thinking_tokens=sum(r.thinking_tokens for r in results),
                          decode_steps=whole.decode_steps, wall_seconds=whole.wall_seconds,
                          prompt_seconds=whole.prompt_seconds, phases=dict(whole.phases))
            # the prompt tokens decoded and kept: the batch's, in the share of its prompt tokens that are this member's
            share = stats.prompt_tokens / whole.prompt_tokens if whole.prompt_tokens else 0
            stats.prompt_tokens_decoded = round(whole.prompt_tokens_decoded * share)
            stats.prompt_tokens_kept = round(whole.prompt_tokens_kept * share)
            out[name] = Generation(results, stats)
        return out


class Member(Engine):
    """One caller's view of a SharedBatch: an Engine whose generate() joins the shared batch."""

    def __init__(self, batch: SharedBatch, name: str):
        self._batch = batch
        self.member_name = name
        self.name = batch.engine.name
        self.prevents = batch.engine.prevents
        self.settings = batch.engine.settings  # the engine that runs (several configs: the first's, checked equal)
        self.thinking_budget = batch.engine.thinking_budget

    @property
    def model_name(self) -> str:
        return self._batch.engine.model_name

    @property
    def threads(self):
        return self._batch.engine.threads

    def describe(self) -> dict | None:
        return self._batch.engine.describe()

    def chat_template(self) -> dict | None:
        return self._batch.engine.chat_template()

    def generate(self, requests: Sequence[Request], progress: ProgressCallback | None = None) -> Generation:
        return self._batch.generate(self.member_name, requests)

    def close(self) -> None:
        self._batch.leave(self.member_name)
