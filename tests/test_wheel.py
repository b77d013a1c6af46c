"""digest as a wheel: built from the checkout, installed into a new virtual environment outside it
(whose dependencies are the test run's own, already installed),
and run there (with the real embedded model from models/, passed by path). What the checkout gives
through its folders (prompts, the model registry, the sample feeds, the default config) must come from
inside the installed package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT
from digest.config import Config

pytestmark = pytest.mark.model


def _run(args: list, *, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, args))} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin/ folder of a new virtual environment with digest's wheel (and its dependencies) in it."""
    top = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", top / "dist", PROJECT_ROOT], cwd=top)
    (wheel,) = (top / "dist").glob("digest-*.whl")
    _run([sys.executable, "-m", "venv", "--without-pip", top / "venv"], cwd=top)
    venv_python = top / "venv" / "bin" / "python"
    # The dependencies are the test run's own (make install put them there): a path line adds its
    # site-packages after the new environment's own, without its .pth files, so the checkout's
    # editable digest stays out of sight and `import digest` finds the wheel's copy alone.
    site = Path(_run([venv_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=top).stdout.strip())
    deps = [p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "llama_cpp").is_dir()]
    assert deps, "llama_cpp is not installed in a site-packages of this interpreter"
    (site / "test-run-dependencies.pth").write_text(f"{deps[0]}\n")
    _run([sys.executable, "-m", "pip", "--python", venv_python, "install", "--quiet", "--no-deps", wheel], cwd=top)
    where = _run([venv_python, "-c", "import digest; print(digest.__file__)"], cwd=top).stdout.strip()
    assert Path(where).is_relative_to(site), where
    return top / "venv" / "bin"


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_") and k != "PYTHONPATH"}
    env["HOME"] = str(home)
    env.pop("XDG_DATA_HOME", None)
    return env


def test_an_installed_wheel_writes_checks_and_lists_models(installed, tmp_path):
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    env = _env(home)
    digest = installed / "digest"
    model = Config().model_path  # the checkout's embedded model, passed by path

    _run([digest, "run", "--sample-feeds", "--out", "site", "--model", model, "--date", "2026-11-23",
          "--topics", "2", "--trending", "1", "--max-tokens", "48", "--quiet"], cwd=work, env=env)
    post = work / "site" / "content" / "posts" / "2026-11-23-ai-auto-summary.md"
    assert post.is_file()
    _run([digest, "check", post], cwd=work, env=env)

    # The prompts came from the installed package, not from the checkout it was built from.
    manifest = json.loads((work / "site" / ".digest" / "manifests" / "2026-11-23.json").read_text())
    prompts = Path(manifest["prompts"]["dir"])
    assert PROJECT_ROOT not in prompts.parents and prompts.parts[-3:] == ("digest", "_data", "prompts"), prompts

    # The shipped registry is there; its files belong in the user's data folder, not in site-packages.
    listed = _run([digest, "models", "list"], cwd=work, env=env)
    everything = listed.stdout + listed.stderr
    assert "smollm2-135m" in everything and "smollm2-135m-q4_1" in everything
    assert str(home / ".local" / "share" / "digest" / "models") in everything

    # Without the model, the wheel says how to get it: there is no checkout's Makefile to run.
    missing = subprocess.run([digest, "run", "--sample-feeds", "--out", "site2", "--date", "2026-11-23"], cwd=work,
                             env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 5, missing.stderr
    assert "digest models pull smollm2-135m" in missing.stderr and "make install" not in missing.stderr


def test_an_installed_wheel_copies_its_prompts_to_edit(installed, tmp_path):
    env = _env(tmp_path / "home")
    _run([installed / "digest", "init", "digest.toml", "--prompts", "my-prompts"], cwd=tmp_path, env=env)
    shipped = sorted(p.name for p in (PROJECT_ROOT / "prompts").glob("*.txt"))
    assert sorted(p.name for p in (tmp_path / "my-prompts").iterdir()) == shipped
    assert (tmp_path / "my-prompts" / "system.txt").read_text() == (PROJECT_ROOT / "prompts" / "system.txt").read_text()
    assert 'prompts_dir = "my-prompts"' in (tmp_path / "digest.toml").read_text()
