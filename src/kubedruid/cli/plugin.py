"""`kubectl-druid`: the `kubedruid` app as a kubectl plugin (`kubectl druid status my-druid -n demo`).

kubectl finds `kubectl-druid` on PATH and runs it with the arguments after `druid`; KUBECONFIG and the current
context come through the environment, `-n`, `--context` and `--kubeconfig` through the arguments.
"""

from __future__ import annotations


def main() -> None:
    from .main import app

    app(prog_name="kubectl druid")
