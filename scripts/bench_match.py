"""Matching benchmarks, each against a baseline run in the same process on the same inputs.

    python scripts/bench_match.py --photos ../shared/data/flickrlogos27-train/images

1. Hashing throughput (images/s): counterscan's pHash encode (draft JPEG decode) against
   ``imagehash.phash`` after a full decode, and against a draft-mode decode alone (the floor);
   dHash and PDQ (full resolution) beside them. imagededup's PHash encoder is compared when
   imagededup imports (it needs torch and torchvision: see docs/matching.md for a venv that has them).
2. Index search at ``--hashes`` 64-bit hashes: FAISS exact radius search against numpy brute force,
   queries/s and recall of the FAISS answer against numpy's; then the persisted index: a cold
   load, an incremental add of 1,000 hashes, and a full rebuild, timed.
3. Logo matching cost per listing photo against 100 and 1,000 registered logos, for each logo
   matcher a default scan runs and for all of them together (median ms on one core), and the
   signal each stores per image (KB). ``--only-logos`` runs this part alone.
4. Re-used product photos (the "copies" matcher) per listing photo against ``--products`` registered
   product photos: CPU time on one thread (median and 90th percentile) of the XFeat forward pass
   and of the index search with geometric verification, the signal stored per photo, and the time
   to build the asset index. ``--only-copies`` runs this part alone.
5. Reading words in a photo (the "ocr" matcher) per photo, at <= 500 px and at 800 px, CPU time on
   one thread (median and 90th percentile), beside rapidocr's own default settings as the baseline.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import cv2
import faiss
import imagehash
import numpy as np
from PIL import Image

from counterscan.config import Settings
from counterscan.imaging.decode import HASH_DRAFT_SIZE, DecodeLimits, Picture, decode
from counterscan.matchers import default_logo_matchers
from counterscan.matchers.index import BinaryHashIndex
from counterscan.matchers.ocr import READ_SIDE, read_picture
from counterscan.matchers.ocr_engine import ReaderOptions, TextReader
from counterscan.matchers.perceptual import DHASH, PDQ, PHASH, HashMatcher
from counterscan.records import AssetSignal

LIMITS = DecodeLimits(max_bytes=50_000_000, max_pixels=100_000_000)


def as_picture(data: bytes) -> Picture:
    return Picture.open(data, LIMITS)


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s"


def hashing(paths: list[Path]) -> None:
    """Every contender reads the file itself (from the page cache after the first pass)."""
    for path in paths:
        path.read_bytes()
    timings: dict[str, float] = {}
    for algorithm, label in ((PHASH, "counterscan pHash (draft decode)"), (DHASH, "counterscan dHash (draft decode)"),
                             (PDQ, "counterscan PDQ (full resolution)")):  # fmt: skip
        matcher = HashMatcher(algorithm, max_distance=10)
        started = time.perf_counter()
        for path in paths:
            matcher.encode(as_picture(path.read_bytes()))
        timings[label] = time.perf_counter() - started
    started = time.perf_counter()
    for path in paths:
        imagehash.phash(Image.open(io.BytesIO(path.read_bytes())).convert("L"))
    timings["imagehash.phash, full decode"] = time.perf_counter() - started
    started = time.perf_counter()
    for path in paths:
        decode(path.read_bytes(), LIMITS, draft_size=HASH_DRAFT_SIZE, mode="L")
    timings["draft-mode decode alone"] = time.perf_counter() - started
    try:
        from imagededup.methods import PHash  # type: ignore[import-not-found]

        encoder = PHash(verbose=False)
        started = time.perf_counter()
        for path in paths:
            encoder.encode_image(image_file=path)  # its own loader, as imagededup users call it
        timings["imagededup PHash.encode_image"] = time.perf_counter() - started
    except Exception as exc:  # imagededup imports torch and torchvision at import time
        print(f"imagededup not compared: {type(exc).__name__}: {str(exc)[:80]}")
    ours = timings["counterscan pHash (draft decode)"]
    print(f"hashing {len(paths)} JPEGs:")
    for label, seconds in timings.items():
        print(f"  {label:36} {rate(len(paths), seconds):>10}   counterscan is {seconds / ours:.2f}x this")
    one_decode(paths, timings["draft-mode decode alone"])


def one_decode(paths: list[Path], floor: float) -> None:
    """pHash and dHash of every image: each decoding for itself (as before pictures were shared)
    against one shared picture (what a scan does now), as throughput relative to the draft decode."""
    matchers = [HashMatcher(PHASH, max_distance=10), HashMatcher(DHASH, max_distance=6)]
    timings: dict[str, float] = {}
    for label in ("a decode per matcher (before)", "one shared decode (now)", "a decode per matcher (before)"):
        started = time.perf_counter()
        for path in paths:
            data = path.read_bytes()
            if label.startswith("one"):
                shared = as_picture(data)
                for matcher in matchers:
                    matcher.encode(shared)
            else:
                for matcher in matchers:
                    matcher.encode(as_picture(data))
        timings[label] = min(timings.get(label, float("inf")), time.perf_counter() - started)
    print("  pHash+dHash together, throughput as a share of the draft-decode floor:")
    for label, seconds in timings.items():
        print(f"    {label:34} {rate(len(paths), seconds):>10}   {floor / seconds:.2f}x the floor")
    before, now = timings["a decode per matcher (before)"], timings["one shared decode (now)"]
    print(f"    one shared decode is {before / now:.2f}x as fast as a decode per matcher")


def search(count: int, queries: int, radius: int) -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 256, size=(count, 8), dtype=np.uint8)
    probes = hashes[rng.choice(count, queries, replace=False)].copy()
    probes[:, 0] ^= 0b101  # two bits away from a stored hash
    signals = [AssetSignal(i, 1, "b", row.tobytes()) for i, row in enumerate(hashes)]
    index = BinaryHashIndex(64)
    index.sync(signals)
    started = time.perf_counter()
    found = index.within(probes, radius)
    faiss_seconds = time.perf_counter() - started
    unpacked = np.unpackbits(hashes, axis=1)
    started = time.perf_counter()
    truth = []
    for probe in np.unpackbits(probes, axis=1):
        distances = (unpacked != probe).sum(axis=1)
        truth.append(set(np.nonzero(distances <= radius)[0].tolist()))
    numpy_seconds = time.perf_counter() - started
    recall = np.mean(
        [truth_set <= {hit.asset_id for hit, _d in hits} for truth_set, hits in zip(truth, found, strict=True)]
    )
    print(f"radius-{radius} search over {count:,} hashes, {queries} queries:")
    faiss_rate, numpy_rate = rate(queries, faiss_seconds), rate(queries, numpy_seconds)
    print(f"  FAISS IndexBinaryFlat {faiss_rate:>10}   numpy brute force {numpy_rate:>8}")

    print(f"  FAISS is {numpy_seconds / faiss_seconds:.1f}x numpy; exact recall {recall:.3f}")
    persisted(signals)


def persisted(signals: list[AssetSignal]) -> None:
    """What a scan pays to bring the saved index up to date, against building it afresh."""
    with tempfile.TemporaryDirectory() as folder:
        BinaryHashIndex(64, Path(folder) / "bench.npz").sync(signals[:-1000])
        started = time.perf_counter()
        report = BinaryHashIndex(64, Path(folder) / "bench.npz").sync(signals)
        incremental = time.perf_counter() - started
        started = time.perf_counter()
        BinaryHashIndex(64, Path(folder) / "bench.npz").sync(signals)
        unchanged = time.perf_counter() - started
    started = time.perf_counter()
    BinaryHashIndex(64).sync(signals)
    rebuild = time.perf_counter() - started
    print(f"persisted index of {len(signals):,} hashes: load + add {report.added:,} {incremental:.2f} s, "
          f"load unchanged {unchanged:.2f} s, build from scratch {rebuild:.2f} s")  # fmt: skip


def logos(datas: list[bytes], photos: list[Path], counts: tuple[int, ...]) -> None:
    """Each default logo matcher on every photo (decode, signal, search and verification), one core."""
    faiss.omp_set_num_threads(1)  # the target is per listing image on one core
    cv2.setNumThreads(1)
    matchers = default_logo_matchers(Settings())
    crops = []
    for path in photos[: max(counts)]:
        image = Image.open(path).convert("RGB")
        w, h = image.size
        buffer = io.BytesIO()
        image.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4)).save(buffer, "PNG")
        crops.append(buffer.getvalue())
    queries = datas[:60]
    for count in counts:
        totals = np.zeros(len(queries))
        sizes = np.zeros(len(queries))
        for matcher in matchers:
            signals = [
                AssetSignal(i, i, f"b{i}", signal, variant)
                for i, crop in enumerate(crops[:count])
                for variant, signal in matcher.encode_asset(as_picture(crop))
            ]
            index = matcher.build_index(signals)
            times, encoded = [], []
            for data in queries:
                started = time.perf_counter()
                signal = matcher.encode(as_picture(data))
                index.query([("q", signal)])
                times.append(time.perf_counter() - started)
                encoded.append(len(signal))
            totals += times
            sizes += encoded
            print(f"logo matching per photo against {count:>5} logos, {matcher.name:10} median "
                  f"{np.median(times) * 1000:4.0f} ms, stored signal median "
                  f"{np.median(encoded) / 1024:5.1f} KB")  # fmt: skip
        print(f"logo matching per photo against {count:>5} logos, all {len(matchers)} default matchers: median "
              f"{np.median(totals) * 1000:.0f} ms, stored signals median {np.median(sizes) / 1024:.1f} KB "
              f"(max {sizes.max() / 1024:.1f} KB)")  # fmt: skip


def copies(datas: list[bytes], photos: list[Path], counts: tuple[int, ...], queries: int = 60) -> None:
    """The copies matcher per listing photo (the photo shares nothing with the products), one thread."""
    from counterscan.imaging.learned import LocalFeatureNetwork
    from counterscan.matchers.copies import CopyMatcher
    from counterscan.scan.executors import limit_native_threads

    limit_native_threads(1)
    faiss.omp_set_num_threads(1)
    cv2.setNumThreads(1)
    matcher = CopyMatcher(LocalFeatureNetwork(threads=1))
    matcher.network.load()
    started = time.process_time()
    assets = [matcher.encode_asset(as_picture(path.read_bytes())) for path in photos[: max(counts)]]
    per_asset = (time.process_time() - started) / len(assets)
    print(f"copies: describing a product photo (3 views) {per_asset * 1000:.0f} ms CPU")
    for count in counts:
        signals = [AssetSignal(i, i, f"b{i}", signal, variant) for i, views in enumerate(assets[:count])
                   for variant, signal in views]  # fmt: skip
        started = time.process_time()
        index = matcher.build_index(signals)
        built = time.process_time() - started
        forward, search, sizes = [], [], []
        for data in datas[:queries]:
            picture = as_picture(data)
            picture.reduced(640)  # the decode is shared with every matcher: not counted here
            started = time.process_time()
            signal = matcher.encode(picture)
            forward.append(time.process_time() - started)
            started = time.process_time()
            index.query([("q", signal)])
            search.append(time.process_time() - started)
            sizes.append(len(signal))
        total = np.array(forward) + np.array(search)
        print(f"copies against {count:>4} product photos ({index.index.ntotal:,} points, index built in {built:.0f} s "
              f"CPU): per photo median {np.median(total) * 1000:.0f} ms, 90th percentile "
              f"{np.percentile(total, 90) * 1000:.0f} ms (XFeat {np.median(forward) * 1000:.0f} ms, search and "
              f"verification {np.median(search) * 1000:.0f} ms); "
              f"signal median {np.median(sizes) / 1024:.1f} KB")  # fmt: skip


def reading(datas: list[bytes], count: int = 40) -> None:
    """CPU time per photo of reading its words, ours against rapidocr's defaults on the same photos."""
    from rapidocr_onnxruntime import RapidOCR

    reader = TextReader(ReaderOptions())
    baseline = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
    small = [decode(data, LIMITS, draft_size=(READ_SIDE, READ_SIDE)) for data in datas[:count]]
    sizes = {"<= 500 px": small, "800 px": [image.resize((800, round(800 * image.height / image.width)))
                                            for image in small]}  # fmt: skip
    reader.read(np.asarray(small[0]))
    for label, images in sizes.items():
        ours, theirs = [], []
        for image in images:
            started = time.process_time()
            read_picture(reader, image, image.size)
            ours.append(time.process_time() - started)
            started = time.process_time()
            baseline(np.asarray(image)[:, :, ::-1])
            theirs.append(time.process_time() - started)
        print(f"reading words per photo at {label}: median {np.median(ours) * 1000:.0f} ms, 90th percentile "
              f"{np.percentile(ours, 90) * 1000:.0f} ms; rapidocr defaults {np.median(theirs) * 1000:.0f} ms "
              f"(ours is {np.median(theirs) / np.median(ours):.1f}x faster)")  # fmt: skip


NIGHT_HOURS = 8.0
NIGHT_IMAGES = 1_000_000
NIGHT_CORES = 2


def projection(datas: list[bytes], photos: list[Path], logo_count: int, count: int = 30) -> None:
    """CPU time per distinct listing photo of the default image-matcher set for brands with logos
    (one shared decode; hashes; keypoints against ``logo_count`` logos; words read), on one thread,
    and what it means for a nightly scan of 1M distinct images on the 2-core machine."""
    from counterscan.config import Settings
    from counterscan.matchers import IMAGE_MATCHERS, default_matchers, is_costly
    from counterscan.scan.executors import limit_native_threads

    limit_native_threads(1)
    settings = Settings(home=Path(tempfile.mkdtemp()))
    names = default_matchers({"product", "logo"})
    matchers = {name: IMAGE_MATCHERS[name](settings) for name in names}
    signals: dict[str, list[AssetSignal]] = {}
    if "copies" in matchers:
        products = [as_picture(path.read_bytes()) for path in photos[-50:]]
        signals["copies"] = [AssetSignal(i, i, f"p{i}", signal, variant) for i, picture in enumerate(products)
                             for variant, signal in matchers["copies"].encode_asset(picture)]  # fmt: skip
    crops = []
    for path in photos[:logo_count]:
        image = Image.open(path).convert("RGB")
        w, h = image.size
        buffer = io.BytesIO()
        image.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4)).save(buffer, "PNG")
        crops.append(buffer.getvalue())
    for name, matcher in matchers.items():
        if "logo" in matcher.asset_kinds:  # the logo matchers (keypoints, marks, shapes) against the crops
            encoded = [matcher.encode_asset(as_picture(crop))[0][1] for crop in crops]
            signals[name] = [AssetSignal(i, i, f"b{i}", s) for i, s in enumerate(encoded)]
    indexes = {name: matcher.build_index(signals.get(name, [])) for name, matcher in matchers.items()}
    spent = {name: [] for name in ["decode", *names]}  # type: dict[str, list[float]]
    for data in datas[:count]:
        started = time.process_time()
        picture = as_picture(data)
        picture.reduced(128, "L")  # the shared decode the hashes use
        spent["decode"].append(time.process_time() - started)
        for name, matcher in matchers.items():
            started = time.process_time()
            signal = matcher.encode(picture)
            indexes[name].query([("q", signal)])
            spent[name].append(time.process_time() - started)
    median = {name: float(np.median(times)) for name, times in spent.items()}
    cheap = median["decode"] + sum(median[name] for name in names if not is_costly(name))
    costly = sum(median[name] for name in names if is_costly(name))
    print(
        f"default image matchers for brands with photos and {logo_count} logos, CPU ms per photo (median, one thread):"
    )
    print("  " + ", ".join(f"{name} {seconds * 1000:.1f}" for name, seconds in median.items())
          + f"; all {(cheap + costly) * 1000:.0f} ms")  # fmt: skip
    budget = NIGHT_HOURS * 3600 * NIGHT_CORES
    everything = NIGHT_IMAGES * (cheap + costly) / NIGHT_CORES / 3600
    verdict = "fits" if everything <= NIGHT_HOURS else "does not fit"
    print(f"  nightly projection, {NIGHT_IMAGES:,} distinct images on {NIGHT_CORES} cores: every matcher on every "
          f"image {everything:.1f} h ({verdict} in {NIGHT_HOURS:.0f} h)")  # fmt: skip
    cheap_hours = NIGHT_IMAGES * cheap / NIGHT_CORES / 3600
    reached = min(NIGHT_IMAGES, int(max(0.0, budget - NIGHT_IMAGES * cheap) / max(costly, 1e-9)))
    costly_names = ", ".join(n for n in names if is_costly(n))
    print(f"  cheap matchers on every image {cheap_hours:.2f} h; the rest of {NIGHT_HOURS:.0f} h covers the costly "
          f"ones ({costly_names}) on {reached:,} images, {NIGHT_IMAGES - reached:,} would wait "
          "for the next run")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--hashes", type=int, default=1_000_000)
    parser.add_argument("--projection-only", action="store_true", help="only the nightly-scan projection")
    parser.add_argument("--logos", type=int, default=1000, help="logos registered in the projection")
    parser.add_argument("--only-logos", action="store_true", help="only the logo matchers' cost")
    parser.add_argument("--products", default="50,200", help="product photos registered for the copies matcher")
    parser.add_argument("--only-copies", action="store_true", help="only the copies matcher's cost")
    args = parser.parse_args()
    photos = sorted(args.photos.glob("*.jpg"))
    datas = [path.read_bytes() for path in photos[: args.images]]
    if args.only_logos:
        logos(datas, photos[::-1], (100, 1000))
        return
    product_counts = tuple(int(n) for n in args.products.split(","))
    if args.only_copies:
        copies(datas[-60:], photos, product_counts)
        return
    if args.projection_only:
        projection(datas, photos[::-1], args.logos)
        return
    hashing(photos[: args.images])
    with tempfile.TemporaryDirectory() as folder:
        # Marketplace photos are larger than FlickrLogos' 500 px: the same photos at 2,000 px.
        large = []
        for number, path in enumerate(photos[: args.images // 4]):
            image = Image.open(path).convert("RGB")
            large.append(Path(folder) / f"{number}.jpg")
            image.resize((image.width * 4, image.height * 4), Image.Resampling.BICUBIC).save(large[-1], quality=90)
        print("the same photos upscaled 4x (about 2,000 px, a marketplace photo's size):")
        hashing(large)
    search(args.hashes, 200, 8)
    logos(datas, photos[::-1], (100, 1000))
    copies(datas[-60:], photos, product_counts)
    reading(datas)
    projection(datas, photos[::-1], args.logos)


if __name__ == "__main__":
    main()
