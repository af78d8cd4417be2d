"""`tokenmill quickstart`: the questions, the estimate, the config file, then the first host."""

from __future__ import annotations

import argparse
import shlex
import sys
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from backend.catalogue import Catalogue, CatalogueError, load_catalogue
from backend.catalogue.capacity import replica_capacity
from backend.cli_quickstart.answers import CLOUDS, KEY_FIELDS, Answers, check_fleet, gpu_count_of, parse_yes_no
from backend.cli_quickstart.config_file import check_config, config_text, write_config
from backend.cli_quickstart.estimate import days_text, estimate_lines, simulate_plan
from backend.cli_quickstart.questions import QuickstartAborted, Terminal, Wizard
from backend.field_errors import FieldError
from backend.money import format_usd, parse_usd
from backend.runtime.clock import REAL_CLOCK
from backend.settings import Settings, SettingsError, find_config_file
from backend.simulate.plan import parse_fleet
from backend.wire.admin_client import AdminError, BackendUnavailable, BlockingAdminClient

DEFAULT_DAYS = 3.0
Runner = Callable[[Settings, list[str]], int]  # runs another `tokenmill` command (backend/cli.py gives it)


def first_host_command(answers: Answers, cat: Catalogue, settings: Settings) -> list[str] | None:
    """`tokenmill provision ...` arguments for the fleet's first host the backend can provision: the
    operator's machine, or a cloud with an API key; None when there is none."""
    for e in parse_fleet(answers.fleet, cat):
        if e.provider == "owned" and answers.ssh and answers.ssh.gpu == e.gpu:
            card, count = cat.gpu_by_id[e.gpu], 1
        elif e.provider in CLOUDS and (e.provider in answers.keys or getattr(settings, KEY_FIELDS[e.provider])):
            card, count = cat.gpu_by_id[e.gpu], gpu_count_of(e.gpu, e.provider, cat)
        else:
            continue
        wanted = (e.model,) if e.model else answers.models
        model = next((m for m in wanted if replica_capacity(cat.model_by_id[m], card, count) is not None), None)
        if model is None:
            continue
        if e.provider == "owned":
            ssh = answers.ssh
            return ["provision", "--provider", "ssh", "--model", model, "--gpu", e.gpu,
                    "--ssh-host", ssh.host, "--ssh-port", str(ssh.port), "--ssh-user", ssh.user]
        return ["provision", "--provider", e.provider, "--model", model, "--gpu", e.gpu]
    return None


def _found_config() -> Path | None:
    try:
        found = find_config_file()
    except SettingsError:  # TOKENMILL_CONFIG names a missing file
        return None
    return found.resolve() if found else None


def _shell(argv: list[str], config: Path | None) -> str:
    env = f"TOKENMILL_CONFIG={shlex.quote(str(config))} " if config else ""
    return env + "tokenmill " + " ".join(shlex.quote(a) for a in argv)


def backend_status(settings: Settings) -> tuple[bool | None, str]:
    """(simulated?, why) of the backend at the admin address; (None, why) when none answers."""
    token = settings.admin_token.get_secret_value() or settings.ensure_admin_token()
    admin = BlockingAdminClient(settings.admin_url, token, timeout_s=5.0)
    try:
        status = admin.run(admin.api.status())
        return status.simulated, f"tokenmill {status.version}, {status.hosts_up}/{status.hosts} hosts up"
    except BackendUnavailable as exc:
        return None, f"no backend answers at {exc.url} ({exc.reason})"
    except AdminError as exc:
        return None, f"the backend at {settings.admin_url} refused: {exc.message} ({exc.status})"
    finally:
        admin.close()


def quickstart(settings: Settings, args: argparse.Namespace, run: Runner, term: Terminal | None = None) -> int:
    term = term or Terminal()
    try:
        cat = load_catalogue(settings.catalogue_dir)
    except CatalogueError as exc:
        print(f"tokenmill: {exc}", file=sys.stderr)
        return 2
    wizard = Wizard(settings, cat, term, defaults=args.defaults)
    # The file the settings came from, so that the backend reads what is written; else the data dir's.
    path = (Path(args.config).expanduser().resolve() if args.config
            else settings.config_file or settings.data_dir / "config.toml")
    term.say("tokenmill quickstart: what to sell, on which GPUs, at what price; then an estimate, the config")
    term.say(f"file ({path}) and, if you want, the first host. Enter takes the [default]; Ctrl-D stops.")
    try:
        return _run(wizard, cat, path, args, run)
    except QuickstartAborted:
        term.say("\nquickstart stopped: nothing more was written or provisioned")
        return 1
    except KeyboardInterrupt:
        term.say("\nquickstart interrupted: nothing more was written or provisioned")
        return 130
    except FieldError as exc:  # only --defaults gets here: nobody to ask again
        print(f"tokenmill: {exc}", file=sys.stderr)
        return 1


def _run(wizard: Wizard, cat: Catalogue, path: Path, args: argparse.Namespace, run: Runner) -> int:
    term, settings = wizard.term, wizard.settings
    answers = wizard.ask_all()
    while True:
        summary(answers, term)
        wizard.heading(f"Simulating {days_text(args.days)} of this plan...")
        try:
            result = simulate_plan(answers, cat, settings, args.days, term)
            break
        except FieldError as exc:  # the fleet cannot run as given (an owned card with no catalogue price...)
            term.say(f"\n  ! {exc}")
            if wizard.defaults:
                raise
            fleet, _ = wizard.question("Starting fleet", answers.fleet,
                                       lambda t, models=answers.models: check_fleet(t, models, cat))
            answers = replace(answers, fleet=fleet)
    term.say("\r  simulated 100 %")
    term.say()
    for line in estimate_lines(result, answers):
        term.say(line)

    wizard.heading("The config file")
    written = _write(wizard, answers, path)
    # A file `tokenmill` would not find by itself must be named to every command.
    config_env = written if written is not None and written != _found_config() else None
    if answers.pin:
        wizard.note(f"pinned prices live in the backend's database, not in the config: once it runs, pin each "
                    f"model at ${answers.pin[0]} / ${answers.pin[1]} in the console (`tokenmill`, :models, p); "
                    "the config turns dynamic pricing off")

    wizard.heading("The first host")
    argv = first_host_command(answers, cat, settings)
    if argv is None:
        term.say("  nothing to provision: no GPU source with credentials in this plan. Run")
        term.say("  `tokenmill quickstart` again when you have one; the demo: `tokenmill serve --local`.")
        return 0
    term.say("  the fleet's first host:")
    term.say(f"    {_shell(argv, config_env)}")
    if wizard.defaults or not wizard.question("Provision it now (y/n)", "n", lambda t: parse_yes_no(t, "provision")):
        term.say("  nothing provisioned. When you want it:")
        _print_commands(term, argv, config_env)
        return 0
    simulated, why = backend_status(settings)
    if simulated is None or simulated:
        term.say(f"  {why if simulated is None else 'the backend there is the simulated demo (serve --local)'}: "
                 "nothing provisioned. Run:")
        _print_commands(term, argv, config_env)
        return 0
    term.say(f"  backend: {why}. If it started before this config was written, restart it so it reads the keys.")
    return run(settings, argv)


def _print_commands(term: Terminal, argv: list[str], config: Path | None) -> None:
    term.say(f"    {_shell(['serve'], config)}      (in another terminal, or as the systemd unit)")
    term.say(f"    {_shell(argv, config)}")


def _write(wizard: Wizard, answers: Answers, path: Path) -> Path | None:
    term = wizard.term
    while True:
        existing: dict[str, Any] = {}
        overwrite = path.exists()
        if overwrite:
            if wizard.defaults:
                raise FieldError("config", f"{path} exists and --defaults never overwrites a file: "
                                           "give another with --config PATH")
            try:
                existing = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                term.say(f"  ! {path}: cannot read it ({exc}); it is kept as it is")
                keep = True
            else:
                keep = not wizard.question(f"{path} exists: replace it (its other settings are kept, its "
                                           "comments are not)? (y/n)", "n", lambda t: parse_yes_no(t, "overwrite"))
            if keep:
                other = wizard.question("Write it to another file instead (empty: write nothing)", "",
                                        lambda t: t.strip())
                if not other:
                    term.say("  no config file written")
                    return None
                path = Path(other).expanduser().resolve()
                continue
        text = config_text(answers, existing, REAL_CLOCK.now_us())
        check_config(text)
        try:
            write_config(path, text, overwrite=overwrite)
        except FileExistsError:
            continue  # created meanwhile: ask about it
        except OSError as exc:
            if wizard.defaults:
                raise FieldError("config", f"{path}: {exc.strerror}") from None
            term.say(f"  ! {path}: {exc.strerror}")
            other = wizard.question("Write it to another file (empty: write nothing)", "", lambda t: t.strip())
            if not other:
                return None
            path = Path(other).expanduser().resolve()
            continue
        term.say(f"  wrote {path} (mode 0600{', with your API keys' if answers.keys else ''})")
        return path


def summary(answers: Answers, term: Terminal) -> None:
    term.say()
    term.say("Your plan:")
    term.say(f"  models         {', '.join(answers.models)}")
    sources = [*(f"{c} (API key set, hidden)" for c in answers.clouds)]
    if answers.ssh:
        sources.append(f"ssh {answers.ssh.target} ({answers.ssh.gpu})")
    term.say(f"  GPU sources    {', '.join(sources) or 'none yet (simulate only)'}")
    term.say(f"  fleet          {answers.fleet}")
    pin = f" (${answers.pin[0]} / ${answers.pin[1]} per 1M tokens)" if answers.pin else ""
    term.say(f"  prices         {answers.policy}{pin}")
    term.say(f"  autoscaler     {'on' if answers.autoscale else 'off'}, budget ${answers.budget_usd}/h")
    target = parse_usd(answers.profit_target_usd)
    term.say(f"  profit target  {format_usd(target, places=2) + '/day' if target else 'none'}")


def add_command(sub: argparse._SubParsersAction, run: Runner) -> None:
    p = sub.add_parser("quickstart", help="a wizard: models, GPUs, prices, budget; an estimate; the config file")
    p.add_argument("--config", metavar="PATH",
                   help="the config file to write (default: the one in use, else the data dir's config.toml)")
    p.add_argument("--defaults", action="store_true", help="take every default without asking (for scripts)")
    p.add_argument("--days", type=_days, default=DEFAULT_DAYS, help=f"simulated days (default {DEFAULT_DAYS:g})")
    p.set_defaults(func=lambda settings, args: quickstart(settings, args, run))


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--days: {text!r} is not a number") from None
    if not 0.05 <= days <= 31:
        raise argparse.ArgumentTypeError(f"--days: {days:g} is not between 0.05 and 31")
    return days
