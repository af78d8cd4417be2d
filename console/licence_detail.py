"""What the console shows about model licences: in the Models drill-down, the model's licence (its
terms, whether clients must acknowledge it and who decided, how many accepted the current version);
in the Clients view, a client's acknowledgements and the licences it still needs. The licence texts
are the catalogue's words, shown as written, never parsed as markup."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Group
from rich.table import Table
from rich.text import Text

from backend.wire.licences import LicenceAcceptanceOut, LicenceTerms, ModelLicenceOut, MyLicences

_USE = {"allowed": "commercial use allowed", "restricted": "commercial use RESTRICTED",
        "forbidden": "commercial use FORBIDDEN"}


def _when(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M")


def _clients(n: int) -> str:
    return f"{n} client{'' if n == 1 else 's'}"


def acknowledgement(lic: ModelLicenceOut) -> str:
    """Whether clients must accept it, and whose word that is."""
    need = "REQUIRED before a client's first request" if lic.requires_acceptance else "not required"
    if lic.set_by is None:
        return f"{need} (the catalogue's default)"
    default = "required" if lic.catalogue_default else "not required"
    when = f" {_when(lic.set_us)} UTC" if lic.set_us is not None else ""
    return f"{need} (set by the {lic.set_by}{when}; the catalogue's default: {default})"


def licence_section(lic: ModelLicenceOut | None) -> Group:
    if lic is None:
        return Group(Text("licence    N/A (this backend does not report licences)"))
    table = Table(box=None, padding=(0, 1), show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    table.add_row("licence", Text(f"{lic.licence}, version {lic.version}"))
    table.add_row("link", Text(lic.url))
    table.add_row("use", Text(f"{_USE[lic.commercial_use]}: {lic.restrictions or 'no restrictions'}"))
    table.add_row("attribution", Text(lic.attribution or "none required"))
    if lic.notice:
        table.add_row("notice", Text(lic.notice))
    if lic.base is not None:
        table.add_row("base model", Text(f"{lic.base.model}: {lic.base.licence} ({lic.base.url})"))
    table.add_row("acknowledge", Text(acknowledgement(lic)))
    older = f"; {_clients(lic.accepted_older_only)} only an older one" if lic.accepted_older_only else ""
    table.add_row("accepted", Text(f"{_clients(lic.accepted_current)} accepted version {lic.version}{older}"))
    return Group(table)


Row = tuple[str, tuple[str, ...]]


def _accepted_row(a: LicenceAcceptanceOut) -> Row:
    state = "accepted" if a.current else "older version"
    return (f"{a.model}@{a.version}", (a.model, a.licence, a.version, state, _when(a.accepted_us), a.accepted_by))


def _needed_row(t: LicenceTerms) -> Row:
    return (f"{t.model}@{t.version}", (t.model, t.licence, t.version, "NEEDED", "-", "-"))


def client_licence_rows(mine: MyLicences) -> list[Row]:
    """What the client must still accept first, then its acknowledgements, newest first."""
    return [_needed_row(t) for t in mine.needed] + [_accepted_row(a) for a in reversed(mine.accepted)]


def pick_label(t: LicenceTerms) -> str:
    return f"{t.model}  {t.licence} (version {t.version})"
