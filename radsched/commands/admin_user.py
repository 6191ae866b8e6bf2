"""``radsched admin-user add NAME --role viewer|operator|admin [--password-stdin] | disable NAME | list``.

Console users (docs/console.md). ``add`` prints a one-time password, which must be changed at first
login, unless ``--password-stdin`` reads the password from standard input (one line). ``disable``
also ends the user's live sessions at once. Works beside a running daemon; every change is audited.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from contextlib import AsyncExitStack
from datetime import UTC, datetime

from radsched.settings import Settings
from radsched.storage.pg import UndefinedTableError

__all__ = ["register"]


def _by() -> str:
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli"


def _run(args: argparse.Namespace) -> int:
    from radsched.cli import run_async

    async def go(settings: Settings) -> int:
        from radsched.console.users import UserError, add_user, disable_user
        from radsched.storage import console as store
        from radsched.storage.connect import storage

        password: str | None = None
        if args.action == "add" and args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        now = datetime.now(UTC)
        async with AsyncExitStack() as stack:
            db = (await stack.enter_async_context(storage(settings, stack, None, owner=False))).db
            try:
                async with db.transaction(f"cli.admin_user_{args.action}") as conn:
                    if args.action == "list":
                        users = await store.list_users(conn)
                    elif args.action == "add":
                        user, one_time = await add_user(
                            conn, args.name, args.role, password=password, by=_by(), now=now
                        )
                    else:
                        await disable_user(conn, args.name, by=_by(), now=now)
            except UserError as exc:
                print(f"radsched admin-user: {exc}", file=sys.stderr)
                return 2
            except UndefinedTableError:
                print(
                    "radsched admin-user: the database has no console tables yet; "
                    "run `radsched migrate` (or start the daemon) first",
                    file=sys.stderr,
                )
                return 2
        if args.action == "list":
            print(f"{'NAME':<20} {'ROLE':<9} {'STATE':<18} CREATED")
            for u in users:
                state = (
                    "disabled"
                    if u.disabled_at
                    else ("one-time password" if u.must_change else "active")
                )
                print(f"{u.name:<20} {u.role:<9} {state:<18} {u.created_at:%Y-%m-%d %H:%M}Z")
        elif args.action == "add":
            print(f"user {user.name!r} added as {user.role}")
            if one_time is not None:
                print(f"one-time password (change it at first login): {one_time}")
        else:
            print(f"user {args.name!r} disabled; their sessions have ended")
        return 0

    return run_async(go)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "admin-user",
        help="add, disable or list admin console users (audited)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a user (prints a one-time password)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=("viewer", "operator", "admin"))
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add.set_defaults(func=_run)
    disable = actions.add_parser("disable", help="disable a user and end their sessions")
    disable.add_argument("name", metavar="NAME")
    disable.set_defaults(func=_run)
    actions.add_parser("list", help="list users, roles and states").set_defaults(func=_run)
