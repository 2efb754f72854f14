"""Learn the VLAD codebook shipped with the package from public-domain photos (scikit-image).

python scripts/build_codebook.py --out src/counterscan/matchers/vlad_codebook.npy
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata
from sklearn.cluster import KMeans

from counterscan.matchers.embedding import VladEmbedder

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "camera", "moon", "coins",
          "gravel", "brick", "page", "text", "grass", "immunohistochemistry", "horse", "clock")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("src/counterscan/matchers/vlad_codebook.npy"))
    parser.add_argument("--words", type=int, default=32)
    args = parser.parse_args()
    embedder = VladEmbedder(codebook=np.zeros((1, 128), np.float32))
    descriptors = []
    for name in PHOTOS:
        image = Image.fromarray(np.asarray(getattr(skdata, name)())).convert("RGB")
        found = embedder.descriptors(image)
        descriptors.append(np.sqrt(found / np.maximum(found.sum(axis=1, keepdims=True), 1e-7)))
    stacked = np.concatenate(descriptors)
    codebook = KMeans(n_clusters=args.words, n_init=4, random_state=0).fit(stacked).cluster_centers_
    np.save(args.out, codebook.astype(np.float32))
    print(f"codebook of {args.words} words from {len(stacked)} RootSIFT descriptors -> {args.out}")


if __name__ == "__main__":
    main()
