"""`digest eval`: generate the sections of fixed inputs and score every one with `digest.quality`.

The inputs are topic feeds: the bundled sample feed and the evaluation set kept under `tests/eval/`
(each file is one post's worth of topics). All of them go through the same path as `digest run`
(selection, prompts, the engine, candidates and retries) in one batch, since a section's text does
not depend on what else is in the batch.
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
from .config import PROJECT_ROOT, Config
from .engine.base import Engine, Stats
from .errors import FeedError
from .pipeline import generate, judge_of, sampling_of
from .prompts import Templates, build_requests
from .quality import PARAGRAPH_CHECKS, PREDICTION_CHECKS, Judge
from .select import pick

EVAL_DAY = date(2026, 11, 23)
EVAL_SET = PROJECT_ROOT / "tests" / "eval"


def default_inputs() -> list[Path]:
    return [feedlib.samples_dir() / "topics.xml", *sorted(EVAL_SET.glob("*.xml"))]


@dataclass
class Scored:
    key: str
    kind: str
    passed: bool
    checks: dict[str, bool]
    failures: list[str]
    text: str
    raw: str
    tries: int


@dataclass
class EvalReport:
    model: str
    inputs: list[str]
    sections: list[Scored]
    stats: Stats
    wall_seconds: float
    settings: dict = field(default_factory=dict)

    @property
    def pass_rate(self) -> float:
        return sum(s.passed for s in self.sections) / len(self.sections) if self.sections else 0.0

    def by_check(self) -> list[tuple[str, int, int]]:
        """(check, sections it applies to, sections that pass it), paragraph checks first."""
        applied, passed = Counter(), Counter()
        for s in self.sections:
            for name, ok in s.checks.items():
                applied[name] += 1
                passed[name] += ok
        names = list(dict.fromkeys(["usable", *PARAGRAPH_CHECKS, *PREDICTION_CHECKS]))
        return [(n, applied[n], passed[n]) for n in names if applied[n]]

    def worst(self, n: int) -> list[Scored]:
        return sorted(self.sections, key=lambda s: (sum(s.checks.values()) - len(s.checks), s.key))[:n]

    def to_json(self) -> str:
        return json.dumps({
            "model": self.model, "inputs": self.inputs, "settings": self.settings,
            "sections": len(self.sections), "passed": sum(s.passed for s in self.sections),
            "pass_rate": round(self.pass_rate, 4),
            "checks": {name: {"applied": a, "passed": p, "rate": round(p / a, 4)} for name, a, p in self.by_check()},
            "tries": sum(s.tries for s in self.sections),
            "completion_tokens": self.stats.completion_tokens, "wall_seconds": round(self.wall_seconds, 2),
            "results": [s.__dict__ for s in self.sections],
        }, indent=2)


def _topics(path: Path, count: int):
    feed = feedlib.read_feed_file(path.parent, path.stem)
    topics = pick(feed.entries, count)
    if not topics:
        raise FeedError(f"evaluation feed {path} has no usable entries")
    return topics


def run_eval(config: Config, make_engine: Callable[[], Engine], inputs: Sequence[Path], *, topics: int = 0,
             day: date = EVAL_DAY, progress=None) -> EvalReport:
    """Score every section of every input: `topics` topics from each (0: as many as a run takes)."""
    templates = Templates.load(config.prompts_path)
    g = config.generation
    requests, sections = [], []
    for path in inputs:
        stories = _topics(Path(path), topics or config.feeds.topics.count)
        prefix = f"{Path(path).stem}/"
        judge = judge_of(config, stories, day, templates, prefix)
        built = build_requests(stories, day, templates, run_seed=g.seed, max_tokens=g.max_tokens,
                               sampling=sampling_of(config))
        # Keys name the input too, so they are unique across inputs; seeds stay as a run makes them.
        requests += [dataclasses.replace(r, key=prefix + r.key) for r in built]
        sections += judge.sections.values()
    judge = Judge(sections, day, templates.texts.values(), min_words=g.min_words, max_words=g.max_words)
    with make_engine() as engine:
        chosen = generate(engine, requests, judge, candidates=g.candidates, retries=g.retries, progress=progress,
                          require_all=False)
        model = engine.model_name
    results = chosen.generation.by_key()
    scored = []
    for section in judge.sections.values():
        result, score = results[section.key], chosen.scores[section.key]
        scored.append(Scored(section.key, section.kind, score.passed, {c.name: c.passed for c in score.checks},
                             [f"{c.name}: {c.why}" if c.why else c.name for c in score.failures],
                             judge.text(section.key, result.text), result.text, chosen.tries[section.key]))
    settings = {name: getattr(g, name) for name in ("seed", "max_tokens", "temperature", "top_k", "top_p", "min_p",
                                                    "repeat_penalty", "candidates", "retries", "min_words",
                                                    "max_words")}
    return EvalReport(model, [str(p) for p in inputs], scored, chosen.generation.stats,
                      chosen.generation.stats.wall_seconds, settings)
