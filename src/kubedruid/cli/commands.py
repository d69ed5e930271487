"""The commands for people (tls, status, ops), registered on the `kubedruid` app by `register`."""

from __future__ import annotations

import typer

from . import ops, status, tls


def register(app: typer.Typer) -> None:
    app.add_typer(tls.app, name="tls")
    app.command("status")(status.status)
    app.add_typer(ops.app, name="ops")
