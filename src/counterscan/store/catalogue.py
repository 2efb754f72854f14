"""Members, brands and reference assets; every change writes an audit row in its own transaction."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from counterscan.errors import NotFoundError, UnknownBrandError, UserError
from counterscan.imaging.decode import ImageInfo
from counterscan.records import (
    Asset,
    AssetKind,
    AuditEntry,
    BankAsset,
    Brand,
    Member,
    Product,
    Role,
    SharedSignal,
)
from counterscan.signals import SignalTable, SignalTableBuilder
from counterscan.store import schema as t
from counterscan.store.base import StoreBase, bulk_insert, driver_chunks, iso, name_key, new_id, now, rows_in

BRAND_LIST_FIELDS = ("aliases", "lookalikes", "authorised_sellers", "categories")


class CatalogueStore(StoreBase):
    # -- members ---------------------------------------------------------------------------

    def add_member(
        self,
        name: str,
        *,
        role: Role,
        key_hash: str,
        actor: str,
        prefix: str | None = None,
        expires_at: datetime | None = None,
    ) -> Member:
        with self.engine.begin() as conn:
            if conn.execute(sa.select(t.members.c.member_id).where(t.members.c.name == name)).first():
                raise UserError(f"member {name!r} already exists")
            member_id = new_id(conn.execute(sa.insert(t.members).values(name=name, role=role, created_at=now())))
            conn.execute(
                sa.insert(t.member_keys).values(
                    member_id=member_id, prefix=prefix, key_hash=key_hash, created_at=now(), expires_at=expires_at
                )
            )
            self._audit(conn, actor, "member.add", name, {"role": role, "prefix": prefix})
        return Member(member_id=member_id, name=name, role=role)

    def member(self, name: str) -> Member:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.members).where(t.members.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"unknown member {name!r} (add it with `counterscan members add`)")
        return Member(member_id=row.member_id, name=row.name, role=row.role)

    def members(self) -> list[Member]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.members).order_by(t.members.c.name)).all()
        return [Member(member_id=row.member_id, name=row.name, role=row.role) for row in rows]

    # -- brands ----------------------------------------------------------------------------

    def add_brand(
        self,
        name: str,
        *,
        member_id: int,
        actor: str,
        aliases: Sequence[str] = (),
        lookalikes: Sequence[str] = (),
        msrp: float | None = None,
        currency: str | None = None,
        authorised_sellers: Sequence[str] = (),
        categories: Sequence[str] = (),
    ) -> int:
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(t.brands.c.brand_id).where(t.brands.c.name_key == name_key(name))).first()
            if exists:
                raise UserError(f"brand {name!r} already exists")
            moment = now()
            brand_id = new_id(
                conn.execute(
                    sa.insert(t.brands).values(
                        name=name,
                        name_key=name_key(name),
                        member_id=member_id,
                        aliases=list(aliases),
                        lookalikes=list(lookalikes),
                        msrp=msrp,
                        currency=currency,
                        authorised_sellers=list(authorised_sellers),
                        categories=list(categories),
                        created_at=moment,
                        updated_at=moment,
                    )
                )
            )
            self._audit(conn, actor, "brand.add", name, {"msrp": msrp, "currency": currency})
        return brand_id

    def update_brand(self, brand_id: int, *, actor: str, changes: Mapping[str, object]) -> None:
        """Set brand columns (lists replaced whole); ``changes`` is audited as given."""
        allowed = {*BRAND_LIST_FIELDS, "msrp", "currency"}
        unknown = set(changes) - allowed
        if unknown:
            raise UserError(f"cannot change {', '.join(sorted(unknown))}")
        with self.engine.begin() as conn:
            conn.execute(sa.update(t.brands).where(t.brands.c.brand_id == brand_id).values(**changes, updated_at=now()))
            self._audit(conn, actor, "brand.update", self._brand_name(conn, brand_id), _jsonable(changes))

    def set_product(self, brand_id: int, product: Product, *, actor: str) -> None:
        key = name_key(product.name)
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(t.brand_products).where(
                    t.brand_products.c.brand_id == brand_id, t.brand_products.c.name_key == key
                )
            )
            conn.execute(
                sa.insert(t.brand_products).values(
                    brand_id=brand_id, name_key=key, name=product.name, msrp=product.msrp, currency=product.currency
                )
            )
            self._audit(
                conn,
                actor,
                "brand.product",
                self._brand_name(conn, brand_id),
                {"product": product.name, "msrp": product.msrp, "currency": product.currency},
            )

    def remove_product(self, brand_id: int, name: str, *, actor: str) -> None:
        with self.engine.begin() as conn:
            deleted = conn.execute(
                sa.delete(t.brand_products).where(
                    t.brand_products.c.brand_id == brand_id, t.brand_products.c.name_key == name_key(name)
                )
            ).rowcount
            if not deleted:
                raise NotFoundError(f"brand has no product {name!r}")
            self._audit(conn, actor, "brand.product.remove", self._brand_name(conn, brand_id), {"product": name})

    @staticmethod
    def _brand_name(conn: sa.Connection, brand_id: int) -> str:
        return str(conn.execute(sa.select(t.brands.c.name).where(t.brands.c.brand_id == brand_id)).scalar_one())

    def brand(self, name: str) -> Brand:
        found = self._brands(t.brands.c.name_key == name_key(name))
        if not found:
            raise UnknownBrandError(name)
        return found[0]

    def brands(self, *, member_id: int | None = None) -> list[Brand]:
        return self._brands(None if member_id is None else t.brands.c.member_id == member_id)

    def _brands(self, condition: sa.ColumnElement[bool] | None) -> list[Brand]:
        query = (
            sa.select(t.brands, t.members.c.name.label("member_name"))
            .join(t.members, t.members.c.member_id == t.brands.c.member_id)
            .order_by(t.brands.c.name_key)
        )
        if condition is not None:
            query = query.where(condition)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            ids = [row.brand_id for row in rows]
            words: dict[int, list[str]] = {}
            products: dict[int, list[Product]] = {}
            if ids:
                for word in conn.execute(
                    sa.select(t.assets.c.brand_id, t.assets.c.original_name)
                    .where(t.assets.c.brand_id.in_(ids), t.assets.c.kind == "text", t.assets.c.removed_at.is_(None))
                    .order_by(t.assets.c.asset_id)
                ):
                    words.setdefault(word.brand_id, []).append(word.original_name)
                for product in conn.execute(
                    sa.select(t.brand_products)
                    .where(t.brand_products.c.brand_id.in_(ids))
                    .order_by(t.brand_products.c.name_key)
                ):
                    products.setdefault(product.brand_id, []).append(
                        Product(name=product.name, msrp=product.msrp, currency=product.currency)
                    )
        return [
            Brand(
                brand_id=row.brand_id,
                name=row.name,
                member=row.member_name,
                keywords=tuple(words.get(row.brand_id, ())),
                aliases=tuple(row.aliases or ()),
                lookalikes=tuple(row.lookalikes or ()),
                msrp=row.msrp,
                currency=row.currency,
                authorised_sellers=tuple(row.authorised_sellers or ()),
                categories=tuple(row.categories or ()),
                products=tuple(products.get(row.brand_id, ())),
            )
            for row in rows
        ]

    # -- assets ----------------------------------------------------------------------------

    def add_asset(
        self,
        *,
        brand_id: int,
        kind: AssetKind,
        info: ImageInfo,
        original_name: str,
        signals: dict[str, list[tuple[str, bytes]]],
        actor: str,
        replaces: int | None = None,
    ) -> tuple[Asset, bool]:
        """Register an asset with its signals; identical live content on the brand is returned unchanged."""
        live_key = f"{brand_id}:{info.sha256}"
        with self.engine.begin() as conn:
            existing = conn.execute(sa.select(t.assets.c.asset_id).where(t.assets.c.live_key == live_key)).first()
            if existing is not None:
                return self._asset(conn, existing.asset_id), False
            asset_id = new_id(
                conn.execute(
                    sa.insert(t.assets).values(
                        brand_id=brand_id,
                        kind=kind,
                        sha256=info.sha256,
                        original_name=original_name,
                        width=info.width,
                        height=info.height,
                        created_at=now(),
                        created_by=actor,
                        replaces_asset_id=replaces,
                        live_key=live_key,
                    )
                )
            )
            rows = [
                {"asset_id": asset_id, "matcher": matcher, "variant": variant, "signal": signal}
                for matcher, variants in signals.items()
                for variant, signal in variants
            ]
            if rows:
                conn.execute(sa.insert(t.asset_signals), rows)
            if replaces is not None:
                self._remove(conn, replaces, actor=actor, replaced_by=asset_id)
            self._audit(
                conn,
                actor,
                "asset.add",
                f"asset {asset_id}",
                {
                    "brand_id": brand_id,
                    "kind": kind,
                    "name": original_name,
                    "sha256": info.sha256,
                    "replaces": replaces,
                },
            )
            return self._asset(conn, asset_id), True

    def remove_asset(self, asset_id: int, *, actor: str) -> Asset:
        """Take an asset out of future scans; its row stays for history."""
        with self.engine.begin() as conn:
            self._remove(conn, asset_id, actor=actor, replaced_by=None)
            return self._asset(conn, asset_id)

    def _remove(self, conn: sa.Connection, asset_id: int, *, actor: str, replaced_by: int | None) -> None:
        updated = conn.execute(
            sa.update(t.assets)
            .where(t.assets.c.asset_id == asset_id, t.assets.c.removed_at.is_(None))
            .values(removed_at=now(), removed_by=actor, live_key=None)
        ).rowcount
        if not updated:
            raise NotFoundError(f"no live asset {asset_id}")
        self._audit(conn, actor, "asset.remove", f"asset {asset_id}", {"replaced_by": replaced_by})

    def _asset(self, conn: sa.Connection, asset_id: int) -> Asset:
        row = conn.execute(_asset_query().where(t.assets.c.asset_id == asset_id)).first()
        if row is None:
            raise NotFoundError(f"unknown asset {asset_id}")
        return _asset(row)

    def asset(self, asset_id: int) -> Asset:
        with self.engine.connect() as conn:
            return self._asset(conn, asset_id)

    def asset_brand_id(self, asset_id: int) -> int:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(t.assets.c.brand_id).where(t.assets.c.asset_id == asset_id)).first()
        if found is None:
            raise NotFoundError(f"unknown asset {asset_id}")
        return int(found.brand_id)

    def assets(self, brand: str | None = None, *, include_removed: bool = False) -> list[Asset]:
        query = _asset_query().order_by(t.assets.c.asset_id)
        if not include_removed:
            query = query.where(t.assets.c.removed_at.is_(None))
        if brand is not None:
            query = query.where(t.brands.c.brand_id == self.brand(brand).brand_id)
        with self.engine.connect() as conn:
            return [_asset(row) for row in conn.execute(query)]

    def asset_signals(self, matcher: str) -> SignalTable:
        """The matcher's signals of every live asset, as columns (ten million rows fit in memory)."""
        query = (
            sa.select(
                t.asset_signals.c.asset_id,
                t.assets.c.brand_id,
                t.asset_signals.c.variant,
                t.asset_signals.c.signal,
            )
            .join(t.assets, t.assets.c.asset_id == t.asset_signals.c.asset_id)
            .where(t.asset_signals.c.matcher == matcher, t.assets.c.removed_at.is_(None))
            .order_by(t.asset_signals.c.asset_id, t.asset_signals.c.variant)
        )
        builder = SignalTableBuilder()
        with self.engine.connect() as conn:
            for chunk in driver_chunks(conn, query, 100_000):
                builder.add_rows(chunk)
            builder.brand_names.update(
                (row.brand_id, row.name) for row in conn.execute(sa.select(t.brands.c.brand_id, t.brands.c.name))
            )
            builder.origins.update(
                (row.asset_id, row.origin)
                for row in conn.execute(
                    sa.select(t.asset_origins.c.asset_id, t.asset_origins.c.origin)
                    .join(t.assets, t.assets.c.asset_id == t.asset_origins.c.asset_id)
                    .where(t.assets.c.removed_at.is_(None))
                )
            )
        return builder.build()

    def assets_without_signals(self, matcher: str, kinds: Sequence[str]) -> list[tuple[int, str]]:
        """(asset id, sha256) of live image assets with no signals from ``matcher`` yet."""
        have = sa.select(t.asset_signals.c.asset_id).where(t.asset_signals.c.matcher == matcher)
        hash_only = sa.select(t.asset_origins.c.asset_id)  # no picture to encode
        query = sa.select(t.assets.c.asset_id, t.assets.c.sha256).where(
            t.assets.c.removed_at.is_(None),
            t.assets.c.kind.in_(list(kinds)),
            t.assets.c.asset_id.not_in(have),
            t.assets.c.asset_id.not_in(hash_only),
        )
        with self.engine.connect() as conn:
            return [(row.asset_id, row.sha256) for row in conn.execute(query)]

    def add_asset_signals(self, asset_id: int, matcher: str, variants: Sequence[tuple[str, bytes]]) -> None:
        with self.engine.begin() as conn:
            bulk_insert(
                conn,
                t.asset_signals,
                [{"asset_id": asset_id, "matcher": matcher, "variant": v, "signal": s} for v, s in variants],
            )

    # -- banks of shared signals ----------------------------------------------------------

    def shareable_signals(self, brand_ids: Sequence[int], matchers: Sequence[str]) -> list[SharedSignal]:
        """The given matchers' signals of the brands' live image assets, uploaded or imported."""
        query = (
            sa.select(
                t.assets.c.asset_id,
                t.assets.c.kind,
                t.assets.c.sha256,
                t.assets.c.width,
                t.assets.c.height,
                t.assets.c.original_name,
                t.brands.c.name.label("brand_name"),
                t.asset_signals.c.matcher,
                t.asset_signals.c.variant,
                t.asset_signals.c.signal,
            )
            .join(t.assets, t.assets.c.asset_id == t.asset_signals.c.asset_id)
            .join(t.brands, t.brands.c.brand_id == t.assets.c.brand_id)
            .where(
                t.assets.c.brand_id.in_(list(brand_ids)),
                t.assets.c.removed_at.is_(None),
                t.asset_signals.c.matcher.in_(list(matchers)),
            )
            .order_by(t.assets.c.asset_id, t.asset_signals.c.matcher, t.asset_signals.c.variant)
        )
        with self.engine.connect() as conn:
            return [
                SharedSignal(
                    brand=row.brand_name,
                    asset=str(row.asset_id),
                    kind=row.kind,
                    sha256=row.sha256,
                    width=row.width,
                    height=row.height,
                    name=row.original_name,
                    matcher=row.matcher,
                    variant=row.variant,
                    signal=bytes(row.signal),
                )
                for row in conn.execute(query)
            ]

    def add_bank_assets(
        self, *, brand_id: int, bank: str, origin: str, assets: Sequence[BankAsset], actor: str
    ) -> list[bool]:
        """Write hash-only assets in one transaction; per asset, whether it was new (not already
        imported from this bank, and not a picture the brand already has)."""
        written: list[bool] = []
        with self.engine.begin() as conn:
            for asset in assets:
                live_key = f"{brand_id}:{asset.sha256}"
                known = conn.execute(
                    sa.select(t.asset_origins.c.asset_id).where(
                        t.asset_origins.c.bank == bank, t.asset_origins.c.external_id == asset.external_id
                    )
                ).first()
                duplicate = conn.execute(sa.select(t.assets.c.asset_id).where(t.assets.c.live_key == live_key)).first()
                if known is not None or duplicate is not None:
                    written.append(False)
                    continue
                asset_id = new_id(
                    conn.execute(
                        sa.insert(t.assets).values(
                            brand_id=brand_id,
                            kind=asset.kind,
                            sha256=asset.sha256,
                            original_name=(asset.name or asset.external_id)[:500],
                            width=asset.width,
                            height=asset.height,
                            created_at=now(),
                            created_by=actor,
                            live_key=live_key,
                        )
                    )
                )
                conn.execute(
                    sa.insert(t.asset_origins).values(
                        asset_id=asset_id, bank=bank, external_id=asset.external_id, origin=origin, imported_at=now()
                    )
                )
                bulk_insert(
                    conn,
                    t.asset_signals,
                    [
                        {"asset_id": asset_id, "matcher": matcher, "variant": variant, "signal": signal}
                        for matcher, variants in asset.signals.items()
                        for variant, signal in variants
                    ],
                )
                written.append(True)
            if any(written):
                self._audit(
                    conn,
                    actor,
                    "bank.import",
                    f"brand {brand_id}",
                    {"bank": bank, "assets": sum(written), "already_present": len(written) - sum(written)},
                )
        return written

    def banks(self) -> list[dict[str, Any]]:
        """Imported banks: name, brand, live assets and when last imported."""
        query = (
            sa.select(
                t.asset_origins.c.bank,
                t.brands.c.name.label("brand"),
                sa.func.count().label("assets"),
                sa.func.max(t.asset_origins.c.imported_at).label("imported_at"),
            )
            .join(t.assets, t.assets.c.asset_id == t.asset_origins.c.asset_id)
            .join(t.brands, t.brands.c.brand_id == t.assets.c.brand_id)
            .where(t.assets.c.removed_at.is_(None))
            .group_by(t.asset_origins.c.bank, t.brands.c.name)
            .order_by(t.asset_origins.c.bank)
        )
        with self.engine.connect() as conn:
            return [
                {"bank": row.bank, "brand": row.brand, "assets": row.assets, "imported_at": iso(row.imported_at)}
                for row in conn.execute(query)
            ]

    # -- audit -----------------------------------------------------------------------------

    def audit_log(self, *, limit: int = 100) -> list[AuditEntry]:
        """The newest entries first. Verdicts audited before listings were named by their ids read
        ``listing 41`` (the internal key): those are shown by the listing's SOURCE/LISTING_ID too."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.audit).order_by(t.audit.c.audit_id.desc()).limit(limit)).all()
            keys = {int(found.group(1)) for row in rows if (found := _old_verdict_target(row))}
            names = {
                int(item.listing_pk): f"listing {item.source}/{item.listing_id}"
                for item in rows_in(
                    conn,
                    sa.select(t.listings.c.listing_pk, t.listings.c.source, t.listings.c.listing_id),
                    t.listings.c.listing_pk,
                    keys,
                )
            }
        return [
            AuditEntry(
                audit_id=row.audit_id,
                actor=row.actor,
                action=row.action,
                target=names.get(int(found.group(1)), row.target)
                if (found := _old_verdict_target(row))
                else row.target,
                details=row.details,
                at=iso(row.at),
            )
            for row in rows
        ]


_LISTING_KEY = re.compile(r"listing (\d+)")


def _old_verdict_target(row: Any) -> re.Match[str] | None:
    """``listing 41`` naming a listing by its internal key: only verdicts were audited so."""
    return _LISTING_KEY.fullmatch(row.target) if row.action == "verdict" else None


def _jsonable(values: Mapping[str, object]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(values, default=str))
    return result


def _asset_query() -> sa.Select[Any]:
    return sa.select(t.assets, t.brands.c.name.label("brand_name")).join(
        t.brands, t.brands.c.brand_id == t.assets.c.brand_id
    )


def _asset(row: Any) -> Asset:
    return Asset(
        asset_id=row.asset_id,
        brand=row.brand_name,
        kind=row.kind,
        sha256=row.sha256,
        original_name=row.original_name,
        width=row.width,
        height=row.height,
        created_by=row.created_by,
        removed=row.removed_at is not None,
        replaces_asset_id=row.replaces_asset_id,
    )
