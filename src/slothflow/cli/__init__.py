"""The ``slothflow`` command: run workflows, read their provenance, manage the database.

This package is the only place that prints. Errors that slothflow raises become one clear message and a
non-zero exit code; a task's own error is shown with the user's frames only.
"""

from __future__ import annotations

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

from slothflow._config import (
    CONFIG_FILENAME,
    DEFAULT_CONFIG_TOML,
    PROJECT_DIRNAME,
    Config,
    find_project_dir,
    load_project_config,
)
from slothflow._errors import CLIError, SlothflowError
from slothflow.cli._console import make_console
from slothflow.cli._display import Progress
from slothflow.cli._errors import user_traceback
from slothflow.cli._log import reading_store, render_explain, render_lineage, render_log
from slothflow.cli._params import parse_task_args
from slothflow.model._task import Task, get_task_registry
from slothflow.scheduler import Plan, Scheduler

err_console = make_console(stderr=True)


class _Group(click.Group):
    """Turns slothflow's own errors into a message and exit status instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CLIError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            sys.exit(2)
        except SlothflowError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            sys.exit(1)
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a bug in slothflow: say so plainly; details on request
            if os.environ.get("SLOTHFLOW_DEBUG"):
                raise
            err_console.print(
                f"[bold red]internal error:[/] {type(exc).__name__}: {exc}\n"
                "This is a bug in slothflow; rerun with SLOTHFLOW_DEBUG=1 for the traceback and report it.",
                highlight=False,
            )
            sys.exit(3)


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
    obj = ctx.obj or {}
    folder = Path(obj["config_dir"]) if obj.get("config_dir") else None
    if folder is not None and not folder.is_dir():
        raise CLIError(f"config folder {folder} does not exist")
    if obj.get("db_uri") and folder is None and find_project_dir() is None:
        config = Config()  # --db alone names the database: no project folder is needed
    else:
        config = load_project_config(folder, create=create)
    if obj.get("db_uri"):
        config.read_dict({"backend": {"db_uri": obj["db_uri"]}})
    return config


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
    raise CLIError(f"no task {name!r} in {module.__name__} (tasks: {known}); `slothflow run FILE help` lists them")


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
@click.option("--pdb", is_flag=True, help="Open the debugger where a task failed.")
@click.option("--plain", is_flag=True, help="Plain log lines even on a terminal.")
@click.option("--explain", "explain_run", is_flag=True,
              help="After the run, say why each job ran instead of being reused.")
@click.option("-h", "--help", "show_help", is_flag=True, help="Show this message (after TASK: its parameters).")
@click.pass_context
def run(ctx: click.Context, workflow: str, task_name: str, no_cache: bool, dryrun: bool, tags: tuple[str, ...],
        options: tuple[str, ...], contexts: tuple[str, ...], pdb: bool, plain: bool, explain_run: bool,
        show_help: bool) -> None:
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
    if options:
        task = task.options(**_pairs(options, "-o/--option"))
    config = _config(ctx)
    scheduler = Scheduler(config=config)
    out = make_console()
    progress = Progress(err_console, live=False if plain else None)
    if not dryrun:
        scheduler.add_listener(progress)
    started = time.monotonic()
    try:
        try:
            with progress:
                result = scheduler.run(
                    task(**kwargs),
                    dryrun=dryrun,
                    cache=not no_cache,
                    tags=_pairs(tags, "-t/--tag"),
                    context=_nested(_pairs(contexts, "--context")),
                    exec_argv=["slothflow", "run", *sys.argv[2:]] if sys.argv[1:2] == ["run"] else sys.argv,
                )
        except SlothflowError:
            raise
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
            sys.exit(1)
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


def _print_explanations(scheduler: Scheduler) -> None:
    if scheduler.last_execution_id is None:
        return
    explanations = scheduler.explain(scheduler.last_execution_id)
    if not explanations:
        err_console.print("explain: every call was reused from the cache", highlight=False)
    for item in explanations:
        err_console.print(str(item), markup=False, highlight=False)


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
        with reading_store(scheduler) as store:
            if file_path is not None:
                render_lineage(make_console(), store, file_path, fmt)
            else:
                render_log(make_console(), store, ident, fmt, limit)
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
            with reading_store(scheduler) as store:
                explanations = explain_records(store.conn, ident)
        except NotFound as exc:
            raise CLIError(str(exc)) from exc
        render_explain(make_console(), explanations, fmt)
    finally:
        scheduler.close()


# ------------------------------------------------------------------------------------------ init, db


@cli.command()
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False))
def init(directory: str) -> None:
    """Create a slothflow project (.slothflow/ with its config and database) in DIRECTORY."""
    folder = Path(directory) / PROJECT_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / CONFIG_FILENAME
    if not config_path.exists():
        config_path.write_text(DEFAULT_CONFIG_TOML)
    scheduler = Scheduler(config=load_project_config(folder))
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
        with reading_store(scheduler, require_current=False) as store:
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

        def _check_schema(self, automigrate: bool) -> None:
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
