"""The ``slothflow`` command: run workflows, read their provenance, manage the database.

This package is the only place that prints. Errors that slothflow raises become one clear message and a
non-zero exit code; a task's own error is shown with the user's frames only. Exit codes: 0 done, 1 the
workflow failed (or the database cannot be used), 2 bad input (usage, task name, parameter value,
configuration, a database that does not exist), 3 a bug in slothflow, 130 interrupted (Ctrl-C).

``slothflow --help`` loads no database stack: commands import what they need when they run.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from slothflow._config import (
    CONFIG_FILENAME,
    DB_FILENAME,
    DEFAULT_CONFIG_TOML,
    PROJECT_DIRNAME,
    Config,
    find_project_dir,
    load_project_config,
)
from slothflow._errors import CLIError, ConfigError, SlothflowError, TaskDefinitionError
from slothflow.cli._console import make_console
from slothflow.cli._display import Progress
from slothflow.cli._errors import user_traceback
from slothflow.cli._params import parse_task_args
from slothflow.model._context import merge_contexts
from slothflow.model._task import Task, get_task_registry
from slothflow.scheduler import Plan, Scheduler

err_console = make_console(stderr=True)

EXIT_FAILED = 1  # the workflow failed, or the database cannot be used
EXIT_USAGE = 2  # bad input: a flag, task name, parameter value, configuration or database path
EXIT_BUG = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


def _logs() -> Any:
    """:mod:`slothflow.cli._log` (renderers and read-only store opening), imported when a command needs it: it
    loads the database stack, which ``slothflow --help`` should not."""
    import importlib

    return importlib.import_module("slothflow.cli._log")


class _Group(click.Group):
    """Turns slothflow's own errors into a message and exit status instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (CLIError, ConfigError) as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            sys.exit(EXIT_USAGE)
        except SlothflowError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            sys.exit(EXIT_FAILED)
        except KeyboardInterrupt:
            err_console.print("interrupted", highlight=False)
            sys.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # a bug in slothflow: say so plainly; details on request
            if os.environ.get("SLOTHFLOW_DEBUG"):
                raise
            err_console.print(
                f"[bold red]internal error:[/] {type(exc).__name__}: {exc}\n"
                "This is a bug in slothflow; rerun with SLOTHFLOW_DEBUG=1 for the traceback and report it.",
                highlight=False,
            )
            sys.exit(EXIT_BUG)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="slothflow")
@click.option("-c", "--config", "config_dir", type=click.Path(file_okay=False), default=None,
              help="The project's .slothflow folder (default: found by walking up from here).")
@click.option("--db", "db_uri", default=None, help="Database URI, overriding the project's config.")
@click.pass_context
def cli(ctx: click.Context, config_dir: str | None, db_uri: str | None) -> None:
    """slothflow: lazy, incremental, reproducible Python workflows."""
    ctx.obj = {"config_dir": config_dir, "db_uri": db_uri}


def _config(ctx: click.Context, create: bool = True) -> Config:
    """The configuration a command uses; its database must exist (see :func:`_require_database`)."""
    obj = ctx.obj or {}
    folder = Path(obj["config_dir"]) if obj.get("config_dir") else None
    if folder is not None and not folder.is_dir():
        raise CLIError(f"config folder {folder} does not exist")
    db_uri = _db_option(ctx)
    if db_uri and folder is None and find_project_dir() is None:
        config = Config()  # --db alone names the database: no project folder is needed
    else:
        config = load_project_config(folder, create=create)
    if db_uri:
        config.read_dict({"backend": {"db_uri": db_uri}})
    _require_database(config, create_default=create, db_option=db_uri)
    return config


def _db_option(ctx: click.Context) -> str | None:
    """``--db``, with a relative SQLite path taken from the working directory, as any path on a command line."""
    uri = (ctx.find_root().obj or {}).get("db_uri")
    if not uri:
        return None
    from slothflow.store import sqlite_path

    path = sqlite_path(uri)
    if path is not None and not os.path.isabs(path):
        return uri.replace(path, str(Path(path).resolve()), 1)
    return str(uri)


def _require_database(config: Config, create_default: bool, db_option: str | None) -> None:
    """Only ``slothflow init`` creates a database at a path that was named (``--db``, ``[backend] db_uri``):
    a mistyped path is an error, not a new empty cache. ``run`` still creates the project's default database
    (``.slothflow/slothflow.db``), so a first run in a fresh folder needs no set-up."""
    from sqlalchemy.engine import make_url

    from slothflow.scheduler._scheduler import database_uri
    from slothflow.store import sqlite_path

    uri = database_uri(config)
    try:
        make_url(uri)
    except Exception as exc:
        where = "--db" if db_option else "config backend.db_uri"
        raise CLIError(f"{where} {uri!r} is not a database URI ({exc}); use sqlite:///PATH or "
                       "postgresql+psycopg://USER@HOST/DB") from exc
    path = sqlite_path(uri)
    if path is None or Path(path).exists():
        return
    if create_default and config.config_dir is not None and not db_option:
        if Path(path).resolve() == (config.config_dir / DB_FILENAME).resolve():
            return
    init = f"slothflow --db {db_option} init" if db_option else "slothflow init"
    raise CLIError(f"no database at {path}; run `{init}` to create one")


# ----------------------------------------------------------------------------------------------- run


def load_workflow(target: str) -> Any:
    """Import a workflow from a file path or a module name."""
    path = Path(target)
    if target.endswith(".py") or path.exists():
        if not path.is_file():
            raise CLIError(f"no such workflow file: {target}")
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        name = path.stem if path.stem.isidentifier() else "workflow"
        if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path.resolve()):
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path.resolve())
        if spec is None or spec.loader is None:
            raise CLIError(f"cannot import {target}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except SlothflowError:
            raise
        except Exception as exc:
            del sys.modules[name]
            raise CLIError(f"importing {target} failed:\n{user_traceback(exc)}") from exc
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and target.startswith(exc.name):
            raise CLIError(f"no such workflow file or module: {target}") from exc
        raise CLIError(f"importing {target} failed:\n{user_traceback(exc)}") from exc
    except Exception as exc:
        raise CLIError(f"importing {target} failed:\n{user_traceback(exc)}") from exc


def _module_tasks(module: Any) -> list[Task]:
    name = module.__name__
    return [t for t in get_task_registry() if t.func.__module__ == name]


def find_task(module: Any, name: str) -> Task:
    tasks = _module_tasks(module)
    registry = get_task_registry()
    exact = registry.get(name)
    if exact is not None:
        return exact
    matches = [t for t in tasks if t.name == name] or [t for t in registry if t.name == name]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(sorted(t.name for t in tasks)) or "none"
    if len(matches) > 1:
        raise CLIError(f"task name {name!r} is ambiguous: {', '.join(t.fullname for t in matches)}")
    close = (difflib.get_close_matches(name, sorted({t.name for t in tasks} | {t.fullname for t in tasks}), n=1)
             or difflib.get_close_matches(name, sorted(t.fullname for t in registry), n=1))
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise CLIError(f"no task {name!r} in {module.__name__}{hint} (tasks: {known}); "
                   "`slothflow run FILE help` lists them")


def _pairs(values: tuple[str, ...], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CLIError(f"{what} must look like key=value, not {item!r}")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        out[key] = value
    return out


def _context_file(path: str | None) -> dict[str, Any]:
    """The JSON object in ``--context-file``, or nothing."""
    if path is None:
        return {}
    from slothflow._config import read_json_object

    try:
        return read_json_object(path)
    except ValueError as exc:
        raise CLIError(f"--context-file: {exc}") from exc


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": []})
@click.argument("workflow", required=False)
@click.argument("task_name", metavar="TASK", required=False)
@click.option("--no-cache", is_flag=True, help="Do not reuse cached results (results are still recorded).")
@click.option("--dryrun", is_flag=True, help="Show what would run and what would be reused; run nothing.")
@click.option("-t", "--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Tag the execution.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Override an option of the task (e.g. -o executor=processes).")
@click.option("--context", "contexts", multiple=True, metavar="KEY.PATH=VALUE",
              help="Set a value in the execution context (read with get_context).")
@click.option("--context-file", "context_file", type=click.Path(dir_okay=False), default=None,
              help="A JSON file of execution context, merged over the config's (--context wins over it).")
@click.option("--pdb", is_flag=True, help="Open the debugger where a task failed.")
@click.option("--plain", is_flag=True, help="Plain log lines even on a terminal.")
@click.option("--explain", "explain_run", is_flag=True,
              help="After the run, say why each job ran instead of being reused.")
@click.option("-h", "--help", "show_help", is_flag=True, help="Show this message (after TASK: its parameters).")
@click.pass_context
def run(ctx: click.Context, workflow: str, task_name: str, no_cache: bool, dryrun: bool, tags: tuple[str, ...],
        options: tuple[str, ...], contexts: tuple[str, ...], context_file: str | None, pdb: bool, plain: bool,
        explain_run: bool, show_help: bool) -> None:
    """Run TASK of WORKFLOW (a .py file or a module); task parameters follow as --name value.

    `slothflow run WORKFLOW help` lists the tasks; `slothflow run WORKFLOW TASK --help` their parameters.
    """
    if workflow is None or (task_name is None and show_help):
        click.echo(ctx.get_help())
        return
    module = load_workflow(workflow)
    if task_name in (None, "help"):
        _print_tasks(module)
        return
    task = find_task(module, task_name)
    try:
        kwargs = parse_task_args(task, ctx.args + (["--help"] if show_help else []))
    except click.exceptions.Exit:
        return
    except click.UsageError as exc:
        raise CLIError(f"{exc.format_message()}\n(see `slothflow run {workflow} {task_name} --help`)") from exc
    overrides = _pairs(options, "-o/--option")
    tag_pairs = _pairs(tags, "-t/--tag")
    context = merge_contexts(_context_file(context_file), _nested(_pairs(contexts, "--context")))
    scheduler = Scheduler(config=_config(ctx))
    out = make_console()
    progress = Progress(err_console, live=False if plain else None)
    if not dryrun:
        scheduler.add_listener(progress)
    started = time.monotonic()
    try:
        if overrides:
            task = _with_options(task, overrides, scheduler)
        try:
            with progress:
                result = scheduler.run(
                    task(**kwargs),
                    dryrun=dryrun,
                    cache=not no_cache,
                    tags=tag_pairs,
                    context=context,
                    exec_argv=["slothflow", "run", *sys.argv[2:]] if sys.argv[1:2] == ["run"] else sys.argv,
                )
        except SlothflowError:
            raise
        except KeyboardInterrupt:
            err_console.print(
                f"[bold red]interrupted:[/] {progress.summary(time.monotonic() - started)} (execution "
                f"{str(scheduler.last_execution_id)[:8]}; finished results are kept for the next run)",
                highlight=False,
            )
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:
            err_console.print(user_traceback(exc), markup=False, highlight=False)
            err_console.print(
                f"[bold red]failed:[/] {progress.summary(time.monotonic() - started)} "
                f"(execution {str(scheduler.last_execution_id)[:8]}; `slothflow log` shows it)",
                highlight=False,
            )
            if explain_run:
                _print_explanations(scheduler)
            if pdb:
                import pdb as debugger

                debugger.post_mortem(exc.__traceback__)
            sys.exit(EXIT_FAILED)
        if explain_run and not dryrun:
            _print_explanations(scheduler)
    finally:
        scheduler.close()
    if isinstance(result, Plan):
        _print_plan(out, result)
        return
    err_console.print(
        f"[green]done:[/] {progress.summary(time.monotonic() - started)} "
        f"(execution {str(scheduler.last_execution_id)[:8]})",
        highlight=False,
    )
    out.print(result if isinstance(result, str) else repr(result), markup=False, highlight=False, soft_wrap=True)


def _with_options(task: Task, overrides: dict[str, Any], scheduler: Scheduler) -> Task:
    """``task`` with ``-o`` overrides, each checked now: an unknown option or a bad value is a usage error."""
    from slothflow.scheduler._options import known_options, resolve

    known = known_options(scheduler.executors)
    for key in overrides:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise CLIError(f"-o {key}=...: unknown task option {key!r}{hint} (options: {', '.join(sorted(known))})")
    executor = overrides.get("executor")
    if executor is not None and str(executor) not in scheduler.executors:
        names = sorted(scheduler.executors)
        close = difflib.get_close_matches(str(executor), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise CLIError(f"-o executor={executor}: no such executor{hint} (configured: {', '.join(names)})")
    task = task.options(**overrides)
    try:
        resolve(task, True, scheduler.env_policy, scheduler.executors)
    except TaskDefinitionError as exc:
        raise CLIError(f"-o/--option: {exc}") from exc
    return task


def _print_explanations(scheduler: Scheduler) -> None:
    if scheduler.last_execution_id is None:
        return
    explanations = scheduler.explain(scheduler.last_execution_id)
    if not explanations:
        err_console.print("explain: every call was reused from the cache", highlight=False)
        return
    _logs().render_explain(err_console, explanations, "text")  # grouped per task, each reason once


def _print_tasks(module: Any) -> None:
    console = make_console()
    console.print(f"Tasks in {module.__name__}:", highlight=False)
    for t in sorted(_module_tasks(module), key=lambda t: t.fullname):
        params = ", ".join(str(p) for p in t.signature.parameters.values())
        doc = (t.func.__doc__ or "").strip().splitlines()
        console.print(f"  {t.name}({params})" + (f"  - {doc[0]}" if doc else ""), markup=False, highlight=False)


def _print_plan(console: Console, plan: Plan) -> None:
    console.print(f"dry run: {len(plan.would_run)} call(s) would run, {len(plan.reused)} reused from the cache"
                  + ("" if plan.complete else " (calls below those that run are not known yet)"),
                  highlight=False)
    for planned in plan.would_run:
        console.print(f"  run    {planned.call}  ({planned.reason})", markup=False, highlight=False)
    for planned in plan.reused:
        console.print(f"  cached {planned.call}", markup=False, highlight=False)
    if plan.complete:
        console.print(f"result: {plan.result!r}", markup=False, highlight=False)


# ----------------------------------------------------------------------------------------------- log


@cli.command()
@click.argument("ident", required=False, metavar="[ID]")
@click.option("--file", "file_path", default=None, metavar="PATH_OR_URL",
              help="Where a file came from: the call that produced it, its code and inputs, recursively.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format.")
@click.option("-n", "--limit", default=20, show_default=True, help="How many executions to list.")
@click.pass_context
def log(ctx: click.Context, ident: str | None, file_path: str | None, fmt: str, limit: int) -> None:
    """Recent executions; with an execution ID (prefix), its job tree; with a job ID, that job."""
    scheduler = Scheduler(config=_config(ctx, create=False))
    try:
        with _logs().reading_store(scheduler) as store:
            if file_path is not None:
                _logs().render_lineage(make_console(), store, file_path, fmt)
            else:
                _logs().render_log(make_console(), store, ident, fmt, limit)
    finally:
        scheduler.close()


@cli.command()
@click.argument("ident", metavar="ID")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format.")
@click.pass_context
def explain(ctx: click.Context, ident: str, fmt: str) -> None:
    """Why a job (or every job of an execution) ran instead of being reused from the cache."""
    from slothflow.provenance.explain import explain as explain_records
    from slothflow.provenance.queries import NotFound

    scheduler = Scheduler(config=_config(ctx, create=False))
    try:
        try:
            with _logs().reading_store(scheduler) as store:
                explanations = explain_records(store.conn, ident)
        except NotFound as exc:
            raise CLIError(str(exc)) from exc
        _logs().render_explain(make_console(), explanations, fmt)
    finally:
        scheduler.close()


# ------------------------------------------------------------------------------------------ init, db


@cli.command()
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False))
@click.pass_context
def init(ctx: click.Context, directory: str) -> None:
    """Create a slothflow project (.slothflow/ with its config and database) in DIRECTORY.

    The database is the one the config names, or --db; init is the only command that creates one at a path
    that was given.
    """
    folder = Path(directory) / PROJECT_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / CONFIG_FILENAME
    if not config_path.exists():
        config_path.write_text(DEFAULT_CONFIG_TOML)
    config = load_project_config(folder)
    db_uri = _db_option(ctx)
    if db_uri:
        config.read_dict({"backend": {"db_uri": db_uri}})
    scheduler = Scheduler(config=config)
    try:
        scheduler.load()
        make_console().print(f"slothflow project ready: {config_path} (database {scheduler.db_uri})", highlight=False)
    finally:
        scheduler.close()


@cli.group()
def db() -> None:
    """Inspect and migrate the database."""


@db.command("info")
@click.pass_context
def db_info(ctx: click.Context) -> None:
    """Show the database URI, schema version and record counts."""
    from slothflow.provenance.queries import table_counts
    from slothflow.store import HEAD_REVISION

    scheduler = Scheduler(config=_config(ctx.parent or ctx, create=False))
    try:
        with _logs().reading_store(scheduler, require_current=False) as store:
            console = make_console()
            console.print(f"database: {scheduler.db_uri}", highlight=False)
            console.print(f"schema:   {store.schema_version()} (this slothflow: {HEAD_REVISION})", highlight=False)
            for name, count in table_counts(store.conn).items():
                console.print(f"  {name:<12} {count}", highlight=False)
    finally:
        scheduler.close()


@db.command("upgrade")
@click.argument("revision", default="head")
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Migrate the database schema up to REVISION (default: the newest)."""
    _migrate(ctx, "upgrade", revision)


@db.command("downgrade")
@click.argument("revision")
@click.pass_context
def db_downgrade(ctx: click.Context, revision: str) -> None:
    """Migrate the database schema down to REVISION ("base" removes every table)."""
    _migrate(ctx, "downgrade", revision)


def _migrate(ctx: click.Context, direction: str, revision: str) -> None:
    from slothflow._errors import StoreVersionError
    from slothflow.store._store import KNOWN_REVISIONS, Store

    class _Unchecked(Store):
        """The store without its schema check: migration commands are how a schema gets fixed."""

        def _check_schema(self, automigrate: bool | None) -> None:
            return None

    uri = Scheduler(config=_config(ctx.parent or ctx, create=False)).db_uri
    store = _Unchecked(uri)
    try:
        current = store.schema_version()
        if current is not None and current not in KNOWN_REVISIONS:
            raise StoreVersionError(
                f"the database {uri} has schema {current}, written by a newer slothflow; upgrade slothflow", uri
            )
        if direction == "upgrade":
            store.upgrade(revision)
        else:
            store.downgrade(revision)
        make_console().print(f"database {uri} is at schema {store.schema_version()}", highlight=False)
    finally:
        store.engine.dispose()


def main() -> None:
    cli(prog_name="slothflow")
