"""One run, in the order data flows: feeds -> selection -> prompts -> engine -> render -> file."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from . import feeds as feedlib
from .config import Config
from .engine.base import Engine, Generation, ProgressCallback, Request, Result, Sampling, Stats, derive_seed
from .errors import FeedError, GenerationError
from .markdown import escape_inline
from .post import PREDICTION_SUBJECTS, FrontMatter, Post, Prediction, Topic
from .prompts import SECTIONS, Templates, build_requests, section_key
from .render import post_filename, render, write_atomic
from .select import Story, pick
from .text import clean_paragraph, parse_prediction

FEED_NAMES = ("topics", "trending")
# A section whose text is unusable after cleaning is generated again with a seed derived from its
# own, at most this many times.
MAX_RETRIES = 2


@dataclass
class RunResult:
    path: Path
    written: bool
    post: Post | None = None
    stats: Stats | None = None
    warnings: list[str] = field(default_factory=list)


def post_path(config: Config, day: date, out: Path | None = None) -> Path:
    root = Path(out) if out is not None else config.resolve(config.output.dir)
    return root / "content" / "posts" / post_filename(day)


def load_feeds(config: Config, feeds_from: Path | None) -> dict[str, feedlib.Feed]:
    """Each configured feed, from `feeds_from/<name>.xml` when given, else from its URL."""
    loaded = {}
    for name in FEED_NAMES:
        settings = getattr(config.feeds, name)
        if feeds_from is not None:
            loaded[name] = feedlib.read_feed_file(feeds_from, name)
        else:
            if not settings.url:
                raise FeedError(f"feed '{name}' has no url in the config ([feeds.{name}] url)")
            loaded[name] = feedlib.fetch_feed(settings.url, name=name, timeout=config.feeds.timeout,
                                              user_agent=config.feeds.user_agent)
    return loaded


def select_stories(config: Config, loaded: dict[str, feedlib.Feed], warnings: list[str]) -> tuple[list[Story], list[Story]]:
    wanted_topics, wanted_trending = config.feeds.topics.count, config.feeds.trending.count
    topics = pick(loaded["topics"].entries, wanted_topics)
    if not topics:
        raise FeedError(f"feed 'topics' ({loaded['topics'].source}) has no usable entries")
    if len(topics) < wanted_topics:
        warnings.append(f"feed 'topics' gave {len(topics)} usable topics, fewer than the {wanted_topics} wanted")
    trending = pick(loaded["trending"].entries, wanted_trending, avoid=topics)
    if not trending:
        raise FeedError(f"feed 'trending' ({loaded['trending'].source}) has no usable entries")
    if len(trending) < wanted_trending:
        warnings.append(f"feed 'trending' gave {len(trending)} usable headlines, fewer than the {wanted_trending} wanted")
    return topics, trending


def sampling_of(config: Config) -> Sampling:
    g = config.generation
    return Sampling(temperature=g.temperature, top_k=g.top_k, top_p=g.top_p, min_p=g.min_p,
                    repeat_penalty=g.repeat_penalty)


def usable(request: Request, result: Result) -> bool:
    if request.key.startswith("prediction:"):
        return parse_prediction(result.text) is not None
    return bool(clean_paragraph(result.text))


def generate(engine: Engine, requests: Sequence[Request], progress: ProgressCallback | None = None) -> Generation:
    """Run `requests`; regenerate any whose text is unusable, with derived seeds, a bounded number of times."""
    generation = engine.generate(requests, progress)
    results = {r.key: r for r in generation.results}
    for attempt in range(1, MAX_RETRIES + 2):
        failed = [r for r in requests if not usable(r, results[r.key])]
        if not failed:
            break
        if attempt > MAX_RETRIES:
            raise GenerationError(
                f"the model wrote no usable text for '{failed[0].key}' after {MAX_RETRIES + 1} tries: "
                "try another --seed, a larger --max-tokens, or a larger model"
            )
        retries = [dataclasses.replace(r, seed=derive_seed(r.seed, f"retry{attempt}")) for r in failed]
        again = engine.generate(retries)
        results.update((result.key, result) for result in again.results)
        generation.stats.merge(again.stats)
    return Generation([results[r.key] for r in requests], generation.stats)


def assemble(config: Config, when: datetime, model_name: str, topics: Sequence[Story],
             trending: Sequence[Story], results: dict[str, Result]) -> Post:
    blog = config.blog
    front = FrontMatter(
        title=blog.title,
        date=when,
        author=blog.author,
        tags=[*blog.tags, model_name],
        draft=blog.draft,
        cover=dataclasses.replace(blog.cover),
    )
    post_topics = []
    for story in topics:
        texts = {kind: clean_paragraph(results[section_key(kind, story.title)].text) for kind in SECTIONS}
        post_topics.append(Topic(escape_inline(story.title), escape_inline(texts["benefits"]),
                                 escape_inline(texts["ramifications"])))
    predictions = []
    for subject in PREDICTION_SUBJECTS:
        parsed = parse_prediction(results[section_key("prediction", subject)].text)
        assert parsed is not None  # generate() retried until usable
        predictions.append(Prediction(subject, parsed.when, escape_inline(parsed.reasoning)))
    return Post(
        front=front,
        topics=post_topics,
        trending=[escape_inline(s.title) for s in trending],
        predictions=predictions,
        notice=escape_inline(blog.notice),
        predictions_heading=escape_inline(blog.predictions_heading),
    )


def run(
    config: Config,
    make_engine: Callable[[], Engine],
    *,
    day: date | None = None,
    now: datetime | None = None,
    out: Path | None = None,
    feeds_from: Path | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
    status: Callable[[str], None] = lambda message: None,
) -> RunResult:
    """Write the post for `day` (default: today, UTC). Nothing is written unless all of it succeeded."""
    now = now or datetime.now(timezone.utc).replace(microsecond=0)
    if day is not None and day != now.date():
        now = datetime(day.year, day.month, day.day, now.hour, now.minute, now.second, tzinfo=timezone.utc)
    day = now.date()
    path = post_path(config, day, out)
    if path.exists() and not force:
        return RunResult(path, written=False, warnings=[f"a post for {day} already exists: {path} (use --force to replace it)"])

    warnings: list[str] = []
    templates = Templates.load(config.prompts_path)
    status("reading feeds")
    loaded = load_feeds(config, feeds_from)
    topics, trending = select_stories(config, loaded, warnings)
    requests = build_requests(topics, day, templates, run_seed=config.generation.seed,
                              max_tokens=config.generation.max_tokens, sampling=sampling_of(config))
    status("loading model")
    with make_engine() as engine:
        status(f"generating {len(requests)} sections with {engine.model_name} ({engine.name} engine)")
        generation = generate(engine, requests, progress)
        model_name = engine.model_name
    post = assemble(config, now, model_name, topics, trending, generation.by_key())
    write_atomic(path, render(post))
    return RunResult(path, written=True, post=post, stats=generation.stats, warnings=warnings)
