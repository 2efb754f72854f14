"""The one SQL store satisfies every narrow protocol the library asks for.

mypy checks the types (the annotated assignments below fail ``mypy`` when a method is missing or
typed otherwise); the tests check the names and parameters at run time, and that a protocol lists
nothing its callers no longer use.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import counterscan
from counterscan.store import Store, protocols
from counterscan.store.protocols import (
    ActiveModel,
    BatchCommitter,
    CaseDesk,
    CatalogueReader,
    CatalogueWriter,
    CheckCatalogue,
    CheckRecorder,
    ConfirmedVerdicts,
    EvidenceReader,
    ListingWriter,
    Locks,
    MemberDirectory,
    ModelRegistry,
    OperationsReader,
    ReviewDesk,
    ReviewSite,
    ScanLedger,
    ScanRecorder,
    SignalBackfill,
    TrainingSource,
    TrainingStore,
    WebhookOutbox,
)

PROTOCOLS: tuple[type, ...] = tuple(
    value
    for value in vars(protocols).values()
    if isinstance(value, type) and value.__module__ == protocols.__name__ and getattr(value, "_is_protocol", False)
)
LIBRARY = Path(counterscan.__file__).parent


def _members(protocol: type) -> dict[str, inspect.Signature]:
    """The methods a protocol declares, its own and those of the protocols it extends."""
    found: dict[str, inspect.Signature] = {}
    for cls in protocol.__mro__:
        if cls.__module__ != "counterscan.store.protocols":
            continue
        for name, value in vars(cls).items():
            if not name.startswith("_") and callable(value):
                found.setdefault(name, inspect.signature(value))
    return found


def _shape(signature: inspect.Signature) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_a_store_is_each_protocol(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        catalogue_reader: CatalogueReader = store
        catalogue_writer: CatalogueWriter = store
        member_directory: MemberDirectory = store
        locks: Locks = store
        listing_writer: ListingWriter = store
        evidence_reader: EvidenceReader = store
        confirmed_verdicts: ConfirmedVerdicts = store
        active_model: ActiveModel = store
        model_registry: ModelRegistry = store
        training_source: TrainingSource = store
        training_store: TrainingStore = store
        scan_ledger: ScanLedger = store
        review_desk: ReviewDesk = store
        case_desk: CaseDesk = store
        review_site: ReviewSite = store
        signal_backfill: SignalBackfill = store
        check_catalogue: CheckCatalogue = store
        check_recorder: CheckRecorder = store
        webhook_outbox: WebhookOutbox = store
        operations_reader: OperationsReader = store
        batch_committer: BatchCommitter = store
        scan_recorder: ScanRecorder = store
        assigned = (
            catalogue_reader,
            catalogue_writer,
            member_directory,
            locks,
            listing_writer,
            evidence_reader,
            confirmed_verdicts,
            active_model,
            model_registry,
            training_source,
            training_store,
            scan_ledger,
            review_desk,
            case_desk,
            review_site,
            signal_backfill,
            check_catalogue,
            check_recorder,
            webhook_outbox,
            operations_reader,
            batch_committer,
            scan_recorder,
        )
        # Every protocol of the module is assigned above, so mypy checks the store against each.
        assert len(assigned) == len(PROTOCOLS)
        assert catalogue_reader.brands() == []
        assert review_desk.suspects() == []
        assert operations_reader.operational_counts().listings == 0


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda protocol: protocol.__name__)
def test_store_has_every_method_of(protocol: type) -> None:
    members = _members(protocol)
    assert members, f"{protocol.__name__} declares no methods"
    for name, declared in members.items():
        implemented = getattr(Store, name, None)
        assert callable(implemented), f"Store has no {name}, which {protocol.__name__} declares"
        assert _shape(inspect.signature(implemented)) == _shape(declared), name


def test_every_protocol_method_has_a_caller_outside_the_store() -> None:
    """A protocol lists what its callers use: a method nobody calls any more leaves it."""
    sources = "\n".join(
        path.read_text(encoding="utf-8")
        for path in LIBRARY.rglob("*.py")
        if LIBRARY / "store" not in path.parents and path.stem not in ("cli", "api", "demo")
    )
    declared = {name for protocol in PROTOCOLS for name in _members(protocol)}
    unused = sorted(name for name in declared if not re.search(rf"\.{name}\b", sources))
    assert unused == []
