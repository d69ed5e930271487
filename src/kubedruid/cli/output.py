"""What the people's commands print: data as JSON/YAML, tables with rich, one-line errors, kubectl-style ages."""

from __future__ import annotations

import datetime
import enum
import functools
import json
import os
import re
import sys
from typing import Any, Callable

import typer
import yaml
from lightkube.core import exceptions as kex
from rich.console import Console

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class OutputFormat(str, enum.Enum):
    json = "json"
    yaml = "yaml"


class CliError(Exception):
    """A one-line error for a person; `code` 2 is bad input (nothing was changed), 1 anything else."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.message, self.code = message, code


def console(stderr: bool = False) -> Console:
    """A console as wide as the terminal; when the output is a pipe or a file, wide enough that tables do not fold
    (rich's default there is 80 columns) unless $COLUMNS says otherwise."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or os.environ.get("COLUMNS"):
        return Console(stderr=stderr, highlight=False)
    return Console(stderr=stderr, highlight=False, width=200)


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


def error(message: str) -> None:
    # Plain text, not rich: the line must not be wrapped or styled into several lines.
    typer.echo(f"error: {one_line(message)}", err=True)


def emit(data: Any, fmt: OutputFormat) -> None:
    if fmt == OutputFormat.json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        typer.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n"))


def api_message(e: kex.ApiError) -> str:
    return one_line(e.status.message or e.status.reason or str(e))


def handle_errors(fn: Callable) -> Callable:
    """Turns what goes wrong into one line on stderr and an exit code (2 bad input, 1 failure, 130 interrupted)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CliError as e:
            error(e.message)
            raise typer.Exit(e.code)
        except kex.ApiError as e:
            error(f"{e.status.code} {e.status.reason or ''}: {api_message(e)}")
            raise typer.Exit(EXIT_FAILED)
        except kex.httpx.HTTPError as e:
            error(f"cannot reach the Kubernetes API: {e or type(e).__name__}")
            raise typer.Exit(EXIT_FAILED)
        except KeyboardInterrupt:
            error("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED)

    return wrapper


# -- time ------------------------------------------------------------------------------------------------------

def parse_time(value: Any) -> datetime.datetime | None:
    """An apiserver timestamp (RFC 3339 string, possibly with microseconds, or a datetime) as an aware datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    text = str(value).replace("Z", "+00:00")
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        return None


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def human_duration(seconds: float) -> str:
    """kubectl's HumanDuration: 45s, 3m10s, 25m, 2h5m, 6h, 3d4h, 12d, 2y."""
    s = max(int(seconds), 0)
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"


def age(value: Any) -> str:
    t = parse_time(value)
    return human_duration((now() - t).total_seconds()) if t else "-"


def iso(value: Any) -> str | None:
    t = parse_time(value)
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if t else None
