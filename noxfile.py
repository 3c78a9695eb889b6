"""Developer sessions: ``nox -s check`` (lint, tests, pynet-check) and ``nox -s bench``.

Environments are reused between runs (torch is large): the first run installs the project
into ``.nox/<session>``, later runs only refresh the editable install.
"""

import nox

nox.options.reuse_venv = "yes"
nox.options.sessions = ["check"]


def install(session: nox.Session) -> None:
    session.install("-e", ".[dev]")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    install(session)
    session.run("ruff", "check", ".")


@nox.session
def check(session: nox.Session) -> None:
    """Lint, the test suite and the gradient checker (every backend against PyTorch)."""
    install(session)
    session.run("ruff", "check", ".")
    session.run("pytest", *session.posargs)
    session.run("pynet-check", "--quiet", "--json", "runs/pynet-check.json")


@nox.session
def bench(session: nox.Session) -> None:
    """Every backend against torch (pytest-benchmark) -> bench/RESULTS.md, bench/results.json."""
    install(session)
    raw = ".benchmarks/raw.json"
    session.run("pytest", "bench", "--benchmark-only", f"--benchmark-json={raw}",
                *session.posargs)
    session.run("python", "-m", "bench.report", raw)
