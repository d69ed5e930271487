"""What an op does to each of a Druid's cert-manager Certificates, from the live ones and the ones the op's target
renders (specs/cluster.certificates_owned_by): for people, before anything changes (`kubedruid tls plan`). Pure."""

from __future__ import annotations

ISSUE, REISSUE, DELETE, UNCHANGED = "issue", "re-issue", "delete", "unchanged"


def _issuer(cert: dict) -> str:
    ref = cert["spec"]["issuerRef"]
    return f"{ref.get('kind', 'Issuer')}/{ref['name']}"


def _sans(cert: dict) -> list[str]:
    spec = cert["spec"]
    return [*(spec.get("dnsNames") or []), *(spec.get("ipAddresses") or []), *(spec.get("uris") or []),
            *(spec.get("emailAddresses") or [])]


def certificate_changes(before: list[dict], after: list[dict], reissue: bool = False) -> list[dict]:
    """One entry per Certificate, by name: `change` (issue, re-issue, delete, unchanged), the issuer (`from` and
    `to` where it changes), and the SANs it gains and loses. `reissue`: the op re-issues certificates whose spec
    stays (a rotation)."""
    live = {c["metadata"]["name"]: c for c in before}
    wanted = {c["metadata"]["name"]: c for c in after}
    out = []
    for name in [*wanted, *(n for n in live if n not in wanted)]:
        old, new = live.get(name), wanted.get(name)
        entry: dict = {"certificate": name}
        if old is None:
            entry.update(change=ISSUE, issuer=_issuer(new), sans=len(_sans(new)))
        elif new is None:
            entry.update(change=DELETE, issuer=_issuer(old))
        else:
            added = [s for s in _sans(new) if s not in _sans(old)]
            removed = [s for s in _sans(old) if s not in _sans(new)]
            moved = _issuer(old) != _issuer(new)
            differs = moved or added or removed or old["spec"] != new["spec"]
            entry.update(change=REISSUE if differs or reissue else UNCHANGED, sans=len(_sans(new)))
            entry["issuer"] = {"from": _issuer(old), "to": _issuer(new)} if moved else _issuer(new)
            if added:
                entry["sansAdded"] = added
            if removed:
                entry["sansRemoved"] = removed
        out.append(entry)
    return out


def summary(change: dict) -> str:
    """One line for people: `druid-cluster-server-cert: re-issue, Issuer/a -> Issuer/b, +2 SANs`."""
    issuer = change.get("issuer")
    issuer = f"{issuer['from']} -> {issuer['to']}" if isinstance(issuer, dict) else issuer
    parts = [change["change"], issuer]
    if change["change"] == ISSUE:
        parts.append(f"{change['sans']} SANs")
    if change.get("sansAdded"):
        parts.append(f"+{len(change['sansAdded'])} SANs ({', '.join(change['sansAdded'][:3])}"
                     f"{', …' if len(change['sansAdded']) > 3 else ''})")
    if change.get("sansRemoved"):
        parts.append(f"-{len(change['sansRemoved'])} SANs ({', '.join(change['sansRemoved'][:3])}"
                     f"{', …' if len(change['sansRemoved']) > 3 else ''})")
    return f"{change['certificate']}: {', '.join(p for p in parts if p)}"
