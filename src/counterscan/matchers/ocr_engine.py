"""Text read from photos: PP-OCRv4 detection and recognition through ``rapidocr-onnxruntime``.

The ONNX models (Chinese and English, about 15 MB) ship inside the rapidocr wheel, so nothing is
downloaded at run time. This module only wraps the engine: pixels in, recognised lines with their
confidence and box out. What the words mean (brands, look-alikes, counterfeit vocabulary) is
decided by the matching logic in ``matchers/ocr.py``, which shares the title matcher's.

The engine is tuned for cost, by measurement on real photos (``scripts/bench_match.py``,
``scripts/eval_logos.py --ocr``): the detector sees the picture at ``det_side`` px on its longest
side instead of rapidocr's default of at least 736 px on its *shortest* side (which upscaled a
500 px photo about 2x and cost 4-5x as much), the angle classifier is off (upside-down text is
rare in listing photos), at most ``max_lines`` boxes are recognised (the tallest text first: brand
names are printed big), and one box at a time: on one CPU thread a batch costs more than its boxes
read singly (8 boxes of 48 x 320 px: about 1,070 ms batched against 8 x 32 ms), and a batch pads
every box to its widest one's width.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class ReaderOptions:
    det_side: int = 480
    """Longest side, in px, of the picture the text detector sees (a multiple of 32)."""
    max_lines: int = 16
    """At most this many detected text boxes are recognised, the tallest first."""
    rec_batch: int = 1
    """Boxes recognised per model call (1: measured cheapest on one thread, see above)."""
    min_confidence: float = 0.5
    """Recognised lines under this confidence are dropped."""
    threads: int = 1
    """ONNX Runtime threads per reader: one per scan worker, the workers give the parallelism."""

    def key(self) -> str:
        """Names the reader and its settings, stored beside the text it read."""
        settings = {k: v for k, v in asdict(self).items() if k != "threads"}
        return "ppocrv4:" + json.dumps(settings, sort_keys=True, separators=(",", ":"))


Quad = tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class TextLine:
    """One recognised line of text."""

    text: str
    confidence: float
    box: Quad
    """Corners clockwise from the top left, in the full-size picture's pixels."""


def _clockwise(points: np.ndarray) -> np.ndarray:
    by_x = points[np.argsort(points[:, 0])]
    left = by_x[:2][np.argsort(by_x[:2, 1])]
    right = by_x[2:][np.argsort(by_x[2:, 1])]
    return np.array([left[0], right[0], right[1], left[1]], np.float32)


def _crop(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The quad's contents straightened into a rectangle (turned upright when it stands tall)."""
    width = max(1, int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3]))))
    height = max(1, int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2]))))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    warp = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    crop = cv2.warpPerspective(image, warp, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if height >= 1.5 * width:
        crop = np.ascontiguousarray(np.rot90(crop))
    return crop


class TextReader:
    """Reads the lines of text in a picture. Loads its models on first use (about 0.3 s), once."""

    def __init__(self, options: ReaderOptions | None = None) -> None:
        self.options = options or ReaderOptions()
        self._lock = threading.Lock()
        self._engine: Any = None

    def _models(self) -> Any:
        with self._lock:
            if self._engine is None:
                from rapidocr_onnxruntime import RapidOCR  # loads onnxruntime: only when text is read

                self._engine = RapidOCR(
                    intra_op_num_threads=self.options.threads,
                    inter_op_num_threads=1,
                    use_cls=False,
                    rec_batch_num=self.options.rec_batch,
                    print_verbose=False,
                )
            return self._engine

    def read(self, rgb: np.ndarray, *, scale: float = 1.0) -> list[TextLine]:
        """Lines of text in an RGB picture (H x W x 3, uint8), top to bottom; box coordinates are
        multiplied by ``scale`` (to give them in a larger original's pixels)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 8:
            return []
        engine = self._models()
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # the PP-OCR models were trained on OpenCV's BGR
        quads = self._detect(engine, bgr)
        if not quads:
            return []
        crops = [_crop(bgr, quad) for quad in quads]
        recognised, _elapsed = engine.text_rec(crops)
        lines = []
        for quad, (text, confidence) in zip(quads, recognised, strict=True):
            text = str(text).strip()
            if not text or float(confidence) < self.options.min_confidence:
                continue
            corners = tuple((round(float(x) * scale, 1), round(float(y) * scale, 1)) for x, y in quad)
            lines.append(TextLine(text, round(float(confidence), 4), corners))  # type: ignore[arg-type]
        return sorted(lines, key=lambda line: (line.box[0][1], line.box[0][0]))

    def _detect(self, engine: Any, bgr: np.ndarray) -> list[np.ndarray]:
        height, width = bgr.shape[:2]
        ratio = min(1.0, self.options.det_side / max(height, width))
        # The detector needs sides that are multiples of 32.
        size = (max(32, round(width * ratio / 32) * 32), max(32, round(height * ratio / 32) * 32))
        resized = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        tensor = ((resized.astype(np.float32) / 127.5) - 1.0).transpose(2, 0, 1)[None]
        detector = engine.text_det
        prediction = detector.infer(tensor)[0]
        boxes, _scores = detector.postprocess_op(prediction, (height, width))
        quads = []
        for box in boxes:
            quad = _clockwise(np.asarray(box, np.float32))
            quad[:, 0] = np.clip(quad[:, 0], 0, width - 1)
            quad[:, 1] = np.clip(quad[:, 1], 0, height - 1)
            if np.linalg.norm(quad[0] - quad[1]) > 3 and np.linalg.norm(quad[0] - quad[3]) > 3:
                quads.append(quad)
        # Brand names are printed big: keep the tallest boxes when there are too many to read.
        quads.sort(key=lambda quad: -float(np.linalg.norm(quad[0] - quad[3])))
        return quads[: self.options.max_lines]
