"""The batching engine: all requests of a run as parallel sequences in one llama.cpp context.

How a run goes:
- Every prompt is formatted with the model's chat template and tokenized up front; the context is
  sized from the longest prompt + token limit, and a request that cannot fit fails before any decoding.
- The prefix that all prompts share (system prompt, common instructions) is decoded once, on a
  "holder" sequence, and copied into each slot. Requests admitted together that share a longer
  prefix (the Benefits and Ramifications of one topic share the topic's text) decode it once on one
  slot and copy it to the others.
- Each step advances every live sequence by one token in a single `llama_decode`. A finished
  sequence's slot is refilled from the queue at once (continuous batching).
- Batch invariance: each sequence has its own KV stream (non-unified cache) and its own sampler
  seeded by its own seed, so its tokens depend only on its prompt, seed and sampling settings.
  Two things measured on CPU would break that, and are avoided: flash attention (off), and a prompt
  chunk of a single token, which takes another kernel path than chunks of two or more and so gives
  other bits. Every prompt chunk (shared prefix, group prefix, a request's own tail) is therefore
  decoded in a `llama_decode` of its own, as one ubatch of at least `MIN_CHUNK` tokens.
- Live sequences are kept on consecutive sequence ids, in order, because llama.cpp packs a batch of
  separate streams into one forward pass only when their ids are consecutive.
- Prevent before checking. A request's fact guard (digest.facts) takes out of a row's top-k
  candidates every token that would write a number or name its source does not give, before the
  sampler chain runs (a row with none left looks at more of the vocabulary). A request's sentence
  rule is asked about each sentence as soon as it is finished: a sentence it refuses is undone in
  its own KV stream (`llama_memory_seq_rm` from the sentence's first position), and its first token
  is drawn again from the candidates kept from when it was first drawn (no decode: a one-token
  decode would take another kernel path), with a generator seeded from the request's seed, the
  sentence's number and the attempt. So a sequence's tokens still depend only on its own prompt,
  seed and settings.
- A prompt is not decoded twice. The engine keeps its context for the next run that fits in it, and
  in memory each prompt's KV cells and last logits (`llama_state_seq_get_data`); a later run of the
  same prompt (a section's retry, with another seed) puts them back in its slot and draws its first
  token from them. The cells are the bits a decode gives (they depend on the prompt's tokens alone),
  so the text is the same. `forget` drops them.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence


import numpy as np

from .. import sentences
from ..errors import GenerationError
from ..facts import GuardState
from ..models.gguf import block_count
from .base import (Engine, FinishReason, Generation, Progress, ProgressCallback, Request, Result, Sampling, Stats,
                   check_unique_keys)
from .chat import ChatFormatter, template_source
from .llama import default_threads
from .rollback import SentenceMachine
from .native import (CACHE_TYPES, DEFAULT_CACHE_TYPE_K, MAX_SEQUENCES, Batch, Context, Grammar, Model, LOGITS_SHARE,
                     logits_budget, stream_cells)
from .sampling import RowSampler, choose_rows, top_k_allowed, top_k_rows
from .thinking import ThinkingState, split_thinking
from .timing import PhaseClock
from .vocabulary import Vocabulary

# What `_sample_alone` gives where the fact guard allows no token of the vocabulary: the sentence
# being written cannot go on (it is undone, or the paragraph ends before it).
_DEAD_END = -1

# Repetition guard: a sequence ends when its last tokens are one short pattern repeated; a pattern of
# `period` tokens must repeat max(3, REPEAT_SPAN // period) times.
MIN_CHUNK = 2
REPEAT_MAX_PERIOD = 48
REPEAT_SPAN = 24


def _state_bytes(state: tuple) -> int:
    """The bytes a kept prompt takes: its cells (Context.save_sequence) and its logits row."""
    return len(state[0]) + state[1].nbytes


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def repetition_start(tokens: Sequence[int]) -> int | None:
    """Where a trailing loop begins (keeping its first occurrence), or None if there is none."""
    n = len(tokens)
    for period in range(1, min(REPEAT_MAX_PERIOD, n // 3) + 1):
        times = max(3, REPEAT_SPAN // period)
        if period * times > n:
            continue
        tail = tokens[n - period:]
        if all(tokens[n - k * period: n - (k - 1) * period] == tail for k in range(2, times + 1)):
            return n - (times - 1) * period
    return None


class RepeatGuard:
    """`repetition_start(tokens) is not None`, kept up to date one token at a time.

    For each period p it counts the trailing positions i where tokens[i] == tokens[i - p]; the tokens
    end in a loop of period p when that run covers (times - 1) * p positions. Calling
    `repetition_start` on every token cost ~0.3 ms a sequence a step (5 ms a step at a batch of 16)."""

    NEED = [0] + [(max(3, REPEAT_SPAN // p) - 1) * p for p in range(1, REPEAT_MAX_PERIOD + 1)]

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.runs = [0] * (REPEAT_MAX_PERIOD + 1)

    def push(self, token: int) -> bool:
        """Take the next token; True when the tokens now end in a loop."""
        tokens, runs, need = self.tokens, self.runs, self.NEED
        n = len(tokens)
        tokens.append(token)
        looping = False
        for p in range(1, min(REPEAT_MAX_PERIOD, n) + 1):
            if tokens[n - p] == token:
                runs[p] += 1
                if runs[p] >= need[p]:
                    looping = True
            else:
                runs[p] = 0
        return looping


@dataclass
class _Sequence:
    index: int
    request: Request
    prompt: list[int]
    row: RowSampler
    grammar: Grammar | None
    slot: int = -1
    start: int = 0  # prompt tokens already in this slot's KV stream when it is admitted
    n_past: int = 0
    tokens: list[int] = field(default_factory=list)
    pieces: list[bytes] = field(default_factory=list)
    began: float = 0.0
    first: int = -1  # the token sampled right after the prompt
    repeats: RepeatGuard = field(default_factory=RepeatGuard)  # the repeat guard (the fact guard: `facts`)
    facts: GuardState | None = None  # the request's fact guard, following the text
    # Sentence rollback: the sentence machine (its decisions: rollback.py), where the sentence being
    # written begins (a token index), and the candidates its first token was drawn from (with the
    # recent tokens of the repeat penalty as they were then); `drawn`: those of the latest draw.
    machine: SentenceMachine | None = None
    sentence_start: int = 0
    saved: tuple | None = None
    drawn: tuple | None = None
    sampled: int = 0
    think: ThinkingState = field(default_factory=ThinkingState)

    def text(self) -> str:
        return b"".join(self.pieces).decode("utf-8", errors="ignore")

    @property
    def kept(self) -> list[str]:
        """The sentences kept so far (none without a sentence rule)."""
        return self.machine.kept if self.machine is not None else []

    def sentence(self) -> str:
        """The sentence being written: the text from `sentence_start` on."""
        return b"".join(self.pieces[self.sentence_start:]).decode("utf-8", errors="ignore")


class BatchedEngine(Engine):
    name = "batched"
    prevents = frozenset({"guard", "sentences", "bias"})

    def __init__(self, model_path: Path, *, n_ctx: int = 0, threads: int = 0, n_gpu_layers: int = 0, slots: int = 0,
                 cache_type_k: str = DEFAULT_CACHE_TYPE_K, thinking: bool = False, thinking_tokens: int = 0,
                 thinking_family: bool = False, chat_format: str = ""):
        """`thinking`: what a template that takes `enable_thinking` is given. `thinking_tokens`: the
        budget of a reasoning block, apart from each request's max_tokens, for a model whose template
        will think (0, and for any other model: the block counts against max_tokens); `thinking_family`:
        the registry says the model thinks (chat.TemplateTraits)."""
        if cache_type_k not in CACHE_TYPES:
            raise ValueError(f"unknown K cache type {cache_type_k!r} (known: {', '.join(CACHE_TYPES)})")
        self.cache_type_k = cache_type_k
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self.threads = threads or default_threads()
        self.slots = slots
        self._model = Model(self.model_path, n_gpu_layers=n_gpu_layers)
        self._format = ChatFormatter(template_source(self._model.metadata, str(self.model_path), chat_format),
                                     bos_token=self._model.bos_text, eos_token=self._model.eos_text,
                                     model_label=str(self.model_path), thinking=thinking,
                                     thinking_tokens=thinking_tokens, thinking_family=thinking_family,
                                     add_bos=self._model.add_bos)
        self.thinking_budget = self._format.traits.budget
        self._vocabulary = Vocabulary(lambda: [self._model.piece(t) for t in range(self._model.n_vocab)])
        # The phase timers of the generate running now (one at a time per engine): Stats.phases.
        self._clock = PhaseClock()
        # The context of the last run, kept for the next one that fits in it, and the prompts that run
        # decoded, kept (their KV cells and last logits) for a run of the same prompts: a section's
        # retry decodes no prompt token (`_keep`). `_kept_now`: those of the run going on.
        self._context: Context | None = None
        self._kept: dict[tuple[int, ...], tuple] = {}
        self._kept_now: dict[tuple[int, ...], tuple] = {}
        self._kept_bytes = 0

    @property
    def model_name(self) -> str:
        return self.model_path.stem

    def chat_template(self) -> dict:
        return self._format.describe()

    def close(self) -> None:
        self.forget()
        model, self._model = getattr(self, "_model", None), None
        if model is not None:
            model.close()

    def forget(self) -> None:
        """Free the kept context and the prompts kept in it."""
        context, self._context = getattr(self, "_context", None), None
        self._kept, self._kept_now, self._kept_bytes = {}, {}, 0
        if context is not None:
            context.close()

    def _context_for(self, *, n_ctx_seq: int, n_seq_max: int, n_batch: int, swa_full: bool) -> Context:
        """The kept context, emptied, where the run fits in it; else a new one (the prompts kept go)."""
        need = dict(n_ctx_seq=n_ctx_seq, n_seq_max=n_seq_max, n_batch=n_batch, swa_full=swa_full)
        if self._context is not None and self._context.holds(**need):
            self._context.clear()
            return self._context
        self.forget()
        self._context = Context(self._model, threads=self.threads, cache_type_k=self.cache_type_k, **need)
        return self._context

    def kv_cache_bytes(self, requests: Sequence[Request]) -> int:
        """Bytes of the KV cache (K in `cache_type_k`, V in f16) that `generate(requests)` allocates."""
        prompts = [self.tokenize(r) for r in requests]
        _, _, n_seq, cells = self._plan(requests, prompts)
        meta = self._model.metadata
        arch = meta.get("general.architecture", "llama")
        n_layer = block_count(meta)
        n_head = int(meta[f"{arch}.attention.head_count"])
        n_head_kv = int(meta.get(f"{arch}.attention.head_count_kv", n_head))
        head_dim = int(meta.get(f"{arch}.attention.key_length", int(meta[f"{arch}.embedding_length"]) // n_head))
        per_value = CACHE_TYPES[self.cache_type_k][1] + CACHE_TYPES["f16"][1]
        return int(n_seq * cells * n_layer * n_head_kv * head_dim * per_value)

    def tokenize(self, request: Request) -> list[int]:
        return self._model.tokenize(self._format(request.messages))

    # -- planning ---------------------------------------------------------------------------

    def _plan(self, requests: Sequence[Request], prompts: list[list[int]]) -> tuple[int, int, int, int]:
        """(slots, shared prefix length, sequences, cells per sequence); fails before any decoding."""
        shared = min(len(p) for p in prompts) - MIN_CHUNK
        for prompt in prompts[1:]:
            shared = min(shared, common_prefix(prompts[0], prompt))
        # A prefix is worth a sequence of its own only when two or more requests share it.
        shared = shared if shared >= MIN_CHUNK and len(requests) > 1 else 0
        # llama.cpp caps a context at MAX_SEQUENCES sequences (the holder of the shared prefix is one):
        # more requests than that run in waves, through the queue, as with any --slots below their count.
        n_slots = min(self.slots or len(requests), len(requests), MAX_SEQUENCES - (1 if shared else 0))
        n_seq = n_slots + (1 if shared else 0)
        self._check_logits(n_seq, n_seq - n_slots)
        budget = self.thinking_budget
        need = max(len(p) + r.max_tokens + budget for p, r in zip(prompts, requests))
        cells = self.n_ctx // n_seq if self.n_ctx else stream_cells(need)
        for prompt, request in zip(prompts, requests):
            if len(prompt) + request.max_tokens + budget > cells:
                how = (f"--ctx {self.n_ctx} over {n_seq} sequences gives each {cells}" if self.n_ctx
                       else f"each sequence gets {cells}")
                thinking = f" + {budget} thinking" if budget else ""
                raise GenerationError(
                    f"request '{request.key}' needs {len(prompt)} prompt + {request.max_tokens} new{thinking} tokens, "
                    f"but {how} cells: raise --ctx, or lower --slots or --max-tokens"
                    + (" or [model] thinking_tokens" if budget else "")
                )
        return n_slots, shared, n_seq, cells

    def _check_logits(self, n_seq: int, holders: int) -> None:
        """Fail before any decoding where one step's logits would not fit the memory budget: a row of
        n_vocab floats per sequence in llama.cpp's output buffer, and as much again for the engine's
        copy of rows it takes apart (a vocabulary of 262k tokens: 2 MiB a sequence)."""
        row = 2 * 4 * self._model.n_vocab
        budget = logits_budget()
        if n_seq * row > budget:
            fits = max(0, budget // row - holders)
            raise GenerationError(
                f"the batch's logits would not fit in memory: {n_seq} sequences x {self._model.n_vocab:,} tokens x 4 "
                f"bytes, twice (llama.cpp's and the engine's), is {n_seq * row / 2**20:,.0f} MiB, over the "
                f"{budget / 2**20:,.0f} MiB budget (1/{LOGITS_SHARE} of this machine's memory): "
                + (f"lower --slots to {fits} or less" if fits else "this model's vocabulary is too large for this machine"))

    # -- generation ---------------------------------------------------------------------------

    def generate(self, requests: Sequence[Request], progress: ProgressCallback | None = None) -> Generation:
        check_unique_keys(requests)
        started = time.perf_counter()
        stats = Stats(requests=len(requests))
        if not requests:
            return Generation([], stats)
        clock = self._clock = PhaseClock()
        with clock("setup"):
            texts = [self._format(r.messages) for r in requests]
            prompts = [self._model.tokenize(text) for text in texts]
            n_slots, shared, n_seq, cells = self._plan(requests, prompts)
            holder = n_slots
            stats.prompt_tokens = sum(map(len, prompts))
            # One ubatch must hold a whole generation step or a whole prompt chunk; and llama.cpp wants
            # n_batch >= n_seq_max (its output buffer holds one row per sequence; below that it aborts).
            capacity = max(n_seq, max(map(len, prompts)))
            # A sentence undone must leave a sliding window as it was: its window layers keep every cell.
            context = self._context_for(n_ctx_seq=cells, n_seq_max=n_seq, n_batch=capacity,
                                        swa_full=any(r.sentences is not None for r in requests))
            batch = Batch(capacity)
            self._kept_now, self._kept_bytes = {}, 0
        done = False
        sequences: list[_Sequence] = []
        try:
            with clock("setup"):
                for i, request in enumerate(requests):
                    grammar = Grammar(self._model, request.grammar, key=request.key) if request.grammar else None
                    sequences.append(_Sequence(i, request, prompts[i], RowSampler(request.sampling, request.seed),
                                               grammar, think=ThinkingState(self._format.opens_thinking(texts[i])),
                                               facts=GuardState(request.guard) if request.guard is not None else None,
                                               machine=SentenceMachine(request.sentences, request.seed)
                                               if request.sentences is not None else None))
            with clock("vocabulary"):
                if any(seq.facts or seq.request.bias for seq in sequences):
                    self._vocabulary.table  # made before the first step
                if any(seq.request.bias for seq in sequences):
                    self._vocabulary.words  # (the pieces a bias leans on, sorted by word once)
            if shared and any(tuple(p) not in self._kept for p in prompts):
                self._prefill(context, batch, holder, prompts[0], 0, shared, stats, clock)
            results = self._run(context, batch, sequences, n_slots, shared, holder, stats, progress, started)
            done = True
        finally:
            with clock("setup"):
                for seq in sequences:
                    if seq.grammar is not None:
                        seq.grammar.close()
                batch.close()
                if done:  # the next run may start from these prompts
                    self._kept, self._kept_now = self._kept_now, {}
                else:  # stopped halfway: nothing of it is kept
                    self.forget()
        stats.phases = clock.seconds
        stats.wall_seconds = time.perf_counter() - started
        return Generation(results, stats)

    @staticmethod
    def _prefill(context: Context, batch: Batch, seq_id: int, prompt: list[int], begin: int, end: int,
                 stats: Stats, clock: PhaseClock, logits: bool = False) -> None:
        """Decode prompt[begin:end] on one sequence, alone, in one ubatch (with the last token's logits if asked)."""
        assert end - begin >= MIN_CHUNK
        began = time.perf_counter()
        with clock("batch"):
            batch.clear()
            for pos in range(begin, end):
                batch.add(prompt[pos], pos, seq_id, logits and pos == end - 1)
        with clock("prompt"):
            context.decode(batch)
        stats.prompt_tokens_decoded += end - begin
        stats.decode_steps += 1
        stats.prompt_seconds += time.perf_counter() - began

    def _admit(self, context: Context, batch: Batch, new: list[_Sequence], shared: int, holder: int,
               stats: Stats, tick: Callable[[], None] = lambda: None) -> None:
        """Put `new` sequences in their slots, decode their prompts (sharing what they can), and sample
        each one's first token; `tick` after each prompt (the progress callback hears the prefill too)."""
        clock = self._clock
        put_back = set()
        for seq in new:  # a prompt decoded by an earlier run of this context: its cells put back
            key = tuple(seq.prompt)
            state = self._kept.get(key)
            if state is None:
                continue
            with clock("kept"):
                context.restore_sequence(seq.slot, state[0])
                self._hold(key, state)
            seq.n_past = len(seq.prompt)
            stats.prompt_tokens_kept += len(seq.prompt)
            seq.first = self._sample(state[1].copy(), [(seq, 0)])[seq.index]
            put_back.add(seq.index)
            tick()
        new = [seq for seq in new if seq.index not in put_back]
        with clock("kv"):
            for seq in new:
                if shared:
                    context.copy_sequence(holder, seq.slot)
                else:
                    context.clear_sequence(seq.slot)
                seq.start = shared
        # Requests admitted together that share more than the common prefix: one decodes the
        # longer prefix, the others copy it.
        groups: dict[tuple[int, ...], list[_Sequence]] = {}
        for seq in new:
            best = max((common_prefix(seq.prompt, other.prompt) for other in new if other is not seq), default=0)
            best = min(best, len(seq.prompt) - MIN_CHUNK)
            if best - shared >= MIN_CHUNK:
                groups.setdefault(tuple(seq.prompt[:best]), []).append(seq)
        for prefix, members in groups.items():
            if len(members) < 2:
                continue
            leader = members[0]
            self._prefill(context, batch, leader.slot, leader.prompt, shared, len(prefix), stats, clock)
            with clock("kv"):
                for member in members:
                    if member is not leader:
                        context.copy_sequence(leader.slot, member.slot)
                    member.start = len(prefix)
        for seq in new:
            self._prefill(context, batch, seq.slot, seq.prompt, seq.start, len(seq.prompt), stats, clock, logits=True)
            seq.n_past = len(seq.prompt)
            logits = context.logits(1, self._model.n_vocab)
            self._keep(context, seq, logits)
            seq.first = self._sample(logits, [(seq, 0)])[seq.index]
            tick()

    def _keep(self, context: Context, seq: _Sequence, logits: np.ndarray) -> None:
        """Keep a prompt's cells and last logits for a later run of this context with the same prompt (a
        section's retry), within the budget; not where a sliding window has let cells go (Model.n_swa)."""
        n_swa = self._model.n_swa
        if n_swa and len(seq.prompt) > n_swa:
            return
        key = tuple(seq.prompt)
        if key in self._kept_now:
            return
        with self._clock("kept"):
            state = (context.save_sequence(seq.slot), logits[:1].copy())
            if self._kept_bytes + _state_bytes(state) <= logits_budget():
                self._hold(key, state)

    def _hold(self, key: tuple[int, ...], state: tuple) -> None:
        """Keep `state` (a prompt's cells, its last logits) for the next run, once, and count its bytes."""
        if key not in self._kept_now:
            self._kept_now[key] = state
            self._kept_bytes += _state_bytes(state)

    def _sample(self, logits: np.ndarray, picks: list[tuple[_Sequence, int]]) -> dict[int, int]:
        """Next token of each (sequence, row of `logits`): the last decode's logits, or a kept prompt's
        (a copy: the biases are added in place)."""
        out: dict[int, int] = {}
        clock = self._clock
        with clock("bias"):
            self._lean(picks, logits)
        by_sampling: dict[Sampling, list[tuple[_Sequence, int]]] = {}
        alone: list[tuple[_Sequence, int]] = []
        for seq, row in picks:
            (alone if seq.grammar is not None else by_sampling.setdefault(seq.request.sampling, [])).append((seq, row))
        for sampling, items in by_sampling.items():
            with clock("topk"):
                rows_of = [row for _, row in items]
                consecutive = rows_of == list(range(rows_of[0], rows_of[0] + len(rows_of)))
                mine = logits[rows_of[0]: rows_of[0] + len(rows_of)] if consecutive else logits[rows_of]
                tokens, values = top_k_rows(mine, sampling.top_k)
            keep = list(range(len(items)))
            if any(seq.facts is not None for seq, _ in items):
                with clock("guard"):
                    values = values.astype(np.float32, copy=True)
                    for i, (seq, row) in enumerate(items):
                        if seq.facts is None or seq.think.in_block:  # the guard is the answer's
                            continue
                        mask = self._facts_mask(seq, tokens[i])
                        if not mask.any():  # nothing allowed among the k best: look further, alone
                            keep.remove(i)
                            alone.append((seq, row))
                        elif not mask.all():
                            values[i, ~mask] = -np.inf
            with clock("sample"):
                if len(keep) < len(items):
                    items, tokens, values = [items[i] for i in keep], tokens[keep], values[keep]
                if not items:
                    continue
                for i, (seq, _) in enumerate(items):
                    if seq.request.sentences is not None:
                        seq.drawn = (tokens[i].copy(), values[i].copy(), list(seq.row.recent))
                chosen = choose_rows([seq.row for seq, _ in items], tokens, values)
                for (seq, _), token in zip(items, chosen):
                    out[seq.index] = token
        for seq, row in alone:
            out[seq.index] = self._sample_alone(seq, logits[row])
        return out

    def _lean(self, picks: list[tuple[_Sequence, int]], logits: np.ndarray) -> None:
        """Each row's biases, its lean to a sentence's end, and no end where the paragraph may not end,
        added to its logits in place."""
        for seq, row in picks:  # (the logits are the engine's own until the next decode)
            request, answering = seq.request, not seq.think.in_block
            machine = seq.machine if answering else None
            sentence = seq.sentence() if machine is not None else ""
            if request.bias and answering:
                # the topic lean from the paragraph's second sentence on: a sentence kept, or just ended
                topic = bool(seq.kept) or (machine is not None and bool(sentences.ends(sentence)))
                tokens, amounts = self._vocabulary.bias(request.bias, topic=topic)
                logits[row, tokens] += amounts
            if machine is not None and self._judging(seq):
                lean = machine.lean(sentence)
                if lean:
                    logits[row, self._vocabulary.enders] += lean
            if machine is not None and seq.grammar is None and not request.ignore_eos \
                    and not machine.may_end(sentence):
                logits[row, self._model.eog_tokens] = -np.inf  # no end here (too short, or mid-sentence)

    def _facts_mask(self, seq: _Sequence, tokens: np.ndarray) -> np.ndarray:
        with self._clock("guard"):
            return seq.facts.mask(tokens, self._vocabulary.table)

    def _sample_alone(self, seq: _Sequence, row_logits: np.ndarray) -> int:
        """A row with a grammar, or whose fact guard allowed none of its k best: its candidates among the
        tokens both allow, in widening windows (sampling.top_k_allowed). Where no token of the vocabulary
        is allowed, the sequence ends there (its end-of-generation token)."""
        grammar, facts = seq.grammar, (seq.facts if not seq.think.in_block else None)

        def allowed(tokens: np.ndarray) -> np.ndarray:
            mask = grammar.allowed(tokens) if grammar is not None else np.ones(len(tokens), dtype=bool)
            if facts is not None and mask.any():
                mask[mask] = self._facts_mask(seq, tokens[mask])
            return mask

        clock = self._clock
        try:
            with clock("topk"):
                tokens, values = top_k_allowed(row_logits, seq.request.sampling.top_k, allowed)
        except GenerationError:
            if grammar is not None and facts is None:
                raise
            return _DEAD_END
        with clock("sample"):
            if seq.request.sentences is not None:
                seq.drawn = (tokens.copy(), values.copy(), list(seq.row.recent))
            token = seq.row.choose(tokens, values)
            if grammar is not None:
                grammar.accept(token)
        return token

    def _run(self, context: Context, batch: Batch, sequences: list[_Sequence], n_slots: int, shared: int,
             holder: int, stats: Stats, progress: ProgressCallback | None, started: float) -> list[Result]:
        queue = deque(sequences)
        live: dict[int, _Sequence] = {}  # slot -> sequence
        results: dict[int, Result] = {}
        clock = self._clock

        def report(last: Result | None = None) -> None:
            if progress:
                with clock("progress"):
                    in_flight = sum(len(s.tokens) for s in live.values())
                    progress(Progress(len(results), len(sequences), stats.completion_tokens + in_flight,
                                      time.perf_counter() - started, last))

        while queue or live:
            new = []
            for slot in [s for s in range(n_slots) if s not in live][: len(queue)]:
                seq = queue.popleft()
                seq.slot, seq.began = slot, time.perf_counter()
                live[slot] = seq
                new.append(seq)
            sampled: dict[int, int] = {}
            if new:
                self._admit(context, batch, new, shared, holder, stats, report)
                sampled = {seq.slot: seq.first for seq in new}
            stepping = [live[slot] for slot in sorted(live) if slot not in sampled]
            if stepping:
                with clock("batch"):
                    batch.clear()
                    for seq in stepping:
                        batch.add(seq.tokens[-1], seq.n_past, seq.slot, True)
                        seq.n_past += 1
                # the wave's ragged end: the queue is empty and at most half the slots are busy
                with clock("tail" if not queue and 2 * len(stepping) <= n_slots else "decode"):
                    context.decode(batch)
                stats.decode_steps += 1
                tokens = self._sample(context.logits(len(stepping), self._model.n_vocab),
                                      list(zip(stepping, range(len(stepping)))))
                sampled.update((seq.slot, tokens[seq.index]) for seq in stepping)

            last = None
            with clock("advance"):
                for slot in sorted(live):
                    seq = live[slot]
                    reason = self._advance(context, seq, sampled[slot])
                    if reason is not None:
                        last = results[seq.index] = self._result(seq, reason)
                        stats.completion_tokens += last.completion_tokens
                        stats.sampled_tokens += last.sampled_tokens
                        stats.rollbacks += last.rollbacks
                        del live[slot]
            with clock("kv"):
                self._compact(context, live)
            report(last)
        return [results[i] for i in range(len(sequences))]

    def _advance(self, context: Context, seq: _Sequence, token: int) -> FinishReason | None:
        """Take a sampled token; say why the sequence ends, if it does."""
        request = seq.request
        if token == _DEAD_END:
            if self._judging(seq):
                return None if self._follow(context, seq, seq.machine.broken()) == "undone" else "stop"
            return "stop"  # no rule to undo it by: the text ends where the guard left no way on
        seq.sampled += 1
        eog = self._model.is_eog(token) and not request.ignore_eos
        piece = b"" if eog else self._model.piece(token)
        machine = seq.machine
        if machine is not None and seq.think.mode == "answer":
            if seq.saved is None:  # the answer's first token, after a reasoning block: its first sentence
                seq.sentence_start, seq.saved = len(seq.tokens), seq.drawn
            elif len(seq.tokens) > seq.sentence_start and self._sentence_ends(seq, piece, eog):
                verdict = self._follow(context, seq, machine.finished(seq.sentence().strip(), last=eog))
                if verdict == "undone":
                    return None
                if verdict == "ended":
                    return "stop"
                if not eog:  # kept: this token begins the next sentence, unless the paragraph has
                    # all it needs, or the token begins a new paragraph after a long enough one
                    # (the post shows one paragraph)
                    if machine.stops(b"\n" in piece):
                        return "stop"
                    seq.sentence_start, seq.saved = len(seq.tokens), seq.drawn
            elif eog and len(seq.tokens) > seq.sentence_start:
                # The model ends the paragraph inside a sentence, which the post could not show.
                return None if self._follow(context, seq, machine.broken()) == "undone" else "stop"
        if eog:
            return "stop"
        answering = seq.think.mode == "answer"
        reason = self._take(seq, token, piece)
        if machine is not None and seq.saved is None and not answering and seq.think.mode == "answer" \
                and not seq.think.thinking_tokens:
            # The paragraph's first token (no reasoning block before it): its first sentence begins.
            seq.sentence_start, seq.saved = len(seq.tokens) - 1, seq.drawn
        if reason is None and self._judging(seq) and piece[:1].isspace() \
                and machine.runaway(seq.sentence()):
            # A sentence already too long to pass: refused now, not at its end.
            return None if self._follow(context, seq, machine.broken()) == "undone" else "stop"
        if reason == "length" and machine is not None and machine.ends_early():
            # Out of tokens inside a sentence: the paragraph ends at the last finished one.
            self._truncate(seq, seq.sentence_start)
            return "stop"
        return reason

    def _take(self, seq: _Sequence, token: int, piece: bytes) -> FinishReason | None:
        request = seq.request
        seq.tokens.append(token)
        seq.pieces.append(piece)
        think = seq.think
        if think.mode != "answer" and not request.ignore_eos:
            think.update(seq.text(), len(seq.tokens))
        if think.in_block:
            # A reasoning block: no stop strings; its own budget where it has one, else max_tokens.
            if not request.ignore_eos and seq.repeats.push(token):
                return "repeat"
            limit = self.thinking_budget or request.max_tokens
            return "thinking" if think.thinking_tokens >= limit else None
        if seq.facts is not None:  # the guard follows the answer alone, never a reasoning block
            if think.thinking_tokens or think.inside:
                seq.facts.reset(self._answer(seq).encode("utf-8"))
            else:
                seq.facts.take(piece)
        if request.stop:
            text = self._answer(seq)
            if any(stop in text for stop in request.stop):
                return "stop"
        if not request.ignore_eos and seq.repeats.push(token):
            return "repeat"
        # With a thinking budget the block is not counted against max_tokens (the context holds both).
        counted = len(seq.tokens) - (think.thinking_tokens if self.thinking_budget else 0)
        if counted >= request.max_tokens:
            return "length"
        return None

    @staticmethod
    def _sentence_ends(seq: _Sequence, piece: bytes, eog: bool) -> bool:
        """Whether the text so far ends a sentence that the token `piece` (or the end) comes after."""
        ended = sentences.ends(seq.sentence())
        return bool(ended) and (eog or bool(ended.group(1)) or piece[:1].isspace())

    @staticmethod
    def _judging(seq: _Sequence) -> bool:
        """Whether the sequence is writing a sentence that its rule may undo (in the answer, begun)."""
        return seq.machine is not None and seq.think.mode == "answer" and seq.saved is not None

    def _follow(self, context: Context, seq: _Sequence, verdict: str) -> str:
        """Carry out the sentence machine's verdict on the sentence being written: "kept" (it stays),
        "ended" (the paragraph ends before it: its tokens are forgotten), or "undone" (written again:
        its cells, its tokens and the state that followed them are undone, and its first token is drawn
        again from the candidates kept, with the attempt's own seed; "ended" where that draw ends the
        text)."""
        if verdict == "kept":
            return "kept"
        with self._clock("rollback"):
            return self._undo(context, seq, verdict)

    def _undo(self, context: Context, seq: _Sequence, verdict: str) -> str:
        """`_follow` for a sentence not kept."""
        start = seq.sentence_start
        if verdict == "end":
            self._truncate(seq, start)
            return "ended"
        context.remove_from(seq.slot, len(seq.prompt) + start)
        seq.n_past = len(seq.prompt) + start
        self._truncate(seq, start)
        tokens, values, recent = seq.saved
        seq.row.recent.clear()
        seq.row.recent.extend(recent)
        seq.row.rng = np.random.Generator(np.random.PCG64(seq.machine.attempt_seed()))
        token = seq.row.choose(tokens, values)
        if seq.grammar is not None:
            seq.grammar.accept(token)
        seq.sampled += 1
        if self._model.is_eog(token):
            return "ended"
        reason = self._take(seq, token, self._model.piece(token))
        return "ended" if reason is not None else "undone"

    def _truncate(self, seq: _Sequence, start: int) -> None:
        """Forget the tokens from `start` on: the text, the guards and the grammar follow."""
        del seq.tokens[start:], seq.pieces[start:]
        seq.repeats = RepeatGuard()
        for token in seq.tokens:
            seq.repeats.push(token)
        if seq.facts is not None:
            seq.facts.reset(self._answer(seq).encode("utf-8"))
        if seq.grammar is not None:
            seq.grammar.close()
            seq.grammar = Grammar(self._model, seq.request.grammar, key=seq.request.key)
            for token in seq.tokens:
                seq.grammar.accept(token)

    @staticmethod
    def _answer(seq: _Sequence, cut: int | None = None) -> str:
        """The sequence's text (up to token `cut`) without its reasoning block."""
        text = b"".join(seq.pieces[:cut]).decode("utf-8", errors="ignore")
        return split_thinking(text, inside=seq.think.inside).answer

    def _result(self, seq: _Sequence, reason: FinishReason) -> Result:
        cut = repetition_start(seq.tokens) if reason == "repeat" else None
        text = "" if reason == "thinking" else self._answer(seq, cut)
        for stop in seq.request.stop:
            at = text.find(stop)
            if at >= 0:
                text = text[:at]
        return Result(seq.request.key, text, len(seq.prompt), len(seq.tokens), reason,
                      time.perf_counter() - seq.began, tuple(seq.tokens), sampled_tokens=seq.sampled,
                      rollbacks=seq.machine.rollbacks if seq.machine is not None else 0, thinking_tokens=seq.think.thinking_tokens)

    def _compact(self, context: Context, live: dict[int, _Sequence]) -> None:
        """Move the highest live sequences into the lowest free slots, so live slots are 0..n-1."""
        holes = [s for s in range(len(live)) if s not in live]
        movable = sorted((s for s in live if s >= len(live)), reverse=True)
        for hole, slot in zip(holes, movable):
            seq = live.pop(slot)
            context.copy_sequence(slot, hole)
            seq.slot = hole
            live[hole] = seq
