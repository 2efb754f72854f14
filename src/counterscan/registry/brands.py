"""Brand profiles: names, aliases, trademark words, look-alikes, prices, sellers, categories."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from counterscan.errors import UserError
from counterscan.records import Brand, Member, Product
from counterscan.registry.assets import add_text_assets
from counterscan.registry.members import require_owner
from counterscan.store.protocols import CatalogueWriter


def _words(values: Sequence[str]) -> list[str]:
    seen: dict[str, str] = {}
    for value in values:
        cleaned = " ".join(value.split())
        if cleaned:
            seen.setdefault(cleaned.casefold(), cleaned)
    return list(seen.values())


def check_price(msrp: float | None, currency: str | None) -> str | None:
    if (msrp is None) != (currency is None):
        raise UserError("give --msrp and --currency together")
    if msrp is not None and msrp <= 0:
        raise UserError(f"MSRP must be positive, not {msrp}")
    if currency is None:
        return None
    if len(currency) != 3 or not currency.isalpha():
        raise UserError(f"currency {currency!r} is not an ISO 4217 code such as USD")
    return currency.upper()


def add_brand(
    store: CatalogueWriter,
    actor: Member,
    name: str,
    *,
    keywords: Sequence[str] = (),
    aliases: Sequence[str] = (),
    lookalikes: Sequence[str] = (),
    msrp: float | None = None,
    currency: str | None = None,
    authorised_sellers: Sequence[str] = (),
    categories: Sequence[str] = (),
) -> Brand:
    """Register a brand owned by ``actor``; its keywords become its first ``text`` assets."""
    name = " ".join(name.split())
    if not name:
        raise UserError("brand name must not be empty")
    if actor.is_analyst:
        raise UserError("analysts do not own brands; act as the brand owner's member")
    store.add_brand(
        name,
        member_id=actor.member_id,
        actor=actor.name,
        aliases=_words(aliases),
        lookalikes=_words(lookalikes),
        msrp=msrp,
        currency=check_price(msrp, currency),
        authorised_sellers=_words(authorised_sellers),
        categories=_words(categories),
    )
    if keywords:
        add_text_assets(store, actor, brand=name, words=keywords)
    return store.brand(name)


@dataclass(frozen=True)
class BrandChanges:
    """Additions and removals to a brand's lists, and an optional new default price."""

    add: dict[str, Sequence[str]] = field(default_factory=dict)
    remove: dict[str, Sequence[str]] = field(default_factory=dict)
    msrp: float | None = None
    currency: str | None = None


LIST_FIELDS = ("aliases", "lookalikes", "authorised_sellers", "categories")


def update_brand(store: CatalogueWriter, actor: Member, name: str, changes: BrandChanges) -> Brand:
    brand = store.brand(name)
    require_owner(actor, brand)
    values: dict[str, Any] = {}
    for field_name in LIST_FIELDS:
        current: list[str] = list(getattr(brand, field_name))
        added = _words(changes.add.get(field_name, ()))
        removed = {word.casefold() for word in _words(changes.remove.get(field_name, ()))}
        missing = removed - {word.casefold() for word in current}
        if missing:
            raise UserError(f"brand {brand.name!r} has no {field_name[:-1].replace('_', ' ')} {sorted(missing)[0]!r}")
        updated = _words([word for word in current if word.casefold() not in removed] + added)
        if updated != current:
            values[field_name] = updated
    if changes.msrp is not None or changes.currency is not None:
        values["currency"] = check_price(changes.msrp, changes.currency)
        values["msrp"] = changes.msrp
    if values:
        store.update_brand(brand.brand_id, actor=actor.name, changes=values)
    return store.brand(brand.name)


def set_product(
    store: CatalogueWriter, actor: Member, brand_name: str, product: str, *, msrp: float, currency: str
) -> Brand:
    brand = store.brand(brand_name)
    require_owner(actor, brand)
    product = " ".join(product.split())
    if not product:
        raise UserError("product name must not be empty")
    code = check_price(msrp, currency)
    assert code is not None
    store.set_product(brand.brand_id, Product(name=product, msrp=msrp, currency=code), actor=actor.name)
    return store.brand(brand.name)


def remove_product(store: CatalogueWriter, actor: Member, brand_name: str, product: str) -> Brand:
    brand = store.brand(brand_name)
    require_owner(actor, brand)
    store.remove_product(brand.brand_id, product, actor=actor.name)
    return store.brand(brand.name)
