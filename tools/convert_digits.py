"""Convert scikit-learn's copy of the UCI handwritten digits into sasa_bench/data/digits.npz.

    pip install scikit-learn && python tools/convert_digits.py && pip uninstall -y scikit-learn

Run once, by a maintainer; sasa_bench never imports scikit-learn. The output holds the 1,797
8x8 images (uint8, 0..16) with a fixed, stratified 80/20 train/test split (numpy seed 0: 1,438
train, 359 test), and the dataset's citation and licence as strings. Rerunning it reproduces
the file's arrays exactly.

Data: E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
Learning Repository, 1998, https://doi.org/10.24432/C50P49, CC BY 4.0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "sasa_bench" / "data" / "digits.npz"
TEST_FRACTION = 0.2
SEED = 0
CITATION = (
    "E. Alpaydin and C. Kaynak. Optical Recognition of Handwritten Digits. UCI Machine "
    "Learning Repository, 1998. https://doi.org/10.24432/C50P49 (the 1,797-image copy "
    "shipped by scikit-learn as load_digits)"
)
LICENSE = "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)"


def stratified_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of train and test: TEST_FRACTION of every class, chosen with a fixed seed."""
    rng = np.random.RandomState(SEED)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = int(round(len(members) * TEST_FRACTION))
        test.append(members[:cut])
        train.append(members[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def main() -> None:
    from sklearn.datasets import load_digits  # only here: the split is shared without it

    digits = load_digits()
    images = digits.images.astype(np.uint8)
    assert np.array_equal(images, digits.images), "digits are integers 0..16"
    labels = digits.target.astype(np.uint8)
    train, test = stratified_split(labels)
    np.savez_compressed(
        OUT,
        x_train=images[train],
        y_train=labels[train],
        x_test=images[test],
        y_test=labels[test],
        citation=np.array(CITATION),
        license=np.array(LICENSE),
    )
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes): {len(train)} train, {len(test)} test")


if __name__ == "__main__":
    main()
