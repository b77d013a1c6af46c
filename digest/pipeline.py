"""One run, in the order data flows: feeds -> selection -> prompts -> engine -> render -> file."""

from __future__ import annotations

import dataclasses
import shutil
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from typing import Callable, Iterator, Sequence

from . import feeds as feedlib
from . import manifest as manifestlib
from . import prevention as preventionlib
from .config import Config, Prevention
from .engine.base import Engine, Generation, ProgressCallback, Request, Result, Stats, derive_seed
from .errors import ConfigError, FeedError, GenerationError, OutputError
from .markdown import escape_inline, link
from .post import FrontMatter, Post, Topic
from .prompts import Templates, build_requests
from .sections import SectionKind, kinds_of, plan
from .files import remove_stale_temp, sha256_bytes, write_atomic
from .render import ensure_writable, render
from .history import History
from .resources import samples_dir
from .lock import output_lock
from .site import Site
from .select import Covered, Story, pick
from .quality import Check, Judge, Score, Section, best
from .snapshot import STRICT, fetch_snapshot, read_snapshot

FEED_NAMES = ("topics", "trending")


@dataclass
class RunResult:
    path: Path
    written: bool
    post: Post | None = None
    stats: Stats | None = None
    warnings: list[str] = field(default_factory=list)
    chosen: "Chosen | None" = None
    manifest: Path | None = None


def site_of(config: Config, out: Path | None = None) -> Site:
    """The Hugo site a run writes to: `out`, else the config's [output] dir."""
    return Site(Path(out) if out is not None else config.resolve(config.output.dir))


@contextmanager
def hold_site(site: Site, *, wait: float, status: Callable[[str], None] = lambda message: None,
              stage: Callable[[str], AbstractContextManager[dict]] = lambda name: nullcontext({})) -> Iterator[Path]:
    """Hold the site's lock (waiting up to `wait` seconds for another run), and clear the temporary
    files a killed run left behind: only then may anything under the site be written."""
    with ExitStack() as stack:
        with stage("lock") as info:
            info["path"] = lock = stack.enter_context(output_lock(site.root, wait, on_wait=status))
            removed = [str(p) for folder in site.written_folders for p in remove_stale_temp(folder)]
            if removed:
                info["removed_stale_temp"] = ",".join(removed)
        yield lock


def feed_urls(config: Config) -> dict[str, list[str]]:
    return {name: getattr(config.feeds, name).urls for name in FEED_NAMES}


def load_feeds(config: Config, feeds_from: Path | None, snapshot: Path | None = None, site: Site | None = None,
               warnings: list[str] | None = None, fresh: Path | None = None) -> tuple[dict[str, feedlib.Feed], dict]:
    """Each configured feed, and where the bytes came from (for the manifest).

    From `feeds_from/<name>.xml`; or from a snapshot, each file checked against its index; or, with
    neither, fetched from the feeds' URLs into a new snapshot in the site's snapshots folder first,
    so that the run can be replayed (into `fresh`, when the caller named that new folder). A feed the
    snapshot records as failed is filled from the other. Each retry and each mirror given up on is a warning.
    """
    warnings = [] if warnings is None else warnings
    if feeds_from is None and snapshot is None:
        snapshot = fresh or (site or site_of(config)).new_snapshot()
        fetch_snapshot(snapshot, feed_urls(config), strict=config.feeds.strict,
                       options={**config.feeds.fetch_options(), "on_retry": warnings.append}, warn=warnings.append)
    if snapshot is not None:
        index, bodies = read_snapshot(snapshot, FEED_NAMES)
        failed = {name: index["feeds"][name]["error"] for name, data in bodies.items() if data is None}
    else:
        bodies = {name: feedlib.read_feed_bytes(feeds_from, name)[1] for name in FEED_NAMES}
        failed = {}
    directory = Path(snapshot if snapshot is not None else feeds_from)
    loaded = {name: feedlib.parse_feed(data, name=name, source=str(directory / f"{name}.xml"))
              for name, data in bodies.items() if data is not None}
    fill_failed_feeds(loaded, failed, strict=config.feeds.strict, warnings=warnings)
    files = {name: {"file": f"{name}.xml", "sha256": sha256_bytes(data), "size": len(data)} if data is not None
             else {"error": failed[name]} for name, data in bodies.items()}
    return loaded, {"snapshot": snapshot is not None, "directory": directory, "files": files}


def failed_feeds(feed_source: dict) -> dict[str, str]:
    """The feeds that `load_feeds` found failed (a snapshot records why), by name: why each failed."""
    return {name: entry["error"] for name, entry in feed_source["files"].items() if "error" in entry}


def fill_failed_feeds(loaded: dict[str, feedlib.Feed], failed: dict[str, str], *, strict: bool,
                      warnings: list[str]) -> None:
    """A failed feed's section is filled from a feed that worked (`select_stories` shares its stories
    between the two sections)."""
    if failed and strict:
        raise FeedError(f"{next(iter(failed.values()))} ({STRICT})")
    if failed and not loaded:
        raise FeedError("every feed failed: " + "; ".join(failed.values()))
    for name, error in failed.items():
        other = next(n for n in FEED_NAMES if n in loaded and n not in failed)
        loaded[name] = loaded[other]
        warnings.append(f"{error}; the {name} section is filled from feed '{other}' instead")


def _none_usable(section: str, loaded: dict[str, feedlib.Feed], failed: dict[str, str], left: str = "") -> FeedError:
    """No usable entry (`left`) for `section`: the feeds that failed first, they are the cause."""
    feed = loaded[section]
    filled = [name for name in failed if loaded.get(name) is feed]
    fills = f", which fills the {' and '.join(filled)} section instead," if filled else ""
    return FeedError("; ".join([*failed.values(), f"feed '{feed.name}' ({feed.source}){fills} has no usable entries{left}"]))


def select_stories(config: Config, loaded: dict[str, feedlib.Feed], warnings: list[str],
                   covered: Covered = Covered(), failed: dict[str, str] | None = None) -> tuple[list[Story], list[Story]]:
    """The day's topics (the topics feed's first usable stories not in `covered`) and trending
    headlines (the trending feed's first that are not a topic already).

    When one feed fills both sections (the other failed: `failed` maps its name to why), the
    headlines are its stories after the topics; a feed too short for both gives its last topic to
    the headlines, so that the post has at least one. When a section is left with nothing, the error
    names the feed that failed."""
    failed = failed or {}
    wanted_topics, wanted_trending = config.feeds.topics.count, config.feeds.trending.count
    topics = pick(loaded["topics"].entries, wanted_topics, covered=covered)
    if not topics:
        hint = (f" left: every one was covered in the last {config.history.days} days (--no-history to pick them anyway)"
                if covered else "")
        raise _none_usable("topics", loaded, failed, hint)
    shared = loaded["topics"] is loaded["trending"]
    trending = pick(loaded["trending"].entries, wanted_trending, avoid=topics)
    if not trending and shared and len(topics) > 1:
        topics = topics[:-1]
        trending = pick(loaded["trending"].entries, wanted_trending, avoid=topics)
    if len(topics) < wanted_topics:
        warnings.append(f"feed '{loaded['topics'].name}' gave {len(topics)} usable topics, "
                        f"fewer than the {wanted_topics} wanted")
    if not trending:
        after = (f" left for the trending headlines after the {len(topics)} {'topic' if len(topics) == 1 else 'topics'}"
                 if shared else "")
        raise _none_usable("trending", loaded, failed, after)
    if len(trending) < wanted_trending:
        warnings.append(f"feed '{loaded['trending'].name}' gave {len(trending)} usable headlines, "
                        f"fewer than the {wanted_trending} wanted")
    return topics, trending


def kinds_of_config(config: Config) -> tuple[SectionKind, ...]:
    """The section kinds of a post: `[generation] sections` (topic kinds by name), then the post-level kinds."""
    return kinds_of(config.generation.sections)


def sections_of(topics: Sequence[Story], kinds: Sequence[SectionKind], prefix: str = "") -> list[Section]:
    """What the quality checks need to know of each request that `build_requests` makes."""
    out = []
    for slot in plan([story.title for story in topics], kinds):
        story = None if slot.topic is None else topics[slot.topic]
        source = "" if story is None else f"{story.title} {story.excerpt} {story.link}"
        out.append(Section(prefix + slot.key, slot.kind, slot.title, source,
                           pair=None if slot.pair is None else prefix + slot.pair))
    return out


def templates_of(config: Config) -> Templates:
    """The prompt templates of the config's section kinds, from its prompts folder."""
    return Templates.load(config.prompts_path, kinds_of_config(config))


def requests_of(config: Config, topics: Sequence[Story], day: date, templates: Templates, *,
                examples: bool | None = None) -> list[Request]:
    """The requests of a post on these topics, as the config's [generation] settings make them (the
    run, the bench and eval alike); `examples`: with or without the example exchanges (default: the config's)."""
    g = config.generation
    return build_requests(topics, day, templates, run_seed=g.seed, max_tokens=g.max_tokens, sampling=config.sampling,
                          examples=g.examples if examples is None else examples, example_kinds=g.example_kinds)


def judge_of(config: Config, topics: Sequence[Story], day: date, templates: Templates, prefix: str = "") -> Judge:
    g = config.generation
    return Judge(sections_of(topics, templates.kinds, prefix), day, templates.texts.values(), min_words=g.min_words,
                 max_words=g.max_words, fact_rule=g.fact_rule)


@dataclass
class Chosen:
    """The generation of a run: the try kept for each section, its score, and how many tries it took."""

    generation: Generation
    scores: dict[str, Score]
    tries: dict[str, int]
    # The score of each section after the first round (its first try, when candidates = 1): the
    # honest figure, since the retries choose with the same checks that score the final text.
    first: dict[str, Score] = field(default_factory=dict)

    @property
    def passed(self) -> int:
        return sum(score.passed for score in self.scores.values())


UNUSABLE = Score([Check("usable", False, "nothing usable after cleaning")])


def _try_seed(seed: int, n: int) -> int:
    return seed if n == 0 else derive_seed(seed, f"try{n}")


def choose(judge: Judge, requests: Sequence[Request], tries: dict[str, list[Result]]) -> tuple[dict[str, Result], dict[str, Score]]:
    """The best usable try of each section, in request order (a Ramifications try is scored against
    the Benefits already chosen for its topic); first among equals, so the choice is deterministic."""
    chosen: dict[str, Result] = {}
    scores: dict[str, Score] = {}
    for request in requests:
        key = request.key
        pair = judge.sections[key].pair
        other = judge.text(pair, chosen[pair].text) if pair in chosen else None
        usable = [r for r in tries[key] if judge.usable(key, r.text)]
        if usable:
            scored = [judge.score(key, r.text, other) for r in usable]
            i = best(scored)
            chosen[key], scores[key] = usable[i], scored[i]
    return chosen, scores


def protect(requests: Sequence[Request], judge: Judge, prevention: Prevention) -> list[Request]:
    """`requests` with their fact guard (`prevention.guard`), their sentence rule (`sentence_attempts` > 1;
    with `hold_to_min_words`, no end before `min_words` or inside a sentence) and their point and topic
    biases, all made from what the judge knows of each section (digest.prevention builds them):
    prevention, before the checks."""
    p = prevention
    out = []
    for r in requests:
        section = judge.sections[r.key]
        rule = preventionlib.sentence_rule(
            section.kind, judge.sentence_checks(r.key), min_words=judge.min_words, max_words=judge.max_words,
            attempts=p.sentence_attempts, hold=p.hold_to_min_words) if p.sentence_attempts > 1 else None
        out.append(dataclasses.replace(
            r, guard=preventionlib.guard(section.kind, judge.source(r.key), judge.fact_rule) if p.guard else None,
            sentences=rule,
            bias=preventionlib.bias(section.kind, section.title, p.point_bias, p.topic_bias)))
    return out


def generate(engine: Engine, requests: Sequence[Request], judge: Judge, *, candidates: int = 1,
             retries: int = 2, progress: ProgressCallback | None = None, require_all: bool = True,
             prevention: Prevention = Prevention()) -> Chosen:
    """Generate `candidates` tries of each section side by side; while a section's best try fails a
    quality check, generate new tries of it (seeds derived from its own), at most `retries` rounds.
    Fails when a section has no usable try at all, unless not `require_all` (then its last try is
    kept, scored as unusable). `prevention`: see `protect` (default: none)."""
    requests = protect(requests, judge, prevention)
    tries: dict[str, list[Result]] = {r.key: [] for r in requests}
    stats = Stats()
    todo = list(requests)
    for round_ in range(retries + 1):
        batch, origin = [], {}
        for request in todo:
            for n in range(len(tries[request.key]), len(tries[request.key]) + candidates):
                key = request.key if n == 0 else f"{request.key} #{n}"
                origin[key] = request.key
                batch.append(dataclasses.replace(request, key=key, seed=_try_seed(request.seed, n)))
        generation = engine.generate(batch, progress)  # the retry rounds too: a log hears them (progress.py)
        stats.merge(generation.stats)
        for result in generation.results:
            tries[origin[result.key]].append(dataclasses.replace(result, key=origin[result.key]))
        chosen, scores = choose(judge, requests, tries)
        if round_ == 0:
            first = {r.key: scores.get(r.key, UNUSABLE) for r in requests}
        todo = [r for r in requests if r.key not in scores or not scores[r.key].passed]
        if not todo:
            break
    missing = [r.key for r in requests if r.key not in chosen]
    if missing and not require_all:
        for key in missing:
            chosen[key], scores[key] = tries[key][-1], UNUSABLE
    elif missing:
        if all(r.finish_reason == "thinking" for r in tries[missing[0]]):
            raise GenerationError(
                f"the model was still thinking (an unclosed <think> block) when its budget ran out for "
                f"'{missing[0]}' in all {len(tries[missing[0]])} tries: raise [model] thinking_tokens, or set "
                "[model] thinking = false"
            )
        raise GenerationError(
            f"the model wrote no usable text for '{missing[0]}' in {len(tries[missing[0]])} tries: "
            "try another --seed, a larger --max-tokens, or a larger model"
        )
    stats.requests = len(requests)
    return Chosen(Generation([chosen[r.key] for r in requests], stats), scores,
                  {key: len(results) for key, results in tries.items()}, first)


def assemble(config: Config, when: datetime, model_name: str, topics: Sequence[Story],
             trending: Sequence[Story], results: dict[str, Result], kinds: Sequence[SectionKind] | None = None) -> Post:
    """The post: each section's result cleaned by its kind (`kinds`, default: the config's) and escaped."""
    blog = config.blog
    front = FrontMatter(
        title=blog.title,
        date=when,
        author=blog.author,
        tags=[*blog.tags, model_name],
        draft=blog.draft,
        cover=dataclasses.replace(blog.cover),
    )
    kinds = kinds_of_config(config) if kinds is None else kinds
    g = config.generation

    def title(story: Story) -> str:  # with `[blog] source_links`, a link to its story
        return link(escape_inline(story.title), story.link) if blog.source_links else escape_inline(story.title)

    post = Post(
        front=front,
        topics=[Topic(title(story)) for story in topics],
        trending=[title(s) for s in trending],
        predictions=[],
        notice=escape_inline(blog.notice),
        predictions_heading=escape_inline(blog.predictions_heading),
    )
    for slot in plan([story.title for story in topics], kinds):  # each kind puts its text in its place
        slot.kind.put(post, slot, slot.kind.cleaned(results[slot.key].text, g.min_words, g.max_words), escape_inline)
    return post


def run(
    config: Config,
    make_engine: Callable[[], Engine],
    *,
    day: date | None = None,
    now: datetime | None = None,
    out: Path | None = None,
    feeds_from: Path | None = None,
    snapshot: Path | None = None,
    force: bool = False,
    record: bool = True,
    progress: ProgressCallback | None = None,
    status: Callable[[str], None] = lambda message: None,
    no_history: bool = False,
    covered: Covered | None = None,
    stage: Callable[[str], AbstractContextManager[dict]] = lambda name: nullcontext({}),
) -> RunResult:
    """Write the post for `day` (default: today, UTC) into the site at `out` (default: [output] dir),
    with its manifest (unless not `record`) written just before it.

    The run holds the site's lock throughout (`hold_site`). The stories to skip come from the site's
    history (none with `no_history`), or are given as `covered` (a replay gives those its manifest
    recorded); the topics are recorded in the history when `record`. A run from the bundled sample
    feeds (`--sample-feeds`) neither reads nor writes the history: their stories never change, so
    the history would only use them up, and they are not news a real site has covered.

    Nothing is written unless all of it succeeded: the snapshot of the feeds a failed run fetched is
    removed too.
    """
    site = site_of(config, out)
    with hold_site(site, wait=config.output.lock_wait, status=status, stage=stage):
        use_history = record and not is_sample(feeds_from)
        history = History(site.history, 0 if no_history else config.history.days) if use_history else None
        fresh = site.new_snapshot() if feeds_from is None and snapshot is None else None
        try:
            return _write_post(config, make_engine, site, history, day=day, now=now, feeds_from=feeds_from,
                               snapshot=snapshot, fresh=fresh, force=force, record=record, progress=progress,
                               status=status, covered=covered, stage=stage)
        except BaseException:
            if fresh is not None:
                shutil.rmtree(fresh, ignore_errors=True)
            raise


def is_sample(feeds_from: Path | None) -> bool:
    """Whether `feeds_from` is the folder of the bundled sample feeds (`--sample-feeds`)."""
    return feeds_from is not None and Path(feeds_from).resolve() == samples_dir().resolve()


def _write_post(
    config: Config,
    make_engine: Callable[[], Engine],
    site: Site,
    history: History | None,
    *,
    day: date | None,
    now: datetime | None,
    feeds_from: Path | None,
    snapshot: Path | None,
    fresh: Path | None,
    force: bool,
    record: bool,
    progress: ProgressCallback | None,
    status: Callable[[str], None],
    covered: Covered | None,
    stage: Callable[[str], AbstractContextManager[dict]],
) -> RunResult:
    now = _post_time(day, now)
    day = now.date()
    path = site.post(day)
    if path.exists() and not force:
        return RunResult(path, written=False, warnings=[f"a post for {day} already exists: {path} (use --force to replace it)"])

    ensure_writable(path.parent)
    warnings: list[str] = []
    templates = templates_of(config)
    status("reading feeds")
    with stage("feeds") as info:
        feed_source, topics, trending, covered = _stories(config, site, history, day, feeds_from, snapshot, covered,
                                                          warnings, fresh)
        info.update(topics=len(topics), trending=len(trending), covered=len(covered))
    requests = requests_of(config, topics, day, templates)
    status("loading model")
    judge = judge_of(config, topics, day, templates)
    with stage("model") as info:
        engine = make_engine()
        info.update(name=engine.model_name, engine=engine.name)
    unapplied = prevention_unapplied(config.generation.prevention, engine)
    if unapplied:
        status(unapplied)
        warnings.append(unapplied)
    with engine:
        status(f"generating {len(requests)} sections with {engine.model_name} ({engine.name} engine)")
        with stage("generation") as info:
            chosen = generate(engine, requests, judge, candidates=config.generation.candidates,
                              retries=config.generation.retries, progress=progress,
                              prevention=config.generation.prevention)
            s = chosen.generation.stats
            info.update(sections=len(requests), tokens=s.completion_tokens, **{"tok/s": f"{s.tokens_per_second:.1f}"},
                        passed=chosen.passed)
        model_name = engine.model_name
        engine_settings = engine_record(engine)
        server = engine.describe()
    post = assemble(config, now, model_name, topics, trending, chosen.generation.by_key(), templates.kinds)
    text = render(post)
    result = RunResult(path, written=True, post=post, stats=chosen.generation.stats, warnings=warnings, chosen=chosen)
    with stage("write") as info:
        # The manifest goes first: a post on disk always has the manifest that proves where it came
        # from. If the post then cannot be written, the manifest is put back as it was.
        undo = None
        if record:
            manifest = manifestlib.build(
                config, site=site, post=path, post_text=text, when=now, feeds=feed_source, prompt_names=list(templates.texts),
                sampling=config.sampling, engine=engine_settings, server=server, requests=requests, chosen=chosen,
                topics=topics, trending=trending, covered=covered, warnings=warnings)
            result.manifest, undo = manifestlib.write(site, day, manifest)
        try:
            write_atomic(path, text)
        except BaseException:
            if undo:
                undo()
            raise
        info.update(path=path)
    if history:
        _record_topics(history, day, topics, warnings)
    return result


def _post_time(day: date | None, now: datetime | None) -> datetime:
    """The post's time: `now` (default: this second, UTC), on `day` where one is given."""
    now = now or datetime.now(timezone.utc).replace(microsecond=0)
    if day is not None and day != now.date():
        now = datetime(day.year, day.month, day.day, now.hour, now.minute, now.second, tzinfo=timezone.utc)
    return now


def _stories(config: Config, site: Site, history: History | None, day: date, feeds_from: Path | None,
             snapshot: Path | None, covered: Covered | None, warnings: list[str], fresh: Path | None = None):
    """(where the feeds came from, the topics, the trending stories, what was covered before): the
    feeds read (a fetch's snapshot into `fresh`), their warnings added to `warnings`, and the stories
    picked, a failed feed's section filled from the other feed."""
    loaded, feed_source = load_feeds(config, feeds_from, snapshot, site, warnings, fresh)
    warnings.extend(dict.fromkeys(warning for feed in loaded.values() for warning in feed.warnings))
    if covered is None:
        covered = history.covered(day) if history else Covered()
    topics, trending = select_stories(config, loaded, warnings, covered, failed_feeds(feed_source))
    return feed_source, topics, trending, covered


def _record_topics(history: History, day: date, topics, warnings: list[str]) -> None:
    """The day's topics into the history; a record that cannot be written is a warning (the post is
    written, and a lost record must not fail the run)."""
    try:
        history.record(day, topics)
    except OutputError as exc:
        warnings.append(f"the topics were not recorded: {exc}")


def prevention_unapplied(prevention: Prevention, engine: Engine) -> str | None:
    """One line, when `prevention` asks for what the engine cannot apply while it writes (it is not in
    its `prevents`): those sections are then only checked after the fact."""
    missing = [names for what, names in prevention.asked().items() if what not in engine.prevents]
    if not missing:
        return None
    names = [" and ".join(group) for group in missing]
    return (f"the {engine.name} engine cannot apply [generation] {', '.join(names)} while it "
            "writes: its sections are only checked and retried after the fact")


def engine_record(engine: Engine) -> dict:
    """What a manifest records of the engine that ran: the settings it was made from (EngineSettings;
    only its name where it was made without them), and what it made of them."""
    settings = engine.settings
    return {**(settings.record() if settings is not None else {"name": engine.name}),
            "threads_used": engine.threads, "thinking_budget": engine.thinking_budget,
            "prevents": sorted(engine.prevents),
            # What the model's chat template is and does with digest's prompts (None behind a server).
            "chat_template": engine.chat_template()}


def run_many(
    configs: Sequence[tuple[str, Config]],
    engine: Engine,
    *,
    progress: ProgressCallback | None = None,
    status: Callable[[str], None] = lambda message: None,
    **options,
) -> list[RunResult | BaseException]:
    """Several posts, one per (name, config), each a whole `run` (its own site, lock, seed, history and
    manifest) in its own thread, with all their sections generated through one shared batch of
    `engine`. Each post's bytes are those of its own single run. Returns, per config, its RunResult or
    the exception that ended it (one post failing does not stop the others)."""
    from .engine.shared import SharedBatch

    roots = [site_of(config).root.resolve() for _, config in configs]
    for i, root in enumerate(roots):
        if root in roots[:i]:
            other = configs[roots.index(root)][0]
            raise ConfigError(f"{configs[i][0]} and {other} both write to {root}: give each post its own [output] dir")
    batch = SharedBatch(engine, [name for name, _ in configs], progress)
    outcomes: list[RunResult | BaseException | None] = [None] * len(configs)

    def one(i: int, name: str, config: Config) -> None:
        member = batch.member(name)
        try:
            outcomes[i] = run(config, lambda: member, status=lambda message: status(f"{name}: {message}"), **options)
        except BaseException as exc:  # reported by the caller, per post
            outcomes[i] = exc
        finally:
            batch.leave(name)

    threads = [threading.Thread(target=one, args=(i, name, config), name=f"digest-{i}", daemon=True)
               for i, (name, config) in enumerate(configs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes  # type: ignore[return-value]
