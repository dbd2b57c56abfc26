"""`stemsplit models`: list, inspect, download, verify, check and remove zoo models.

Parses options, calls `stemsplit.zoo`, renders (rich tables and progress bars, or
`--json`). No torch at module level; `implemented` checks import the factories lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from stemsplit.cli import app, common
from stemsplit.cli.common import Json, print_json, run_guarded
from stemsplit.cli.help import PlainCommand, PlainGroup


def _zoo(*names: str):
    """The zoo modules, through the API (the CLI's one door into the library)."""
    from stemsplit.api import zoo

    modules = zoo()
    found = [getattr(modules, name) for name in names]
    return found[0] if len(found) == 1 else found


models_app = typer.Typer(
    cls=PlainGroup,
    help="List, inspect, download, verify, check, measure and remove pretrained models.",
    no_args_is_help=False,
    invoke_without_command=True,
)
app.add_typer(models_app, name="models")

ModelDir = Annotated[
    Path | None,
    typer.Option("--model-dir", help="Model cache folder (default: STEMSPLIT_MODEL_DIR)."),
]
Offline = Annotated[bool, typer.Option("--offline", help="Never use the network.")]


def _human(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "kB") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def _sdr(card: Any) -> str:
    """Average SDR, or the one stem's SDR; `stemsplit models info` has the rest."""
    sdr = card.quality.get("sdr") or {}
    if "average" in sdr:
        return f"{sdr['average']:.2f}"
    if len(sdr) == 1:
        stem, value = next(iter(sdr.items()))
        return f"{value:.2f} {stem}"
    if sdr:
        return f"{sum(sdr.values()) / len(sdr):.2f} (mean)"
    return "-"


def _row(card: Any, model_dir: Path | None, implemented: dict[str, bool]) -> dict[str, Any]:
    fetch = _zoo("fetch")

    cached = [fetch.is_cached(spec, model_dir) for spec in card.files]
    missing = _missing()[card.architecture]
    bench = _zoo("bench").for_model(fetch.cache_dir(model_dir), card.name)
    return {
        "name": card.name,
        "aliases": list(card.aliases),
        "architecture": card.architecture,
        "stems": list(card.sources) + ([card.residual] if card.residual else []),
        "size": card.size,
        "sdr": card.quality.get("sdr") or {},
        "downloaded": all(cached),
        "partially_downloaded": any(cached) and not all(cached),
        "implemented": implemented[card.architecture],
        "runnable": implemented[card.architecture] and not missing,
        "missing": missing,
        "licence": card.licence,
        "licence_source": card.licence_source,
        "code_licence": card.code_licence,
        "bench": bench,
        "description": card.description,
    }


def _missing() -> dict[str, list[str]]:
    """Per architecture, the run-time modules (torch, onnxruntime...) this install lacks."""
    registry = _zoo("registry")

    return {name: entry.missing() for name, entry in registry.ARCHITECTURES.items()}


def _wants_json(ctx: typer.Context, json: bool) -> bool:
    """`--json` given to the subcommand or to `stemsplit models` before it."""
    return json or bool((ctx.obj or {}).get("json"))


def _implemented() -> dict[str, bool]:
    """Whether each architecture's code and torch are installed (found, not imported:
    listing cards must not pay torch's import)."""
    registry = _zoo("registry")

    return {name: entry.installed() for name, entry in registry.ARCHITECTURES.items()}


@models_app.callback()
def list_models(
    ctx: typer.Context,
    json: Json = False,
    model_dir: ModelDir = None,
    licence: Annotated[bool, typer.Option("--licence", "--license",
        help="Show each model's weights licence and where it was stated.")] = False,
) -> None:  # fmt: skip
    """List the zoo (name, architecture, stems, size, SDR, downloaded, runnable here)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"json": json}
        return
    catalog = _zoo("catalog")

    cards = run_guarded(catalog.list_cards)
    presets = run_guarded(catalog.list_presets)
    flags = _implemented()
    rows = [_row(card, model_dir, flags) for card in cards]
    if json:
        print_json(rows + [_preset_row(preset) for preset in presets])
        return
    if licence:
        _print_licences(rows)
        return
    _print_cards(cards, rows)
    if presets:
        _print_presets(presets)


def _print_licences(rows: list[dict[str, Any]]) -> None:
    """Name, the weights' licence (research-only, unknown...) and its source, per model."""
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("weights", no_wrap=True)
    table.add_column("stated where", overflow="fold")
    for row in rows:
        table.add_row(row["name"], row["licence"], row["licence_source"] or "-")
    common.out_console.print(table)
    common.out_console.print(
        "research-only and unknown weights allow neither --require-licence open nor "
        "commercial; code licences: `stemsplit models info NAME`"
    )


_FOUR = ["drums", "bass", "other", "vocals"]


def _stems_text(stems: list[str]) -> str:
    """Short: `4 stems` for drums/bass/other/vocals (any order), `4 stems+guitar,piano`,
    else the names, or their count where the names would not fit 20 columns."""
    extra = [s for s in stems if s not in _FOUR]
    if set(_FOUR) <= set(stems):
        text = "4 stems" + (f"+{','.join(extra)}" if extra else "")
    else:
        text = "/".join(stems)
    return text if len(text) <= 20 else f"{len(stems)} stems"


def _print_cards(cards: list[Any], rows: list[dict[str, Any]]) -> None:
    """One line per card, in 80 columns; a column that says the same on every row is
    left out (`stemsplit models info NAME` has every field)."""
    from rich.table import Table

    columns: dict[str, list[str]] = {
        "name": [row["name"] for row in rows],
        "family": [_family(row["architecture"]) for row in rows],
        "stems": [_stems_text(row["stems"]) for row in rows],
        "size": [_human(row["size"]) if row["size"] else "-" for row in rows],
        "SDR": [_sdr(card) for card in cards],
        "cached": ["yes" if r["downloaded"] else "partly" if r["partially_downloaded"]
                   else "-" for r in rows],
        "runs": ["yes" if r["runnable"] else "no" for r in rows],
        "s/min": [_bench_text(r["bench"]) for r in rows],
    }  # fmt: skip
    shown = [k for k, values in columns.items() if k == "name" or len(set(values)) > 1]
    if common.out_console.width < 100 and "family" in shown:  # 80 columns: stems, SDR first
        shown.remove("family")  # (`stemsplit models info NAME` names it)
    table = Table(box=None, header_style="bold", pad_edge=False)
    widths = {"name": (10, 26), "family": (6, 11), "stems": (7, 20), "size": (8, 8),
              "SDR": (5, 18), "cached": (6, 6), "runs": (4, 4), "s/min": (5, 12)}  # fmt: skip
    for key in shown:
        low, high = widths[key]
        table.add_column(key, no_wrap=key != "name", overflow="fold" if key == "name"
                         else "ellipsis", min_width=low, max_width=high)  # fmt: skip
    for index in range(len(rows)):
        table.add_row(*(columns[key][index] for key in shown))
    common.out_console.print(table)


def _bench_text(entries: list[dict[str, Any]]) -> str:
    """The fastest measurement (`stemsplit models bench`): seconds per minute of audio."""
    if not entries:
        return "-"
    best = entries[0]
    return f"{best['seconds_per_minute']:.1f} {best['device']}"


def _family(architecture: str) -> str:
    registry = _zoo("registry")
    return str(registry.get(architecture).family)


def _preset_row(preset: Any) -> dict[str, Any]:
    return {"name": preset.name, "aliases": list(preset.aliases), "architecture": "preset",
            "models": list(preset.models), "ensemble": preset.ensemble,
            "stems": list(preset.stems), "description": preset.description,
            "why": preset.why}  # fmt: skip


def _print_presets(presets: list[Any]) -> None:
    """Presets: their models, algorithm and the line on why each is built so."""
    from rich.table import Table

    table = Table(title="presets (-m NAME runs the ensemble)", box=None, header_style="bold")
    table.add_column("name", no_wrap=True)
    for column in ("models", "ensemble", "why"):
        table.add_column(column, overflow="fold")
    for preset in presets:
        models = [
            m if all(v == 1.0 for v in w.values()) else f"{m} {_weights_text(w)}"
            for m, w in zip(preset.models, preset.weights)
        ]  # fmt: skip
        table.add_row(preset.name, "\n".join(models), preset.ensemble, preset.why)
    common.out_console.print(table)


def _weights_text(weights: dict[str, float]) -> str:
    return "(" + ", ".join(f"{k}={v:g}" for k, v in weights.items()) + ")"


@models_app.command("info", cls=PlainCommand)
def info(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME")],
         json: Json = False, model_dir: ModelDir = None) -> None:  # fmt: skip
    """Everything the card says about NAME, and where its files are cached."""
    catalog, fetch = _zoo("catalog", "fetch")
    json = _wants_json(ctx, json)

    preset = run_guarded(catalog.get_preset, name)
    if preset is not None:
        if json:
            print_json(preset.as_dict())
            return
        for key in ("name", "description", "ensemble", "stems", "why"):
            value = getattr(preset, key)
            value = ", ".join(value) if isinstance(value, tuple) else value
            common.out_console.print(f"[bold]{key}[/]: {value or '-'}", soft_wrap=True)
        for model, weights in zip(preset.models, preset.weights):
            common.out_console.print(f"  {model} {_weights_text(weights)}")
        return
    card = run_guarded(catalog.get_card, name)
    data = card.as_dict()
    data["cache"] = [
        {"file": spec.name, "path": str(fetch.cached_path(spec, model_dir)),
         "downloaded": fetch.is_cached(spec, model_dir)}
        for spec in card.files
    ]  # fmt: skip
    data["implemented"] = _implemented()[card.architecture]
    data["downloaded"] = all(entry["downloaded"] for entry in data["cache"])
    data["missing"] = _missing()[card.architecture]
    data["runnable"] = data["implemented"] and not data["missing"]
    if json:
        print_json(data)
        return
    from rich.markup import escape

    fields = {
        "name": card.name,
        "aliases": ", ".join(card.aliases) or "-",
        "architecture": f"{card.architecture} ({_family(card.architecture)})",
        "stems": ", ".join(card.sources) + (f" (+ {card.residual}: mixture minus the rest)"
                                            if card.residual else ""),
        "sample rate": f"{card.samplerate} Hz",
        "description": card.description or "-",
        "licence": f"{card.licence} (weights)" + (f"; code {card.code_licence}"
                                                   if card.code_licence else ""),
        "licence source": card.licence_source or "-",
        "implemented": "yes (stemsplit has this architecture's code)" if data["implemented"]
        else "no (its code is not in this install)",
        "downloaded": _downloaded_text(data["cache"]),
        "runnable here": _runnable_text(card, data),
    }  # fmt: skip
    sdr = card.quality.get("sdr") or {}
    if sdr:
        scores = ", ".join(f"{stem} {value:.2f}" for stem, value in sdr.items())
        where = card.quality.get("dataset")
        fields["SDR (dB)"] = scores + (f" on {where}" if where else "")
    if card.quality.get("source"):
        fields["source"] = card.quality["source"]
    width = max(map(len, fields)) + 1
    for key, value in fields.items():
        common.out_console.print(f"[bold]{key + ':':<{width}}[/] {escape(str(value))}")
    for spec, cached in zip(card.files, data["cache"]):
        check = spec.sha256 or (f"prefix {spec.sha256_prefix}" if spec.sha256_prefix
                                else "none published (recorded at first download)")
        state = "downloaded" if cached["downloaded"] else "not downloaded"
        common.out_console.print(f"\n[bold]file[/] {escape(spec.name)} ({_human(spec.size)}, "
                                 f"{state})")  # fmt: skip
        common.out_console.print(f"  url:    {escape(spec.url)}", soft_wrap=True)
        common.out_console.print(f"  sha256: {check}", soft_wrap=True)
        common.out_console.print(f"  cache:  {escape(cached['path'])}", soft_wrap=True)


def _runnable_text(card: Any, data: dict[str, Any]) -> str:
    """yes / yes once downloaded / no, with what to install."""
    if data["runnable"]:
        return "yes" if data["downloaded"] else "yes, once its files are downloaded"
    if not data["implemented"]:
        return "no: this install lacks its code"
    extra = _zoo("registry").get(card.architecture).extra
    how = f"pip install 'stemsplit-cli[{extra}]'" if extra else "pip install torch"
    return f"no: needs {', '.join(data['missing'])} ({how})"


def _downloaded_text(cache: list[dict[str, Any]]) -> str:
    count = sum(entry["downloaded"] for entry in cache)
    if count == len(cache):
        return "yes"
    return f"{'partly' if count else 'no'} ({count} of {len(cache)} files; the first run fetches them)"


class _DownloadBars:
    """A rich progress bar per file, fed by the library's DownloadProgress events."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )  # fmt: skip

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(), console=common.err_console,
        )  # fmt: skip
        self.tasks: dict[str, Any] = {}

    def __call__(self, event: Any) -> None:
        task = self.tasks.get(event.file)
        if task is None:
            task = self.tasks[event.file] = self.progress.add_task(event.file, total=event.total)
        self.progress.update(task, completed=event.done, total=event.total)


@models_app.command("download", cls=PlainCommand)
def download(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(metavar="NAME", help="Model names.")] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every model in the zoo.")] = False,
    json: Json = False,
    model_dir: ModelDir = None,
    offline: Offline = False,
) -> None:
    """Fetch and verify the files of NAME... (or --all) into the cache."""
    from stemsplit.errors import UsageError
    catalog, fetch = _zoo("catalog", "fetch")
    json = _wants_json(ctx, json)

    def work() -> list[dict[str, Any]]:
        if all_models == bool(names):
            raise UsageError("give model names or --all (not both)")
        cards = catalog.list_cards() if all_models else [
            card for n in names or [] for card in _cards_of(n)
        ]  # fmt: skip
        bars = None if json else _DownloadBars()
        done = []
        for card in cards:
            if bars is not None:
                with bars.progress:
                    paths = fetch.ensure_files(
                        card, offline=offline or None, model_dir=model_dir, progress=bars
                    )
            else:
                paths = fetch.ensure_files(card, offline=offline or None, model_dir=model_dir)
            done.append({"name": card.name, "files": [str(p) for p in paths]})
        return done

    done = run_guarded(work)
    if json:
        print_json(done)
        return
    for item in done:
        common.out_console.print(f"{item['name']}: ready ({len(item['files'])} file(s))")


def _cards_of(name: str) -> list[Any]:
    """The card of NAME, or the cards of a preset's models."""
    catalog = _zoo("catalog")

    preset = catalog.get_preset(name)
    if preset is None:
        return [catalog.get_card(name)]
    return [catalog.get_card(model) for model in preset.models]


@models_app.command("verify", cls=PlainCommand)
def verify(ctx: typer.Context, json: Json = False, model_dir: ModelDir = None) -> None:
    """Re-hash every cached model file; exit 1 if any does not match its card."""
    catalog, fetch = _zoo("catalog", "fetch")
    json = _wants_json(ctx, json)

    cards = run_guarded(catalog.list_cards)
    results = [
        r for r in run_guarded(fetch.verify_cached, cards, model_dir) if r.status != "missing"
    ]
    bad = [r for r in results if r.status != "ok"]
    if json:
        print_json([{"model": r.model, "file": r.file, "path": str(r.path), "status": r.status,
                     "sha256": r.sha256} for r in results])  # fmt: skip
    else:
        for r in results:
            colour = "green" if r.status == "ok" else "red"
            common.out_console.print(f"[{colour}]{r.status}[/] {r.model}: {r.path}", soft_wrap=True)
        if not results:
            common.out_console.print("no model files in the cache")
    if bad:
        common.err_console.print(
            f"[bold red]error:[/] {len(bad)} cached file(s) do not match their checksum: "
            "`stemsplit models rm NAME` and download again"
        )
        raise typer.Exit(1)


@models_app.command("check", cls=PlainCommand)
def check(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(metavar="[NAME]...",
                                                      help="Models (default: every one).")] = None,
    json: Json = False,
) -> None:  # fmt: skip
    """Whether each location of each file still serves it (default: every model).

    A 1-byte request per location (STEMSPLIT_MIRROR alone when set): reachable, dead or
    size mismatch. Exit 1 when a model has a file that no location serves."""
    catalog, fetch = _zoo("catalog", "fetch")
    json = _wants_json(ctx, json)

    def work() -> list[Any]:
        cards = [card for n in names for card in _cards_of(n)] if names else catalog.list_cards()
        return list(fetch.check_locations(cards))

    results = run_guarded(work)
    if json:
        print_json([{"model": r.model, "file": r.file, "reachable": r.reachable,
                     "locations": [vars(location) for location in r.locations]}
                    for r in results])  # fmt: skip
    else:
        from rich.markup import escape

        colours = {"reachable": "green", "dead": "red", "size mismatch": "yellow"}
        for result in results:
            common.out_console.print(f"[bold]{result.model}[/] {escape(result.file)}")
            for where in result.locations:
                common.out_console.print(
                    f"  [{colours[where.status]}]{where.status}[/] {escape(where.url)} "
                    f"({escape(where.detail)})", soft_wrap=True)  # fmt: skip
    unserved = [r for r in results if not r.reachable]
    if unserved:
        models = sorted({r.model for r in unserved})
        files = ", ".join(f"{r.model}: {r.file}" for r in unserved)
        common.err_console.print(
            f"[bold red]error:[/] no location serves {files}; {len(models)} model(s) cannot "
            f"be downloaded (set {fetch.MIRROR_ENV}=URL to a server with the file)",
            soft_wrap=True,
        )
        raise typer.Exit(1)


@models_app.command("bench", cls=PlainCommand)
def bench(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="Models to measure.")],
    seconds: Annotated[float, typer.Option(help="Seconds of audio to time.")] = 30.0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda[:N] or mps.")] = "auto",
    precision: Annotated[str, typer.Option(help="fp32, bf16 or fp16.")] = "fp32",
    json: Json = False,
    model_dir: ModelDir = None,
    offline: Offline = False,
) -> None:
    """Time and memory of each NAME on this machine, kept for `models` and --dry-run.

    Seconds per minute of audio once loaded, the load time and the peak memory, at the
    default settings; downloads the models first if needed."""
    from stemsplit.api import bench_model
    from stemsplit.errors import UsageError

    json = _wants_json(ctx, json)
    if seconds <= 0:
        run_guarded(_raise, UsageError(f"--seconds must be positive, not {seconds}"))
    cards = [card for name in names for card in run_guarded(_cards_of, name)]
    results = [run_guarded(bench_model, card.name, seconds=seconds, device=device,
                           precision=precision, model_dir=model_dir,
                           offline=offline or None) for card in cards]  # fmt: skip
    if json:
        print_json([vars(result) for result in results])
        return
    for r in results:
        common.out_console.print(
            f"{r.model} ({r.device}, {r.precision}, {r.threads} threads): "
            f"{r.seconds_per_minute:.1f} s per minute of audio, loaded in "
            f"{r.load_seconds:.1f} s, peak memory {r.peak_rss_mb:.0f} MB")  # fmt: skip


def _raise(error: Exception) -> None:
    raise error


@models_app.command("rm", cls=PlainCommand)
def remove(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(metavar="NAME", help="Model names.")],
    json: Json = False,
    model_dir: ModelDir = None,
) -> None:
    """Delete the cached files of each NAME."""
    catalog, fetch = _zoo("catalog", "fetch")
    json = _wants_json(ctx, json)

    cards = [run_guarded(catalog.get_card, name) for name in names]
    removed = [str(p) for card in cards for p in fetch.remove_cached(card, model_dir)]
    if json:
        print_json({"removed": removed})
        return
    for path in removed:
        common.out_console.print(f"removed {path}", soft_wrap=True)
    if not removed:
        common.out_console.print("nothing to remove")


@models_app.command("path", cls=PlainCommand)
def path(ctx: typer.Context, json: Json = False, model_dir: ModelDir = None) -> None:
    """Print the model cache folder."""
    fetch = _zoo("fetch")
    json = _wants_json(ctx, json)

    folder = fetch.cache_dir(model_dir)
    if json:
        print_json({"model_dir": str(folder)})
    else:
        typer.echo(str(folder))
