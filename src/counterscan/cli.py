"""The command line: a thin mirror of the library. Errors become one line on stderr and an exit code."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict
from enum import StrEnum, auto
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from counterscan.config import CONFIG_FILE_NAME, Settings
from counterscan.errors import (
    AuthenticationError,
    CounterscanError,
    PermissionDeniedError,
    TrainingRefusedError,
    UserError,
)
from counterscan.records import (
    ASSET_KINDS,
    CASE_STATUSES,
    DELIVERY_STATUSES,
    ROLES,
    SUSPECT_STATUSES,
    VERDICTS,
    Evidence,
    Member,
    Suspect,
)


class _LazyModule:
    """A module imported when one of its attributes is first read."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


if TYPE_CHECKING:
    from counterscan.ranking import training
    from counterscan.registry import assets, brands, members
    from counterscan.review import export as report
    from counterscan.review import queue as review
    from counterscan.store import BlobStore, Store
    from counterscan.store.migrations import ScoredBrand
else:
    # Imported on first use: `counterscan --help` must not pay for OpenCV, FAISS and scikit-learn.
    assets, brands, members, report, review, training = (
        _LazyModule(f"counterscan.{name}")
        for name in (
            "registry.assets",
            "registry.brands",
            "registry.members",
            "review.export",
            "review.queue",
            "ranking.training",
        )
    )


class _ErrorsToExitCodes(TyperGroup):
    """Every expected failure becomes ``error: ...`` on stderr and the error's exit code.

    Flags (``--force``, ``--help``) take no value: their help shows no ``<bool>`` type beside them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_flags(self)

    def get_params(self, ctx: Any) -> Any:
        params = super().get_params(ctx)
        _plain_flags(self, params)  # typer adds the completion flags after the group is made
        return params

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click.Context has no public name
        try:
            return super().invoke(ctx)
        except CounterscanError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None


def _plain_flags(command: Any, params: Sequence[Any] | None = None) -> None:
    """Give every flag of ``command`` and its sub-commands (``--help`` included) an empty metavar:
    typer would print ``<bool>`` as if the flag took a value."""
    from typer._click import Context

    for param in params if params is not None else [*command.params, command.get_help_option(Context(command))]:
        if param is not None and getattr(param, "is_bool_flag", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _plain_flags(sub)


app = typer.Typer(cls=_ErrorsToExitCodes, no_args_is_help=True, add_completion=True, help=__doc__)
members_app = typer.Typer(no_args_is_help=True, help="Alliance members (brand owners).")
brands_app = typer.Typer(no_args_is_help=True, help="Brands and their profiles.")
assets_app = typer.Typer(no_args_is_help=True, help="Reference assets: logos and official product photos.")
review_app = typer.Typer(no_args_is_help=True, help="The analysts' review queue.")
quarantine_app = typer.Typer(no_args_is_help=True, help="Records that could not be ingested.")
app.add_typer(members_app, name="members")
app.add_typer(brands_app, name="brands")
app.add_typer(assets_app, name="assets")
app.add_typer(review_app, name="review")
app.add_typer(quarantine_app, name="quarantine")
signals_app = typer.Typer(no_args_is_help=True, help="Share brands' image hashes between members, without pictures.")
app.add_typer(signals_app, name="signals")


# The choices of options, which typer checks (exit 2 with the allowed values) and lists in --help.
# Each is made from the library's own vocabulary; mypy cannot see members made from a tuple.
RoleChoice = StrEnum("RoleChoice", [(role, role) for role in ROLES])  # type: ignore[misc]
AssetKindChoice = StrEnum("AssetKindChoice", [(kind, kind) for kind in ASSET_KINDS])  # type: ignore[misc]
VerdictChoice = StrEnum("VerdictChoice", [(label, label) for label in VERDICTS])  # type: ignore[misc]
SuspectStatusChoice = StrEnum("SuspectStatusChoice", [(status, status) for status in SUSPECT_STATUSES])  # type: ignore[misc]
DeliveryStatusChoice = StrEnum("DeliveryStatusChoice", [(status, status) for status in DELIVERY_STATUSES])  # type: ignore[misc]


class ExecutorChoice(StrEnum):
    """Where a scan's partitions are matched: a local process pool, or a Dask cluster."""

    LOCAL = auto()
    DASK = auto()


class ListFormat(StrEnum):
    """How a listing command prints its rows."""

    TABLE = auto()
    JSON = auto()


class QueueFormat(StrEnum):
    """How the review queue is printed: also CSV, with the export's columns."""

    TABLE = auto()
    JSON = auto()
    CSV = auto()


class ExportFormat(StrEnum):
    """What `export` writes: CSV and JSON for takedown tools, an HTML evidence report for people."""

    CSV = auto()
    JSON = auto()
    HTML = auto()


ListFormatOption = Annotated[ListFormat, typer.Option("--format", help="An aligned table, or JSON.")]
QueueFormatOption = Annotated[
    QueueFormat, typer.Option("--format", help="An aligned table, or JSON or CSV with the export's columns.")
]


def emit(
    rows: Sequence[dict[str, Any]],
    fmt: ListFormat | QueueFormat,
    columns: Sequence[str],
    widths: dict[str, int] | None = None,
) -> None:
    """Print ``rows`` as --format asks: a table of ``columns`` (cut to ``widths``), JSON, or CSV of ``columns``."""
    if fmt.value == "json":
        typer.echo(json.dumps(list(rows), indent=2, ensure_ascii=False, default=str))
    elif fmt.value == "csv":
        typer.echo(report.render_csv_rows(rows, columns), nl=False)
    else:
        typer.echo(_table(rows, columns, widths))


def command_paths() -> Iterator[tuple[str, ...]]:
    """Every command and group of the CLI as its words after ``counterscan``, depth first; ``()`` is the program."""

    def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield path
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                if not sub.hidden:
                    yield from walk(sub, (*path, name))

    return walk(typer.main.get_command(app), ())


def _print_version(value: bool) -> None:
    if value:
        from counterscan import __version__

        typer.echo(f"counterscan {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    db: Annotated[str | None, typer.Option(help="Database URL (default: SQLite file under --home).")] = None,
    home: Annotated[Path | None, typer.Option(help="Working folder (default ./.counterscan).")] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """counterscan: find counterfeit marketplace listings that re-use brands' logos and photos."""
    ctx.obj = Settings.load(home=home, db_url=db)


def _settings(ctx: typer.Context) -> Settings:
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    return settings


def _cold_start_scores(evidence: Sequence[Evidence]) -> Sequence[ScoredBrand]:
    """The ranker's cold-start scorer, imported only when an old store is upgraded (scikit-learn behind it)."""
    from counterscan.ranking.ranker import cold_start_scores

    return cold_start_scores(evidence)


@contextmanager
def _store(ctx: typer.Context) -> Iterator[tuple[Settings, Store, BlobStore]]:
    from counterscan.store import BlobStore, Store

    settings = _settings(ctx)
    store = Store.open(settings.database_url, upgrade_scorer=_cold_start_scores)
    try:
        yield settings, store, BlobStore(settings.blob_dir)
    finally:
        store.close()


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str], widths: dict[str, int] | None = None) -> str:
    limits = widths or {}

    def cell(value: Any, column: str) -> str:
        text = "" if value is None else str(value)
        limit = limits.get(column)
        return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"

    cells = [[cell(row.get(column), column) for column in columns] for row in rows]
    sizes = [max([len(column)] + [len(line[i]) for line in cells]) for i, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(sizes[i]) for i, column in enumerate(columns)).rstrip()]
    lines += ["  ".join(value.ljust(sizes[i]) for i, value in enumerate(line)).rstrip() for line in cells]
    return "\n".join(lines)


@app.command()
def init(ctx: typer.Context) -> None:
    """Create the working folder, the database schema, and a commented config.toml (never overwritten)."""
    from counterscan.config import config_template

    with _store(ctx) as (settings, _, blobs):
        blobs.root.mkdir(parents=True, exist_ok=True)
        typer.echo(f"ready: {settings.database_url}")
        config = settings.home / CONFIG_FILE_NAME
        if not config.exists():
            config.write_text(config_template(), encoding="utf-8")
            typer.echo(f"wrote {config}: every setting with its default and cost, commented out")


ActingAs = Annotated[str | None, typer.Option("--as", help="Act as this member (authenticated by --key).")]
ApiKey = Annotated[
    str | None,
    typer.Option("--key", envvar="COUNTERSCAN_API_KEY", help="The acting member's API key.", show_default=False),
]


ExpiresIn = Annotated[
    str | None, typer.Option(help="The key expires after this long: 90d, 12h, 30m, 2w (default: never).")
]


def _authenticate(ctx: typer.Context, store: Store, name: str, key: str | None) -> Member:
    """The member ``name`` if ``key`` is its live key; failures are throttled and audited."""
    policy = members.AuthPolicy.of(_settings(ctx))
    return members.authenticate(store, name, key, client=members.cli_client(), policy=policy)


def _analyst(ctx: typer.Context, store: Store, acting_as: str | None, key: str | None) -> Member:
    """The authenticated analyst: by --as and --key, or by the key alone."""
    if acting_as is not None:
        actor = _authenticate(ctx, store, acting_as, key)
    else:
        if not key:
            raise AuthenticationError("this needs an analyst's API key (--key or COUNTERSCAN_API_KEY)")
        policy = members.AuthPolicy.of(_settings(ctx))
        actor = members.authenticate_key(store, key, client=members.cli_client(), policy=policy)
    members.require_analyst(actor)
    return actor


AnalystName = Annotated[
    str | None,
    typer.Option(
        "--as",
        envvar="COUNTERSCAN_ANALYST",
        help="The analyst acting (authenticated by --key; default: whoever the key belongs to).",
    ),
]


@members_app.command("add")
def members_add(
    ctx: typer.Context,
    name: str,
    role: Annotated[
        RoleChoice,
        typer.Option(help="member (owns brands), analyst (reads all, decides) or marketplace (checks listings)."),
    ] = RoleChoice["member"],
    expires_in: ExpiresIn = None,
    acting_as: Annotated[
        str | None, typer.Option("--as", help="An analyst adding another analyst (authenticated by --key).")
    ] = None,
    key: ApiKey = None,
) -> None:
    """Add an alliance member or analyst and print its API key (shown only this once).

    Adding an analyst needs an existing analyst's key, except for the first analyst of a store.
    """
    with _store(ctx) as (_, store, _blobs):
        actor: Member | None = None
        adds_analyst = role.value == "analyst"
        if acting_as is not None or (adds_analyst and store.has_analyst()):
            actor = _analyst(ctx, store, acting_as, key)
        if adds_analyst:
            members.may_add_analyst(store, actor)
        created = members.add_member(
            store,
            name,
            role=role.value,
            actor=actor.name if actor else members.OPERATOR,
            expires_in=members.parse_duration(expires_in) if expires_in else None,
        )
    typer.echo(f"{created.member.role} {created.member.name} added; API key (store it now, it is not shown again):")
    typer.echo(created.api_key)


keys_app = typer.Typer(no_args_is_help=True, help="Members' API keys: list (prefixes only), add, rotate, revoke.")
members_app.add_typer(keys_app, name="keys")


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    member: Annotated[str | None, typer.Option(help="Only this member's keys.")] = None,
    fmt: ListFormatOption = ListFormat.TABLE,
) -> None:
    """Every key's prefix, owner, status and dates (never the key itself)."""
    with _store(ctx) as (_, store, _blobs):
        rows = [asdict(found) for found in store.api_keys(member)]
    emit(rows, fmt, ("key_id", "member", "prefix", "status", "created_at", "expires_at", "revoked_at"))


def _key_manager(ctx: typer.Context, store: Store, member: str, acting_as: str | None, key: str | None) -> Member:
    # A member manages its own keys, analysts everyone's: default to acting as the member.
    return _authenticate(ctx, store, acting_as or member, key)


@keys_app.command("add")
def keys_add(
    ctx: typer.Context,
    member: str,
    expires_in: ExpiresIn = None,
    acting_as: ActingAs = None,
    key: ApiKey = None,
) -> None:
    """Another key for MEMBER (its other keys stay valid); printed once."""
    _issue_key(ctx, member, expires_in, acting_as, key, revoke_others=False)


@keys_app.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    member: str,
    expires_in: ExpiresIn = None,
    acting_as: ActingAs = None,
    key: ApiKey = None,
) -> None:
    """A new key for MEMBER; all its other keys are revoked at once. Printed once."""
    _issue_key(ctx, member, expires_in, acting_as, key, revoke_others=True)
    typer.echo(f"the other keys of {member} are revoked", err=True)


def _issue_key(
    ctx: typer.Context,
    member: str,
    expires_in: str | None,
    acting_as: str | None,
    key: str | None,
    *,
    revoke_others: bool,
) -> None:
    with _store(ctx) as (_, store, _blobs):
        actor = _key_manager(ctx, store, member, acting_as, key)
        duration = members.parse_duration(expires_in) if expires_in else None
        made = members.issue_key(store, actor, member, expires_in=duration, revoke_others=revoke_others)
    expiry = f", expires {made.info.expires_at}" if made.info.expires_at else ""
    typer.echo(f"key {made.info.prefix} for {made.info.member}{expiry} (store it now, it is not shown again):")
    typer.echo(made.api_key)


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    selector: Annotated[str, typer.Argument(help="The key's prefix (cs_1a2b3c4d) or its key_id.")],
    acting_as: ActingAs = None,
    key: ApiKey = None,
) -> None:
    """Revoke a key: refused from the next request on, by the API and the CLI."""
    with _store(ctx) as (_, store, _blobs):
        found = store.find_api_key(selector)
        actor = _key_manager(ctx, store, found.member, acting_as, key)
        revoked = members.revoke_key(store, actor, selector)
    typer.echo(f"revoked key {revoked.prefix} of {revoked.member}")


@members_app.command("list")
def members_list(ctx: typer.Context) -> None:
    """List members."""
    with _store(ctx) as (_, store, _blobs):
        typer.echo(_table([asdict(member) for member in store.members()], ("member_id", "name", "role")))


@brands_app.command("add")
def brands_add(
    ctx: typer.Context,
    name: str,
    member: Annotated[str, typer.Option(help="The member that owns the brand.")],
    keyword: Annotated[list[str] | None, typer.Option(help="A trademark word to look for; repeatable.")] = None,
    alias: Annotated[list[str] | None, typer.Option(help="Another name of the brand; repeatable.")] = None,
    lookalike: Annotated[list[str] | None, typer.Option(help="A misspelling to catch; repeatable.")] = None,
    msrp: Annotated[float | None, typer.Option(help="Default manufacturer's suggested retail price.")] = None,
    currency: Annotated[str | None, typer.Option(help="ISO 4217 currency of --msrp.")] = None,
    authorised_seller: Annotated[list[str] | None, typer.Option(help="A seller id never flagged; repeatable.")] = None,
    category: Annotated[list[str] | None, typer.Option(help="A product category; repeatable.")] = None,
    acting_as: ActingAs = None,
    key: ApiKey = None,
) -> None:
    """Register a brand owned by --member (who must be the one acting)."""
    with _store(ctx) as (_, store, _blobs):
        actor = _authenticate(ctx, store, acting_as or member, key)
        if actor.name != member:
            raise PermissionDeniedError(f"{actor.name!r} may not register brands for {member!r}")
        brand = brands.add_brand(
            store,
            actor,
            name,
            keywords=keyword or [],
            aliases=alias or [],
            lookalikes=lookalike or [],
            msrp=msrp,
            currency=currency,
            authorised_sellers=authorised_seller or [],
            categories=category or [],
        )
    typer.echo(f"brand {brand.name} added (id {brand.brand_id}, member {brand.member})")


@brands_app.command("update")
def brands_update(
    ctx: typer.Context,
    name: str,
    add_alias: Annotated[list[str] | None, typer.Option(help="Repeatable.")] = None,
    remove_alias: Annotated[list[str] | None, typer.Option(help="Repeatable.")] = None,
    add_lookalike: Annotated[list[str] | None, typer.Option(help="Repeatable.")] = None,
    remove_lookalike: Annotated[list[str] | None, typer.Option(help="Repeatable.")] = None,
    add_seller: Annotated[list[str] | None, typer.Option(help="Authorised seller id; repeatable.")] = None,
    remove_seller: Annotated[list[str] | None, typer.Option(help="Repeatable.")] = None,
    add_category: Annotated[list[str] | None, typer.Option(help="Repeatable.")] = None,
    remove_category: Annotated[list[str] | None, typer.Option(help="Repeatable.")] = None,
    product: Annotated[str | None, typer.Option(help="Set this product's MSRP (with --msrp and --currency).")] = None,
    remove_product: Annotated[str | None, typer.Option(help="Forget this product's MSRP.")] = None,
    msrp: Annotated[float | None, typer.Option(help="The brand's (or --product's) MSRP.")] = None,
    currency: Annotated[str | None, typer.Option(help="ISO 4217 currency of --msrp.")] = None,
    acting_as: ActingAs = None,
    key: ApiKey = None,
) -> None:
    """Change a brand's profile (only its owner may)."""
    with _store(ctx) as (_, store, _blobs):
        actor = _authenticate(ctx, store, acting_as or store.brand(name).member, key)
        if product is not None:
            if msrp is None or currency is None:
                raise UserError("--product needs --msrp and --currency")
            brands.set_product(store, actor, name, product, msrp=msrp, currency=currency)
            msrp = currency = None
        if remove_product is not None:
            brands.remove_product(store, actor, name, remove_product)
        changes = brands.BrandChanges(
            add={
                "aliases": add_alias or [],
                "lookalikes": add_lookalike or [],
                "authorised_sellers": add_seller or [],
                "categories": add_category or [],
            },
            remove={
                "aliases": remove_alias or [],
                "lookalikes": remove_lookalike or [],
                "authorised_sellers": remove_seller or [],
                "categories": remove_category or [],
            },
            msrp=msrp,
            currency=currency,
        )
        brand = brands.update_brand(store, actor, name, changes)
    typer.echo(f"brand {brand.name} updated")


@brands_app.command("list")
def brands_list(ctx: typer.Context) -> None:
    """List brands."""
    with _store(ctx) as (_, store, _blobs):
        rows = [asdict(brand) | {"keywords": ", ".join(brand.keywords)} for brand in store.brands()]
    typer.echo(_table(rows, ("brand_id", "name", "member", "keywords", "msrp", "currency"), {"keywords": 50}))


@brands_app.command("show")
def brands_show(ctx: typer.Context, name: str) -> None:
    """A brand's whole profile, as JSON."""
    with _store(ctx) as (_, store, _blobs):
        brand = store.brand(name)
        live = store.assets(brand.name)
    profile = asdict(brand) | {"assets": {kind: sum(1 for a in live if a.kind == kind) for kind in ASSET_KINDS}}
    typer.echo(json.dumps(profile, indent=2, ensure_ascii=False))


@assets_app.command("add")
def assets_add(
    ctx: typer.Context,
    items: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders or zip archives (JPEG, PNG, WebP, GIF, BMP, TIFF, SVG); words for --kind text."
        ),
    ],
    brand: Annotated[str, typer.Option(help="The brand the assets belong to.")],
    kind: Annotated[
        AssetKindChoice, typer.Option(help="logo (inside photos), product (official photo) or text (words).")
    ] = AssetKindChoice["logo"],
    acting_as: ActingAs = None,
    key: ApiKey = None,
) -> None:
    """Upload reference assets; identical content is stored once, bad files are reported."""
    if kind.value != "text":
        _refuse_bombs_early([Path(item) for item in items], _settings(ctx))
    with _store(ctx) as (settings, store, blobs):
        actor = _authenticate(ctx, store, acting_as or store.brand(brand).member, key)
        if kind.value == "text":
            result = assets.add_text_assets(store, actor, brand=brand, words=items)
        else:
            result = assets.add_asset_files(
                store,
                blobs,
                assets.upload_limits(settings),
                assets.MatchersOnFirstUse(settings),
                actor,
                brand=brand,
                kind=kind.value,
                paths=[Path(item) for item in items],
            )
    _report_upload(result)


def _refuse_bombs_early(paths: Sequence[Path], settings: Settings) -> None:
    """Exit 3 when every file is a picture refused from its header (a decompression bomb): judged
    before the store, SQLAlchemy and the matchers are imported, so a refusal costs no start-up."""
    from counterscan.imaging.decode import DecodeLimits
    from counterscan.registry.uploads import refused_from_headers

    refused = refused_from_headers(paths, DecodeLimits.from_settings(settings))
    if refused:
        for rejected in refused:
            typer.echo(f"rejected {rejected.name}: {rejected.reason}", err=True)
        raise typer.Exit(3)


def _report_upload(result: assets.UploadReport) -> None:
    for asset in result.added:
        size = f" ({asset.width}x{asset.height})" if asset.kind != "text" else ""
        typer.echo(f"added asset {asset.asset_id}: {asset.original_name}{size}")
    for asset in result.already_present:
        typer.echo(f"already present as asset {asset.asset_id}: {asset.original_name}")
    for rejected in result.rejected:
        typer.echo(f"rejected {rejected.name}: {rejected.reason}", err=True)
    if result.rejected and not result.accepted_any:
        raise typer.Exit(3)


@assets_app.command("replace")
def assets_replace(
    ctx: typer.Context,
    asset_id: int,
    path: Path,
    acting_as: ActingAs = None,
    key: ApiKey = None,
) -> None:
    """Replace an image asset by a new file; the old one leaves future scans but stays in history."""
    with _store(ctx) as (settings, store, blobs):
        old = store.asset(asset_id)
        actor = _authenticate(ctx, store, acting_as or store.brand(old.brand).member, key)
        result = assets.add_asset_files(
            store,
            blobs,
            assets.upload_limits(settings),
            assets.MatchersOnFirstUse(settings),
            actor,
            brand=old.brand,
            kind=old.kind,
            paths=[path],
            replaces=asset_id,
        )
    _report_upload(result)
    if result.added:
        typer.echo(f"asset {asset_id} replaced by {result.added[0].asset_id}")


@assets_app.command("remove")
def assets_remove(ctx: typer.Context, asset_id: int, acting_as: ActingAs = None, key: ApiKey = None) -> None:
    """Remove an asset from future scans (history is kept)."""
    with _store(ctx) as (_, store, _blobs):
        asset = store.asset(asset_id)
        actor = _authenticate(ctx, store, acting_as or store.brand(asset.brand).member, key)
        assets.remove_asset(store, actor, asset_id)
    typer.echo(f"removed asset {asset_id} ({asset.original_name})")


@assets_app.command("list")
def assets_list(
    ctx: typer.Context,
    brand: Annotated[str | None, typer.Option(help="Only this brand's assets.")] = None,
    history: Annotated[bool, typer.Option(help="Include removed and replaced assets.")] = False,
    fmt: ListFormatOption = ListFormat.TABLE,
) -> None:
    """List reference assets."""
    with _store(ctx) as (_, store, _blobs):
        rows = [asdict(asset) for asset in store.assets(brand, include_removed=history)]
    columns = ("asset_id", "brand", "kind", "original_name", "width", "height", "sha256", "removed")
    emit(rows, fmt, columns, {"sha256": 12, "original_name": 40})


@app.command("audit")
def audit_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Newest entries shown.")] = 50,
    fmt: ListFormatOption = ListFormat.TABLE,
) -> None:
    """Who changed what, and when (newest first)."""
    with _store(ctx) as (_, store, _blobs):
        rows = [asdict(entry) for entry in store.audit_log(limit=limit)]
    emit(rows, fmt, ("at", "actor", "action", "target", "details"), {"details": 80})


schedule_app = typer.Typer(no_args_is_help=True, help="Running scans unattended.")
app.add_typer(schedule_app, name="schedule")


@schedule_app.command("print-cron")
def schedule_print_cron(
    ctx: typer.Context,
    at: Annotated[str, typer.Option(help="Cron time fields.")] = "17 2 * * *",
    max_minutes: Annotated[float, typer.Option(help="Time budget of each nightly scan.")] = 240,
    feed: Annotated[list[str] | None, typer.Option(help="A feed to ingest before scanning; repeatable.")] = None,
) -> None:
    """Print a crontab entry for a nightly ingest + scan (install it with `crontab -e`)."""
    settings = _settings(ctx)
    program = Path(sys.argv[0]).resolve() if Path(sys.argv[0]).name == "counterscan" else Path("counterscan")
    base = f"{program} --home {settings.home.resolve()}" + (f" --db '{settings.db_url}'" if settings.db_url else "")
    steps = [f"{base} ingest {item}" for item in feed or []]
    # Exit codes 10 (nothing to do) and 11 (partial: budget reached) are normal for a nightly job.
    steps.append(
        f"{base} scan --max-minutes {max_minutes:g}; code=$?; [ $code -eq 10 -o $code -eq 11 ] && code=0; exit $code"
    )

    log = settings.home.resolve() / "scan.log"
    typer.echo("# counterscan nightly scan; scans never overlap (lock in the store), exit 12 = lock held")
    typer.echo(f"{at} ({' && '.join(steps)}) >> {log} 2>&1")


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(help="Worker processes; each keeps its own warm indexes.")] = 1,
    deliver_webhooks: Annotated[
        bool, typer.Option(help="Also send webhook deliveries from the server (else run `webhooks deliver`).")
    ] = False,
    proxy_headers: Annotated[
        bool, typer.Option(help="Trust X-Forwarded-For/-Proto from --forwarded-allow-ips (behind a reverse proxy).")
    ] = False,
    forwarded_allow_ips: Annotated[
        str, typer.Option(help="Proxy addresses whose forwarded headers count.")
    ] = "127.0.0.1",
) -> None:
    """Serve the HTTP API: members' endpoints, real-time checks, webhooks, /healthz /readyz /metrics."""
    import os
    import tempfile

    import uvicorn

    from counterscan.api import DELIVER_ENV, create_app
    from counterscan.service.ops import MULTIPROC_ENV

    settings = _settings(ctx)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "access_log": False,  # the service writes its own JSON request log, without keys
        "proxy_headers": proxy_headers,
        "forwarded_allow_ips": forwarded_allow_ips,
    }
    if workers <= 1:
        uvicorn.run(create_app(settings, deliver_webhooks=deliver_webhooks), **options)
        return
    # Worker processes read their settings from the environment; metrics are summed across them.
    os.environ["COUNTERSCAN_HOME"] = str(settings.home.resolve())
    if settings.db_url:
        os.environ["COUNTERSCAN_DB"] = settings.db_url
    os.environ[DELIVER_ENV] = "1" if deliver_webhooks else "0"
    with tempfile.TemporaryDirectory(prefix="counterscan-metrics-") as folder:
        os.environ.setdefault(MULTIPROC_ENV, folder)
        # A worker imports the matchers' libraries and loads its app before it answers the
        # supervisor's health pings: uvicorn's 5 s default kills it on a busy machine.
        uvicorn.run(
            "counterscan.api:from_environment",
            factory=True,
            workers=workers,
            timeout_worker_healthcheck=120,
            **options,
        )


@app.command("ingest")
def ingest_command(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(help="A feed file (.csv .jsonl .parquet, optionally .gz), a folder, or an http(s) URL.")
    ],
    name: Annotated[str | None, typer.Option(help="Source name (default: the file's stem, or the URL's host).")] = None,
    mapping: Annotated[Path | None, typer.Option(help="TOML mapping file: column names, HTTP paging.")] = None,
    workers: Annotated[int, typer.Option(help="Concurrent image downloads.")] = 8,
) -> None:
    """Ingest listings; bad records go to the quarantine, the rest land. Re-runs continue from the checkpoint."""
    from counterscan.ingest import FetchOptions, open_source
    from counterscan.ingest import ingest as run_ingest
    from counterscan.ingest.netpolicy import NetPolicy
    from counterscan.matchers import decode_limits

    with _store(ctx) as (settings, store, blobs):
        feed = open_source(source, name=name, mapping=mapping, network=NetPolicy.from_settings(settings))
        with _progress_bar(f"ingest {feed.name}", unit="rows") as advance:
            summary = run_ingest(
                store,
                blobs,
                decode_limits(settings),
                feed,
                fetch=FetchOptions.from_settings(settings, workers=workers),
                progress=advance,
            )
    for problem in summary.problems:
        typer.echo(f"quarantined {problem.source}: {problem.record}: {problem.reason}", err=True)
    hidden = summary.quarantined + summary.images_failed - len(summary.problems)
    if hidden > 0:
        typer.echo(f"... and {hidden} more (see `counterscan quarantine list`)", err=True)
    typer.echo(summary.line())


@contextmanager
def _progress_bar(description: str, *, unit: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr when it is a terminal; nothing otherwise (cron, pipes, CI)."""
    from tqdm import tqdm

    if not sys.stderr.isatty():
        yield None
        return
    with tqdm(desc=description, unit=f" {unit}", file=sys.stderr, dynamic_ncols=True) as bar:
        yield bar.update


# By ScanStatus value, so that this module does not import the scan code before a scan runs.
SCAN_EXIT_CODES = {"done": 0, "nothing-to-do": 10, "partial": 11}


@app.command()
def scan(
    ctx: typer.Context,
    rescan_all: Annotated[bool, typer.Option("--all", help="Re-scan every listing, not only new ones.")] = False,
    source: Annotated[str | None, typer.Option(help="Only this source's listings.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: the core count).")] = None,
    executor: Annotated[
        ExecutorChoice, typer.Option(help="local (a process pool on this machine) or dask (a cluster).")
    ] = ExecutorChoice.LOCAL,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address, tcp://host:8786.")] = None,
    max_minutes: Annotated[
        float | None, typer.Option(help="Stop after the batch in hand once this much time passed.")
    ] = None,
) -> None:
    """Match new and changed listings (and, after asset changes, the affected brands) and score them.

    Exit codes: 0 done, 10 nothing to do, 11 partial (time budget reached; run again), 12 another scan holds the lock.
    """
    from counterscan.scan.batch import run_scan
    from counterscan.scan.executors import make_executor

    with _store(ctx) as (settings, store, _blobs):
        pool = make_executor(executor.value, workers=workers, scheduler=scheduler, threads=settings.scan_worker_threads)
        try:
            with _progress_bar("scan", unit="listings") as advance:
                summary = run_scan(
                    store,
                    settings,
                    executor=pool,
                    rescan_all=rescan_all,
                    source=source,
                    max_minutes=max_minutes,
                    progress=advance,
                )
        finally:
            pool.close()
    typer.echo(summary.line())
    if SCAN_EXIT_CODES[summary.status.value]:
        raise typer.Exit(SCAN_EXIT_CODES[summary.status.value])


def _queue_widths() -> dict[str, int]:
    """Reason and title widths for the queue table from the terminal's width (COLUMNS, else the tty)."""
    columns = shutil.get_terminal_size((120, 24)).columns
    # Rank, id, score, brand, matcher, price and status take about 75 columns; the reason gets the rest.
    title = 40 if columns >= 160 else 30
    return {"reason": max(30, columns - 75 - title), "title": title}


SUSPECT_COLUMNS = ("rank", "listing_id", "score", "brand", "matcher", "reason", "title", "price", "status")


def _suspect_rows(suspects: Sequence[Suspect]) -> list[dict[str, Any]]:
    return [report.suspect_row(suspect) for suspect in suspects]


@review_app.command("list")
def review_list(
    ctx: typer.Context,
    limit: Annotated[int | None, typer.Option(help="Show at most this many (explored ones included).")] = None,
    min_score: Annotated[float, typer.Option(help="Hide suspects scored below this.")] = 0.0,
    brand: Annotated[str | None, typer.Option(help="Only this brand's suspects.")] = None,
    status: Annotated[SuspectStatusChoice | None, typer.Option(help="Only suspects with this status.")] = None,
    explore: Annotated[int, typer.Option(help="Mix in this many of the listings the ranker is least sure of.")] = 0,
    to_label: Annotated[
        int | None,
        typer.Option(
            help="Instead of the queue: the N unjudged listings whose verdicts teach the ranker most "
            "(both kinds while training lacks one, clean listings too; then the least certain). With --brand only."
        ),
    ] = None,
    fmt: QueueFormatOption = QueueFormat.TABLE,
) -> None:
    """Suspects, best first, with the strongest reason (or, with --to-label, the listings to judge next)."""
    if to_label is not None:
        mixed = [name for name, used in (("--limit", limit is not None), ("--min-score", min_score != 0.0),
                 ("--status", status is not None), ("--explore", explore != 0)) if used]  # fmt: skip
        if mixed:
            raise UserError(f"--to-label combines with --brand and --format only, not {', '.join(mixed)}")
        _print_to_label(ctx, to_label, brand, fmt)
        return
    with _store(ctx) as (_, store, _blobs):
        chosen = status.value if status is not None else None
        suspects = review.queue(store, limit=limit, min_score=min_score, brand=brand, status=chosen, explore=explore)
    columns = SUSPECT_COLUMNS if fmt is QueueFormat.TABLE else report.CSV_COLUMNS
    emit(_suspect_rows(suspects), fmt, columns, _queue_widths())


def _print_to_label(ctx: typer.Context, count: int, brand: str | None, fmt: QueueFormat) -> None:
    from counterscan.review.to_label import to_label

    with _store(ctx) as (_, store, _blobs):
        requests = to_label(store, count, brand=brand)
    rows = [report.suspect_row(request.suspect) | {"why": request.why} for request in requests]
    if fmt is QueueFormat.TABLE:
        widths = _queue_widths() | {"why": 60}
        emit(rows, fmt, ("rank", "listing_id", "brand", "score", "why", "title", "price"), widths)
        if rows:
            typer.echo(
                "judge each: counterscan review decide LISTING_ID --brand BRAND --verdict counterfeit|legit|unsure",
                err=True,
            )
        return
    emit(rows, fmt, (*report.CSV_COLUMNS, "why"), _queue_widths())


@review_app.command("show")
def review_show(
    ctx: typer.Context,
    listing_id: Annotated[str, typer.Argument(help="LISTING_ID, or SOURCE/LISTING_ID if ambiguous.")],
) -> None:
    """All evidence of one listing, its images and price history, as JSON."""
    with _store(ctx) as (_, store, blobs):
        detail = review.show(store, listing_id, blobs)
    typer.echo(json.dumps(detail, indent=2, ensure_ascii=False, default=str))


@app.command("train")
def train_command(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option(help="Replace the current model even if it scored better.")] = False,
    acting_as: AnalystName = None,
    key: ApiKey = None,
) -> None:
    """Fit the ranker on the verdicts so far (an analyst's key needed); the next scans score with it.

    Exit code 6 when no model was made: too few verdicts of a class, or no better than the current scoring.
    """
    with _store(ctx) as (_, store, _blobs):
        analyst = _analyst(ctx, store, acting_as, key)
        result = training.train(store, force=force, actor=analyst.name)
    typer.echo(result.line())
    if not result.accepted:
        raise typer.Exit(TrainingRefusedError.exit_code)


models_app = typer.Typer(no_args_is_help=True, help="Trained ranking models: list, activate, roll back.")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(
    ctx: typer.Context,
    fmt: ListFormatOption = ListFormat.TABLE,
) -> None:
    """Trained models with their held-out average precision; the active one scores scans."""
    with _store(ctx) as (_, store, _blobs):
        rows = [asdict(info) for info in training.models(store)]
    columns = ("model_id", "created_at", "active", "average_precision", "cold_start_average_precision", "examples")
    emit(rows, fmt, columns)


@models_app.command("activate")
def models_activate(
    ctx: typer.Context,
    model_id: Annotated[int, typer.Argument(help="The model to score with.")],
    acting_as: AnalystName = None,
    key: ApiKey = None,
) -> None:
    """Score with model N from the next scan on (an analyst's key needed)."""
    with _store(ctx) as (_, store, _blobs):
        analyst = _analyst(ctx, store, acting_as, key)
        training.activate(store, model_id, actor=analyst.name)
    typer.echo(f"model {model_id} is now active; the next scan re-scores every listing with it")


@models_app.command("rollback")
def models_rollback(ctx: typer.Context, acting_as: AnalystName = None, key: ApiKey = None) -> None:
    """Go back to the model before the active one, or to the cold-start scorer (an analyst's key needed)."""
    with _store(ctx) as (_, store, _blobs):
        analyst = _analyst(ctx, store, acting_as, key)
        target = training.rollback(store, actor=analyst.name)
    shown = "the cold-start scorer" if target is None else f"model {target}"
    typer.echo(f"{shown} is now active; the next scan re-scores every listing with it")


@review_app.command("decide")
def review_decide(
    ctx: typer.Context,
    listing_ids: Annotated[
        list[str],
        typer.Argument(help="LISTING_ID (or SOURCE/LISTING_ID if ambiguous); several for one verdict on all."),
    ],
    verdict: Annotated[VerdictChoice, typer.Option(help="What the analyst found.")],
    brand: Annotated[
        str | None, typer.Option(help="The brand the verdict is about (needed when a listing is a suspect of several).")
    ] = None,
    note: Annotated[str | None, typer.Option(help="Why.")] = None,
    acting_as: AnalystName = None,
    key: ApiKey = None,
) -> None:
    """Record an analyst's verdict on listings, as suspects of a brand (all or nothing; the analyst's key needed)."""
    with _store(ctx) as (_, store, _blobs):
        analyst = _analyst(ctx, store, acting_as, key).name
        written = review.decide_many(store, listing_ids, verdict=verdict.value, note=note, analyst=analyst, brand=brand)
        names = {found.brand_id: found.name for found in store.brands()}
    for reference, (_listing_pk, brand_id) in zip(listing_ids, written, strict=True):
        typer.echo(f"{reference} ({names.get(brand_id, brand_id)}): {verdict.value}")


cases_app = typer.Typer(
    no_args_is_help=True,
    help="Takedown cases: confirmed counterfeits per (marketplace, seller), reported and followed to removal.",
)
app.add_typer(cases_app, name="cases")
CaseStatusChoice = StrEnum("CaseStatusChoice", [(status, status) for status in CASE_STATUSES])  # type: ignore[misc]
CASE_COLUMNS = ("case_id", "marketplace", "seller_id", "seller_name", "status", "listings", "brands", "updated_at")


def _case_row(summary: Any) -> dict[str, Any]:
    return asdict(summary) | {"brands": ", ".join(summary.brands)}


@cases_app.command("list")
def cases_list(
    ctx: typer.Context,
    marketplace: Annotated[str | None, typer.Option(help="Only this marketplace's cases.")] = None,
    status: Annotated[CaseStatusChoice | None, typer.Option(help="Only cases with this status.")] = None,
    fmt: ListFormatOption = ListFormat.TABLE,
) -> None:
    """Cases, latest change first: a listing lands in its seller's case when it is confirmed counterfeit."""
    from counterscan.review import cases

    with _store(ctx) as (_, store, _blobs):
        found = cases.list_cases(store, marketplace=marketplace, status=status.value if status else None)
    if fmt is ListFormat.JSON:
        emit([asdict(summary) for summary in found], fmt, CASE_COLUMNS)
        return
    emit([_case_row(summary) for summary in found], fmt, CASE_COLUMNS, {"seller_name": 30, "brands": 40})


@cases_app.command("show")
def cases_show(
    ctx: typer.Context,
    case_id: Annotated[int, typer.Argument(help="The case's number (from `cases list`).")],
    fmt: ListFormatOption = ListFormat.TABLE,
) -> None:
    """One case: its listings (brand, rights holder, verdict) and its history (who changed what, when)."""
    from counterscan.review import cases

    with _store(ctx) as (_, store, _blobs):
        case = cases.show_case(store, case_id)
    if fmt is ListFormat.JSON:
        typer.echo(json.dumps(asdict(case), indent=2, ensure_ascii=False, default=str))
        return
    typer.echo(_table([_case_row(case.summary)], CASE_COLUMNS))
    typer.echo("\nlistings")
    listing_columns = ("listing_id", "brand", "rights_holder", "verdict", "analyst", "decided_at", "url", "title")
    typer.echo(_table([asdict(listing) for listing in case.listings], listing_columns, {"title": 40, "url": 50}))
    typer.echo("\nhistory")
    typer.echo(
        _table([asdict(event) for event in case.events], ("at", "actor", "action", "status", "listing_id", "note"))
    )


@cases_app.command("set-status")
def cases_set_status(
    ctx: typer.Context,
    case_id: Annotated[int, typer.Argument(help="The case's number.")],
    status: Annotated[CaseStatusChoice, typer.Option(help="The case's new status.")],
    note: Annotated[str | None, typer.Option(help="Why, or the marketplace's reference.")] = None,
    acting_as: Annotated[str | None, typer.Option("--as", help="Act as this member (authenticated by --key).")] = None,
    key: ApiKey = None,
) -> None:
    """Move a case on: open -> reported -> removed | rejected; removed -> reinstated.

    A key is needed: an analyst's, or that of the owner of every brand in the case.
    """
    from counterscan.review import cases

    with _store(ctx) as (_, store, _blobs):
        if acting_as is not None:
            actor = _authenticate(ctx, store, acting_as, key)
        else:
            if not key:
                raise AuthenticationError("this needs an API key (--key or COUNTERSCAN_API_KEY)")
            actor = members.authenticate_key(
                store, key, client=members.cli_client(), policy=members.AuthPolicy.of(_settings(ctx))
            )
        summary = cases.set_status(store, case_id, status.value, note=note, actor=actor)
    typer.echo(f"case {summary.case_id} ({summary.marketplace}, seller {summary.seller_id or '?'}): {summary.status}")


@cases_app.command("export")
def cases_export(
    ctx: typer.Context,
    marketplace: Annotated[str, typer.Option(help="The marketplace the notice is for.")],
    out: Annotated[Path, typer.Option(help="Folder to write notices.csv, notices.json and index.html into.")],
    status: Annotated[
        list[CaseStatusChoice] | None,
        typer.Option(help="Only cases with this status; repeatable (default: open and reinstated)."),
    ] = None,
) -> None:
    """Write a notice packet for a marketplace: CSV, JSON and an HTML page of the evidence.

    Per listing: its link, its photo beside the matched brand asset, brand, rights holder and the verdict.
    """
    from counterscan.review import cases

    with _store(ctx) as (_, store, blobs):
        packet = cases.export_notices(
            store,
            blobs,
            marketplace=marketplace,
            out=out,
            actor=members.cli_client(),
            statuses=[chosen.value for chosen in status or []],
        )
    typer.echo(f"wrote {packet.listings} listings of {packet.cases} cases to {packet.folder}")
    for path in packet.files:
        typer.echo(f"  {path}")


@app.command()
def export(
    ctx: typer.Context,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="CSV or JSON, or an HTML report.")],
    out: Annotated[Path, typer.Option(help="File to write (a folder for html).")],
    limit: Annotated[int | None, typer.Option(help="Only the best this many.")] = None,
    status: Annotated[
        list[SuspectStatusChoice] | None,
        typer.Option(help="Only suspects with this status; repeatable (default: all but legit)."),
    ] = None,
    brand: Annotated[str | None, typer.Option(help="Only this brand's suspects.")] = None,
    marketplace: Annotated[str | None, typer.Option(help="Only listings of this marketplace.")] = None,
    since: Annotated[str | None, typer.Option(help="Only listings first seen on or after this ISO date.")] = None,
    min_score: Annotated[float, typer.Option(help="Only suspects scored at least this.")] = 0.0,
) -> None:
    """Export suspects, one per (listing, brand): CSV/JSON for takedown tools, an HTML evidence report for people."""
    from counterscan.review.html_report import write_html

    with _store(ctx) as (_, store, blobs):
        suspects = review.export_suspects(
            store,
            statuses=[chosen.value for chosen in status or []],
            brand=brand,
            marketplace=marketplace,
            since=since,
            min_score=min_score,
            limit=limit,
        )
        if fmt is ExportFormat.HTML:
            written = write_html(store, blobs, suspects, out)
            typer.echo(f"wrote {len(suspects)} suspects to {written}")
            return
        reasons = review.reasons_of(store, suspects) if fmt is ExportFormat.JSON else {}
    report.export(suspects, fmt=fmt.value, out=out, reasons=reasons)
    typer.echo(f"wrote {len(suspects)} suspects to {out}")


@quarantine_app.command("retry")
def quarantine_retry(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
) -> None:
    """Parse quarantined records again (with the source's current mapping) and fetch failed images again."""
    from counterscan.ingest import FetchOptions, retry_quarantine
    from counterscan.matchers import decode_limits

    with _store(ctx) as (settings, store, blobs):
        summary = retry_quarantine(
            store, blobs, decode_limits(settings), source=source, fetch=FetchOptions.from_settings(settings)
        )
    typer.echo(summary.line())


@quarantine_app.command("list")
def quarantine_list(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    fmt: ListFormatOption = ListFormat.TABLE,
) -> None:
    """Records and images that could not be ingested, with the reason."""
    with _store(ctx) as (_, store, _blobs):
        rows = [asdict(entry) for entry in store.quarantined(source)]
    emit(rows, fmt, ("entry_id", "source", "kind", "record", "reason", "attempts", "created_at"), {"reason": 80})


@signals_app.command("export")
def signals_export(
    ctx: typer.Context,
    brand: Annotated[list[str], typer.Option(help="A brand whose hashes to export; repeatable.")],
    out: Annotated[Path, typer.Option(help="The file to write (.jsonl, or .jsonl.gz compressed).")],
    acting_as: ActingAs = None,
    key: ApiKey = None,
) -> None:
    """Write the brands' pHash, dHash and PDQ hashes (every variant) to a versioned signals file."""
    from counterscan.registry import exchange

    with _store(ctx) as (_, store, _blobs):
        actor = _authenticate(ctx, store, acting_as or store.brand(brand[0]).member, key)
        result = exchange.export_signals(store, actor, brand, out)
    typer.echo(f"exported {result.signals} hashes of {result.assets} assets to {out}")


@signals_app.command("import")
def signals_import(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A signals file written by `signals export`.")],
    brand: Annotated[str, typer.Option(help="Your brand the imported hashes belong to.")],
    bank: Annotated[str | None, typer.Option(help="The bank's name (default: exporter and file name).")] = None,
    acting_as: ActingAs = None,
    key: ApiKey = None,
) -> None:
    """Add another member's or a partner's hashes to a brand as a hash-only bank (re-running adds nothing)."""
    from counterscan.registry import exchange

    if not path.is_file():
        raise UserError(f"no such file: {path}")
    with _store(ctx) as (_, store, _blobs):
        actor = _authenticate(ctx, store, acting_as or store.brand(brand).member, key)
        result = exchange.import_signals(store, actor, brand=brand, path=path, bank=bank)
    for reason in result.rejected:
        typer.echo(f"rejected {reason}", err=True)
    typer.echo(
        f"bank {result.bank}: {result.added} assets added ({result.signals} hashes), "
        f"{result.already_present} already present, {len(result.rejected)} lines rejected"
    )
    if result.rejected and not (result.added or result.already_present):
        raise typer.Exit(3)


@signals_app.command("banks")
def signals_banks(ctx: typer.Context, fmt: ListFormatOption = ListFormat.TABLE) -> None:
    """List imported banks of hashes."""
    with _store(ctx) as (_, store, _blobs):
        rows = store.banks()
    emit(rows, fmt, ("bank", "brand", "assets", "imported_at"))


@app.command()
def demo(ctx: typer.Context) -> None:
    """Register the demo brands, ingest the demo feed, scan it and show the review queue."""
    from counterscan.config import demo_data_dir
    from counterscan.demo import run_demo

    with _store(ctx) as (settings, store, blobs):
        result = run_demo(store, blobs, settings, demo_data_dir())
        quarantined = store.quarantined("demo-market")
    typer.echo(result.ingest.line())
    for entry in quarantined:
        typer.echo(f"  quarantined {entry.record}: {entry.reason}")
    typer.echo(result.scan.line())
    typer.echo("")
    suspects = [suspect for suspect in result.ranking if suspect.score > 0]
    typer.echo(_table(_suspect_rows(suspects), SUSPECT_COLUMNS, _queue_widths()))
    typer.echo("")
    clean = result.count("clean")
    failed = False
    for kind, label in (
        ("reuse", "planted re-uses"),
        ("text", "text- and price-only suspects"),
        ("printed", "listings with the brand name printed on the photo"),
        ("logo", "listings whose photo shows a registered logo"),
        ("collage", "listings whose photo is a collage holding a cropped official photo"),
    ):
        if result.above_clean(kind):
            typer.echo(f"check: all {result.count(kind)} {label} rank above all {clean} clean listings")
        else:
            typer.echo(f"check FAILED: some of the {result.count(kind)} {label} rank below a clean listing", err=True)
            failed = True
    if failed:
        raise typer.Exit(1)


webhooks_app = typer.Typer(no_args_is_help=True, help="Members' webhook endpoints and their deliveries.")
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("add")
def webhooks_add(
    ctx: typer.Context,
    url: str,
    member: Annotated[str, typer.Option(help="The member whose brands' events are sent.")],
    event: Annotated[
        list[str] | None, typer.Option(help="suspect.new, verdict.recorded or case.status; repeatable.")
    ] = None,
    min_score: Annotated[float, typer.Option(help="suspect.new only for scores at or over this.")] = 0.5,
    acting_as: ActingAs = None,
    key: ApiKey = None,
) -> None:
    """Register an endpoint and print its signing secret (shown only this once)."""
    from counterscan.service.webhooks import add_webhook

    with _store(ctx) as (settings, store, _blobs):
        actor = _authenticate(ctx, store, acting_as or member, key)
        if actor.name != member:
            raise PermissionDeniedError(f"{actor.name!r} may not register webhooks for {member!r}")
        hook, secret = add_webhook(
            store, settings, actor, url=url, events=event or ["suspect.new"], min_score=min_score
        )
    typer.echo(f"webhook {hook.webhook_id} added for {hook.member}: {', '.join(hook.events)} -> {hook.url}")
    typer.echo(secret)


@webhooks_app.command("list")
def webhooks_list(ctx: typer.Context, fmt: ListFormatOption = ListFormat.TABLE) -> None:
    """Registered endpoints (secrets are never shown again)."""
    with _store(ctx) as (_, store, _blobs):
        rows = [asdict(hook) for hook in store.webhooks()]
    emit(rows, fmt, ("webhook_id", "member", "url", "events", "min_score"))


@webhooks_app.command("log")
def webhooks_log(
    ctx: typer.Context,
    status: Annotated[DeliveryStatusChoice | None, typer.Option(help="Only deliveries in this state.")] = None,
    limit: Annotated[int, typer.Option(help="Newest deliveries shown.")] = 50,
    fmt: ListFormatOption = ListFormat.TABLE,
) -> None:
    """The delivery log, newest first."""
    with _store(ctx) as (_, store, _blobs):
        chosen = status.value if status is not None else None
        rows = [asdict(item) for item in store.deliveries(status=chosen, limit=limit)]
    emit(rows, fmt, ("delivery_id", "webhook_id", "event", "status", "attempts", "next_attempt_at", "last_error"))


@webhooks_app.command("deliver")
def webhooks_deliver(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option(help="Send what is due now, then stop.")] = False,
    idle_seconds: Annotated[float, typer.Option(help="Pause between looks at an empty outbox.")] = 1.0,
) -> None:
    """Send due webhook deliveries until stopped (SIGTERM or Ctrl-C); several workers may run at once."""
    import signal
    import threading

    from counterscan.service.webhooks import Deliverer

    with _store(ctx) as (settings, store, _blobs):
        deliverer = Deliverer(store, settings)
        try:
            if once:
                outcome = deliverer.send_due(limit=10_000)
                typer.echo(f"delivered {outcome.delivered}, retrying {outcome.retrying}, failed {outcome.failed}")
                return
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_args: stop.set())
            with suppress(KeyboardInterrupt):
                deliverer.run(stop, idle_seconds=idle_seconds)
        finally:
            deliverer.close()
