"""``radsched modality list | enable CODE --by NAME [--note TEXT] | disable CODE --by NAME [--note TEXT]``.

Works beside a running daemon: it opens the database the way every one-shot command does
(``storage(..., owner=False)``), writes ``scheduling_config`` and ``config_audit`` in one transaction
and notifies ``radsched_config``; running daemons apply the change within seconds, without a restart.
"""

from __future__ import annotations

import argparse
from contextlib import AsyncExitStack
from datetime import UTC, datetime

from radsched.settings import Settings

__all__ = ["change_modality", "register", "show_modalities"]


async def show_modalities(settings: Settings) -> list[tuple[str, bool, str, str]]:
    """(code, enabled, source, last change) for every known modality."""
    from radsched.modality import list_modalities
    from radsched.storage.connect import storage

    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(storage(settings, stack, None, owner=False))
        async with store.db.transaction("cli.modality_list") as conn:
            rows = await list_modalities(conn, settings.modality_defaults)
    return [
        (
            r.modality,
            r.enabled,
            r.source,
            f"{r.updated_at:%Y-%m-%d %H:%M}Z by {r.updated_by}" if r.updated_at else "",
        )
        for r in rows
    ]


async def change_modality(
    settings: Settings, code: str, *, enabled: bool, by: str, note: str | None
) -> tuple[bool, bool]:
    """Switch one modality; returns (old, new). Raises ValueError for a bad code or name."""
    from radsched.modality import set_modality
    from radsched.storage.connect import storage

    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(storage(settings, stack, None, owner=False))
        async with store.db.transaction("cli.modality_set") as conn:
            return await set_modality(
                conn,
                code,
                enabled=enabled,
                by=by,
                note=note,
                defaults=settings.modality_defaults,
                now=datetime.now(UTC),
            )


def _list(args: argparse.Namespace) -> int:
    from radsched.cli import run_async

    async def go(settings: Settings) -> int:
        rows = await show_modalities(settings)
        print(f"{'MODALITY':<10} {'STATE':<9} {'SOURCE':<8} LAST CHANGE")
        for code, enabled, source, changed in rows:
            state = "enabled" if enabled else "disabled"
            print(f"{code:<10} {state:<9} {source:<8} {changed}".rstrip())
        return 0

    return run_async(go)


def _switch(args: argparse.Namespace) -> int:
    from radsched.cli import run_async

    enabled = args.action == "enable"

    async def go(settings: Settings) -> int:
        try:
            old, new = await change_modality(
                settings, args.code, enabled=enabled, by=args.by, note=args.note
            )
        except ValueError as exc:
            print(f"radsched modality: {exc}")
            return 2
        word = {True: "enabled", False: "disabled"}
        change = "unchanged" if old == new else f"{word[old]} -> {word[new]}"
        print(f"{args.code.strip().upper()}: {word[new]} ({change}); audited as {args.by!r}")
        return 0

    return run_async(go)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "modality",
        help="list, enable or disable modalities offered by text (audited, applies live)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "list", help="show every modality and where its state comes from"
    ).set_defaults(func=_list)
    for action in ("enable", "disable"):
        sub = actions.add_parser(action, help=f"{action} a modality (DICOM code, e.g. CT)")
        sub.add_argument("code", metavar="CODE")
        sub.add_argument("--by", required=True, metavar="NAME", help="who makes the change")
        sub.add_argument("--note", metavar="TEXT", help="why (kept in the audit)")
        sub.set_defaults(func=_switch)
