"""`digest eval`: generate the sections of fixed inputs and score every one with `digest.quality`.

The inputs are topic feeds (each file is one post's worth of topics): the tune set (the bundled
sample feed and `tests/eval/tune/`) and the held-out set (`tests/eval/holdout/`, never tuned on). All
of them go through the same path as `digest run` (selection, prompts, the engine, candidates and
retries) in one batch, since a section's text does not depend on what else is in the batch.

Every section is reported twice: as its first try came out (the first round, before any retry) and
as the retries left it. Only the first is independent of the checks, since the retries choose among
tries with the same checks that then score them.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable, Sequence

from . import feeds as feedlib
from . import resources
from .config import Config
from .manifest import model_record, prompts_record
from .engine.base import Engine, ProgressCallback, Stats
from .errors import FeedError
from .pipeline import engine_record, generate, judge_of, requests_of, templates_of
from .quality import Judge, Score
from .sections import SCORER_CHECKS
from .select import pick

EVAL_DAY = date(2026, 11, 23)
EVAL_SET = resources.CHECKOUT / "tests" / "eval"  # a source checkout has it; a wheel does not
SETS = ("tune", "holdout")  # `digest eval --set`: either, or "all"


def default_inputs(which: str = "all") -> list[Path]:
    """The tune set (the bundled sample feed and tests/eval/tune/), the held-out set, or both."""
    tune = [resources.samples_dir() / "topics.xml", *sorted((EVAL_SET / "tune").glob("*.xml"))]
    holdout = sorted((EVAL_SET / "holdout").glob("*.xml"))
    return dict(zip(SETS, (tune, holdout)), all=tune + holdout)[which]


def set_of(path: Path) -> str:
    """"tune" or "holdout" for the evaluation set's files, "other" for anything else."""
    path = Path(path).resolve()
    if path.parent == (EVAL_SET / "holdout").resolve():
        return "holdout"
    if path.parent == (EVAL_SET / "tune").resolve() or path == (resources.samples_dir() / "topics.xml").resolve():
        return "tune"
    return "other"


@dataclass
class Scored:
    key: str
    kind: str
    set: str  # "tune", "holdout" or "other"
    passed: bool
    checks: dict[str, bool]
    failures: list[str]
    text: str
    raw: str
    tries: int
    first_passed: bool = False  # the first round's try, before any retry
    first_checks: dict[str, bool] = field(default_factory=dict)
    first_failures: list[str] = field(default_factory=list)


def _rate(n: int, of: int) -> float:
    return round(n / of, 4) if of else 0.0


@dataclass
class EvalReport:
    model: str
    inputs: list[str]
    sections: list[Scored]
    stats: Stats
    wall_seconds: float
    settings: dict = field(default_factory=dict)
    engine: dict = field(default_factory=dict)
    model_file: dict = field(default_factory=dict)
    prompts: dict = field(default_factory=dict)
    # Per set: the coherence under a reader model (digest.reader.Coherence.to_dict), with --reader.
    coherence: dict = field(default_factory=dict)

    @property
    def fake(self) -> bool:
        return self.engine.get("name") == "fake"

    @property
    def pass_rate(self) -> float:
        return sum(s.passed for s in self.sections) / len(self.sections) if self.sections else 0.0

    @property
    def first_pass_rate(self) -> float:
        return sum(s.first_passed for s in self.sections) / len(self.sections) if self.sections else 0.0

    def sets(self) -> list[str]:
        return list(dict.fromkeys(s.set for s in self.sections))

    def by_check(self, which: str | None = None) -> list[tuple[str, int, int, int]]:
        """(check, sections it applies to, pass it on the first try, pass it in the end), paragraph
        checks first; `which`: one set only."""
        applied, first, final = Counter(), Counter(), Counter()
        for s in self.sections:
            if which and s.set != which:
                continue
            for name, ok in s.checks.items():
                applied[name] += 1
                final[name] += ok
            for name, ok in s.first_checks.items():
                first[name] += ok
        names = list(dict.fromkeys(["usable", *(name for checks in SCORER_CHECKS.values() for name in checks)]))
        return [(n, applied[n], first[n], final[n]) for n in names if applied[n]]

    def summary(self, which: str | None = None) -> dict:
        sections = [s for s in self.sections if not which or s.set == which]
        n = len(sections)
        first, final = sum(s.first_passed for s in sections), sum(s.passed for s in sections)
        return {"sections": n, "first_try": {"passed": first, "rate": _rate(first, n)},
                "final": {"passed": final, "rate": _rate(final, n)}, "tries": sum(s.tries for s in sections),
                "checks": {name: {"applied": a, "first_try": f, "first_rate": _rate(f, a), "passed": p,
                                  "rate": _rate(p, a)} for name, a, f, p in self.by_check(which)}}

    def worst(self, n: int) -> list[Scored]:
        return sorted(self.sections, key=lambda s: (sum(s.checks.values()) - len(s.checks), s.key))[:n]

    def to_json(self) -> str:
        whole = self.summary()
        return json.dumps({
            "model": self.model, "engine": self.engine, "model_file": self.model_file, "prompts": self.prompts,
            "inputs": self.inputs, "settings": self.settings,
            "sections": len(self.sections), "passed": sum(s.passed for s in self.sections),
            "pass_rate": round(self.pass_rate, 4), "first_try": whole["first_try"], "final": whole["final"],
            "checks": whole["checks"], "sets": {name: self.summary(name) for name in self.sets()},
            "tries": sum(s.tries for s in self.sections),
            "completion_tokens": self.stats.completion_tokens, "sampled_tokens": self.stats.sampled_tokens,
            "rollbacks": self.stats.rollbacks,
            **({"coherence": self.coherence} if self.coherence else {}),
            "prompt_tokens_decoded": self.stats.prompt_tokens_decoded, "prompt_tokens_kept": self.stats.prompt_tokens_kept,
            "wall_seconds": round(self.wall_seconds, 2),
            "results": [s.__dict__ for s in self.sections],
        }, indent=2)


def _failures(score: Score) -> list[str]:
    return [f"{c.name}: {c.why}" if c.why else c.name for c in score.failures]


def _topics(path: Path, count: int):
    feed = feedlib.read_feed_path(path)
    topics = pick(feed.entries, count)
    if not topics:
        raise FeedError(f"evaluation feed {path} has no usable entries")
    return topics


def run_eval(config: Config, make_engine: Callable[[], Engine], inputs: Sequence[Path], *, topics: int = 0,
             day: date = EVAL_DAY, progress: ProgressCallback | None = None,
             status: Callable[[str], None] = lambda message: None, reader: Path | None = None,
             reference: Path | None = None) -> EvalReport:
    """Score every section of every input: `topics` topics from each (0: as many as a run takes).
    `status` hears each phase, `progress` the engine (as in pipeline.run). `reader`: a GGUF file that
    reads each set's topic paragraphs for their coherence (digest.reader), beside the published posts
    of the folder `reference`."""
    status(f"reading {len(inputs)} input{'s' if len(inputs) != 1 else ''}")
    opened = None
    if reader is not None:  # loaded first: a reader that cannot be used fails before any generation
        from .reader import Reader

        opened = Reader(Path(reader), writer=config.model_path)
    try:
        return _run_eval(config, make_engine, inputs, topics, day, progress, status, opened, reference)
    except BaseException:
        if opened is not None:
            opened.close()
        raise


def _run_eval(config: Config, make_engine: Callable[[], Engine], inputs: Sequence[Path], topics: int, day: date,
              progress: ProgressCallback | None, status: Callable[[str], None], opened,
              reference: Path | None) -> EvalReport:
    templates = templates_of(config)
    g = config.generation
    requests, sections, owner = [], [], {}
    for path in inputs:
        stories = _topics(Path(path), topics or config.feeds.topics.count)
        prefix = f"{Path(path).parent.name}/{Path(path).stem}/"  # tune/news and holdout/news differ
        judge = judge_of(config, stories, day, templates, prefix)
        built = requests_of(config, stories, day, templates)
        owner.update({s.key: Path(path) for s in judge.sections.values()})
        # Keys name the input too, so they are unique across inputs; seeds stay as a run makes them.
        requests += [dataclasses.replace(r, key=prefix + r.key) for r in built]
        sections += judge.sections.values()
    judge = Judge(sections, day, templates.texts.values(), min_words=g.min_words, max_words=g.max_words,
                  fact_rule=g.fact_rule)
    status("loading model")
    with make_engine() as engine:
        status(f"generating {len(requests)} sections of {len(inputs)} input{'s' if len(inputs) != 1 else ''} "
               f"with {engine.model_name} ({engine.name} engine)")
        chosen = generate(engine, requests, judge, candidates=g.candidates, retries=g.retries, progress=progress,
                          prevention=g.prevention, require_all=False)
        model = engine.model_name
        engine_info = engine_record(engine)
    if engine_info["name"] == "fake":
        engine_info["note"] = "the fake engine's canned text, not a model: these rates say nothing of the writing"
        model_file = {}
    else:
        model_file = model_record(config.model_path, None)
    results = chosen.generation.by_key()
    set_by_key = {key: set_of(path) for key, path in owner.items()}
    scored = []
    for section in judge.sections.values():
        result, score = results[section.key], chosen.scores[section.key]
        first = chosen.first.get(section.key, score)
        scored.append(Scored(section.key, section.kind.name, set_by_key[section.key], score.passed,
                             {c.name: c.passed for c in score.checks}, _failures(score),
                             judge.text(section.key, result.text), result.text, chosen.tries[section.key],
                             first.passed, {c.name: c.passed for c in first.checks}, _failures(first)))
    settings = {name: getattr(g, name) for name in ("seed", "max_tokens", "candidates", "retries", "min_words",
                                                    "max_words", "examples", "sections")}
    settings.update(dataclasses.asdict(config.sampling))  # as used: the registry's recommendation where unset
    settings.update(dataclasses.asdict(g.prevention))
    settings["day"] = day.isoformat()
    settings["topics_per_input"] = topics or config.feeds.topics.count
    prompts = prompts_record(templates.directory, list(templates.texts))
    prompts["examples_used"] = bool(g.examples and templates.examples())
    report = EvalReport(model, [str(p) for p in inputs], scored, chosen.generation.stats,
                        chosen.generation.stats.wall_seconds, settings, engine_info, model_file, prompts)
    if opened is not None:
        with opened:
            report.coherence = _coherence(report, judge, opened, reference, status)
    return report


def _coherence(report: EvalReport, judge: Judge, reader, reference: Path | None,
               status: Callable[[str], None]) -> dict:
    """Per set, the coherence of its topic paragraphs as the post shows them (digest.reader)."""
    from .reader import coherence, published_paragraphs
    from .sections import TOPIC

    published = published_paragraphs(reference) if reference is not None and Path(reference).is_dir() else []
    status(f"reading the paragraphs with {reader.name}")
    out = {}
    for name in report.sets():
        paragraphs = [s.text for s in report.sections
                      if s.set == name and s.text and judge.sections[s.key].kind.place == TOPIC]
        out[name] = coherence(reader, paragraphs, published).to_dict()
    return out
