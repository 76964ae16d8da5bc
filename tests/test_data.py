"""explorer.data on tiny fixtures built in tmp_path: python batches, ImageFolder copies, the cache, subsets, class
selection, every DataError, the synthetic set, BatchStream and normalisation."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from explorer import data
from explorer.config import CIFAR10_CLASSES, DataConfig
from explorer.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    BatchStream,
    DataError,
    crop_flip,
    eval_batches,
    find_cifar10,
    load_data,
    normalize,
    synthetic_cifar,
)

PER_BATCH = 20  # 5 train batches -> 100 train images, 10 per class; test_batch -> 2 per class


def write_batches(folder: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """The official pickle layout (dicts with b'data' uint8 [N, 3072] and b'labels'), with random pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name in data.BATCH_FILES:
        pixels = rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8)
        labels = [i % 10 for i in range(PER_BATCH)]
        with open(folder / name, "wb") as file:
            pickle.dump({b"data": pixels, b"labels": labels, b"batch_label": name.encode()}, file)
        written[name] = pixels
    return written


def class_colour(label: int) -> tuple[int, int, int]:
    return (20 * label + 10, 240 - 20 * label, 100)


def write_imagefolder(root: Path, classes, train: int = 4, test: int = 2, size=(40, 36)) -> None:
    """Solid images of a colour per class: PNG for train, JPEG for test, both 40x36 so loading must resize."""
    for split, count, suffix in (("train", train, "png"), ("test", test, "jpg")):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("RGB", size, class_colour(label)).save(folder / f"{i:04d}.{suffix}")


def mean_colour(images: torch.Tensor) -> torch.Tensor:
    return images.float().mean(dim=(-2, -1))


# --- python batches ------------------------------------------------------------------------------------------------

def test_batches_load_with_shapes_dtypes_and_pixels(tmp_path):
    written = write_batches(tmp_path / "cifar-10-batches-py")
    result = load_data(DataConfig(source=str(tmp_path), subset=100, test_subset=20))
    assert result.train_x.shape == (100, 3, 32, 32) and result.train_x.dtype == torch.uint8
    assert result.train_y.shape == (100,) and result.train_y.dtype == torch.int64
    assert result.test_x.shape == (20, 3, 32, 32) and result.test_y.dtype == torch.int64
    assert result.kind == "cifar10" and "python batches" in result.source
    assert result.classes == list(CIFAR10_CLASSES)
    # the whole set in its original order: pixels and labels are the pickled ones
    assert torch.equal(result.train_x[:PER_BATCH].reshape(PER_BATCH, -1), torch.from_numpy(written["data_batch_1"]))
    assert torch.equal(result.test_x.reshape(20, -1), torch.from_numpy(written["test_batch"]))
    assert result.train_y.tolist() == [i % 10 for i in range(100)]


def test_cifar10_source_searches_the_env_data_dir(tmp_path, monkeypatch):
    write_batches(tmp_path / "mine" / "cifar-10-batches-py")
    monkeypatch.setenv("EXPLORER_DATA_DIR", str(tmp_path / "mine"))
    result = load_data(DataConfig(source="cifar10", subset=50, test_subset=10))
    assert result.kind == "cifar10" and str(tmp_path / "mine") in result.source
    assert torch.bincount(result.train_y).tolist() == [5] * 10


def test_find_cifar10_on_fixtures(tmp_path):
    assert find_cifar10(tmp_path / "absent") is None
    assert find_cifar10(tmp_path) is None
    write_imagefolder(tmp_path / "other", ["a", "b"])
    assert find_cifar10(tmp_path / "other") is None  # an image folder, but not CIFAR-10's classes
    write_imagefolder(tmp_path / "jpg" / "cifar10-jpg", CIFAR10_CLASSES, train=1, test=1)
    location = find_cifar10(tmp_path / "jpg")
    assert location.kind == "imagefolder" and location.path == tmp_path / "jpg" / "cifar10-jpg"
    assert "CIFAR-10" in location.description
    write_batches(tmp_path / "py" / "cifar-10-batches-py")
    location = find_cifar10(tmp_path / "py")
    assert location.kind == "batches" and location.path == tmp_path / "py" / "cifar-10-batches-py"


def test_download_reports_progress_and_loads(tmp_path, monkeypatch):
    class FakeCIFAR10:
        def __init__(self, root, download):
            assert download
            write_batches(Path(root) / "cifar-10-batches-py")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    reports = []
    result = load_data(DataConfig(source="cifar10", subset=20, test_subset=10), tmp_path,
                       progress=lambda fraction, message: reports.append((fraction, message)))
    assert result.kind == "cifar10" and len(result.train_y) == 20
    fractions = [f for f, _ in reports]
    assert all(0 <= f <= 1 for f in fractions) and fractions[-1] == 1.0
    assert any("download" in message for _, message in reports)


def test_failed_download_raises_data_error(tmp_path, monkeypatch):
    def offline(root, download):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataError, match="could not download CIFAR-10.*network is unreachable.*synthetic"):
        load_data(DataConfig(source="cifar10"), tmp_path)


# --- ImageFolder ---------------------------------------------------------------------------------------------------

def test_imagefolder_resizes_and_labels_by_folder(tmp_path):
    write_imagefolder(tmp_path, ["c0", "c1", "c2"], train=4, test=4)
    result = load_data(DataConfig(source=str(tmp_path), subset=12, test_subset=12))
    assert result.kind == "folder" and result.classes == ["c0", "c1", "c2"]
    assert result.train_x.shape == (12, 3, 32, 32) and result.train_x.dtype == torch.uint8
    for images, labels, tolerance in ((result.train_x, result.train_y, 0), (result.test_x, result.test_y, 3)):
        expected = torch.tensor([class_colour(int(label)) for label in labels], dtype=torch.float32)
        assert (mean_colour(images) - expected).abs().max() <= tolerance


def test_cifar10_jpg_folder_counts_as_cifar10(tmp_path):
    write_imagefolder(tmp_path / "cifar10-jpg", CIFAR10_CLASSES, train=1, test=1)
    result = load_data(DataConfig(source="cifar10", subset=10, test_subset=10), tmp_path)
    assert result.kind == "cifar10" and result.source.startswith("CIFAR-10 (ImageFolder)")
    assert result.train_y.tolist() == list(range(10))


def test_cache_is_used_then_invalidated_by_a_changed_file(tmp_path, monkeypatch):
    write_imagefolder(tmp_path, ["c0", "c1"], train=5, test=5)
    cfg = DataConfig(source=str(tmp_path), subset=10, test_subset=10)
    first = load_data(cfg)
    assert list((tmp_path / ".cache").glob("*.pt"))

    def no_decoding(*args):
        raise AssertionError("decoded again although the cache was valid")

    original = data._decode_images
    monkeypatch.setattr(data, "_decode_images", no_decoding)
    second = load_data(cfg)
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)

    changed = tmp_path / "train" / "c0" / "0000.png"
    Image.new("RGB", (40, 36), (0, 0, 0)).save(changed)
    os.utime(changed, ns=(10**18, 10**18))
    with pytest.raises(AssertionError, match="decoded again"):
        load_data(cfg)
    monkeypatch.setattr(data, "_decode_images", original)
    third = load_data(cfg)
    assert mean_colour(third.train_x[0]).tolist() == [0.0, 0.0, 0.0]


def test_batches_cache_skips_unpickling(tmp_path, monkeypatch):
    write_batches(tmp_path / "cifar-10-batches-py")
    cfg = DataConfig(source=str(tmp_path), subset=100, test_subset=20)
    first = load_data(cfg)
    monkeypatch.setattr(data, "_read_batch", lambda path: pytest.fail("read a batch although the cache was valid"))
    assert torch.equal(load_data(cfg).train_x, first.train_x)


# --- subsets and class selection -----------------------------------------------------------------------------------

def test_subsets_are_balanced_and_deterministic(tmp_path):
    write_batches(tmp_path / "cifar-10-batches-py")
    cfg = DataConfig(source=str(tmp_path), subset=30, test_subset=10, seed=1)
    first, again = load_data(cfg), load_data(cfg)
    other = load_data(DataConfig(source=str(tmp_path), subset=30, test_subset=10, seed=2))
    assert torch.bincount(first.train_y).tolist() == [3] * 10
    assert torch.bincount(first.test_y).tolist() == [1] * 10
    assert torch.equal(first.train_x, again.train_x) and torch.equal(first.test_x, again.test_x)
    assert not torch.equal(first.train_x, other.train_x)
    uneven = load_data(DataConfig(source=str(tmp_path), subset=13, test_subset=10))
    assert torch.bincount(uneven.train_y).tolist() == [2, 2, 2] + [1] * 7


def test_class_selection_remaps_labels_in_the_given_order(tmp_path):
    write_imagefolder(tmp_path, ["c0", "c1", "c2"], train=6, test=6)
    result = load_data(DataConfig(source=str(tmp_path), subset=12, test_subset=10, classes=("c2", "c0")))
    assert result.classes == ["c2", "c0"]
    assert sorted(set(result.train_y.tolist())) == [0, 1]
    assert torch.bincount(result.train_y).tolist() == [6, 6]
    colours = mean_colour(result.train_x)
    assert colours[result.train_y == 0, 0].eq(class_colour(2)[0]).all()
    assert colours[result.train_y == 1, 0].eq(class_colour(0)[0]).all()


# --- errors --------------------------------------------------------------------------------------------------------

def test_missing_data_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(DataConfig(source=str(tmp_path / "nowhere")))


def test_directory_without_data(tmp_path):
    with pytest.raises(DataError, match="no images found.*train/<class>"):
        load_data(DataConfig(source=str(tmp_path)))


def test_corrupt_batch_names_the_file(tmp_path):
    write_batches(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3 is corrupt.*download it again"):
        load_data(DataConfig(source=str(tmp_path)))


def test_batch_with_wrong_pixels_is_corrupt(tmp_path):
    write_batches(tmp_path / "cifar-10-batches-py")
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as file:
        pickle.dump({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, file)
    with pytest.raises(DataError, match="test_batch is corrupt"):
        load_data(DataConfig(source=str(tmp_path)))


def test_incomplete_batches(tmp_path):
    write_batches(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(DataError, match="incomplete.*data_batch_5"):
        load_data(DataConfig(source=str(tmp_path)))


def test_class_folder_without_images(tmp_path):
    write_imagefolder(tmp_path, ["c0", "c1"])
    (tmp_path / "train" / "empty").mkdir()
    (tmp_path / "train" / "empty" / "notes.txt").write_text("no image here")
    (tmp_path / "test" / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder .*train.empty has no images"):
        load_data(DataConfig(source=str(tmp_path)))


def test_folder_without_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "train" / "loose.png")
    with pytest.raises(DataError, match="no class folders"):
        load_data(DataConfig(source=str(tmp_path)))


def test_test_classes_must_match_train_classes(tmp_path):
    write_imagefolder(tmp_path, ["c0", "c1"])
    (tmp_path / "test" / "c1").rename(tmp_path / "test" / "c9")
    with pytest.raises(DataError, match="same class folders"):
        load_data(DataConfig(source=str(tmp_path)))


def test_subset_larger_than_the_data_says_the_maximum(tmp_path):
    write_batches(tmp_path / "cifar-10-batches-py")
    with pytest.raises(DataError, match="subset 101 .* at most 100 .*subset <= 100"):
        load_data(DataConfig(source=str(tmp_path), subset=101, test_subset=10))
    with pytest.raises(DataError, match="test_subset <= 4"):
        load_data(DataConfig(source=str(tmp_path), subset=10, test_subset=10, classes=("cat", "dog")))


def test_unknown_class_of_a_folder(tmp_path):
    write_imagefolder(tmp_path, ["c0", "c1"])
    with pytest.raises(DataError, match="unknown class 'cat'.*c0, c1"):
        load_data(DataConfig(source=str(tmp_path), subset=10, test_subset=10, classes=("cat", "c0")))


def test_unreadable_image_names_the_file(tmp_path):
    write_imagefolder(tmp_path, ["c0", "c1"])
    (tmp_path / "train" / "c1" / "broken.png").write_bytes(b"\x89PNG but truncated")
    with pytest.raises(DataError, match=r"broken\.png"):
        load_data(DataConfig(source=str(tmp_path)))


# --- synthetic -----------------------------------------------------------------------------------------------------

def test_synthetic_shapes_and_balance():
    result = synthetic_cifar(50, 20, seed=0)
    assert result.train_x.shape == (50, 3, 32, 32) and result.train_x.dtype == torch.uint8
    assert result.test_x.shape == (20, 3, 32, 32) and result.test_y.dtype == torch.int64
    assert result.classes == list(CIFAR10_CLASSES) and result.kind == "synthetic"
    assert torch.bincount(result.train_y).tolist() == [5] * 10
    assert result.train_x.float().std() > 30  # images, not a constant


def test_synthetic_is_deterministic_by_seed():
    first, again, other = synthetic_cifar(30, 10, 0), synthetic_cifar(30, 10, 0), synthetic_cifar(30, 10, 1)
    assert torch.equal(first.train_x, again.train_x) and torch.equal(first.test_x, again.test_x)
    assert not torch.equal(first.train_x, other.train_x)
    assert torch.equal(synthetic_cifar(60, 10, 0).test_x, first.test_x)  # test set independent of n_train


def test_synthetic_through_load_data_selects_classes():
    result = load_data(DataConfig(source="synthetic", subset=20, test_subset=10, classes=("dog", "cat")))
    assert result.classes == ["dog", "cat"] and torch.bincount(result.train_y).tolist() == [10, 10]
    assert "seed 0" in result.source


def test_synthetic_twin_classes_differ_in_arrangement_not_in_content():
    """Classes 8 and 9 hold vertical stripes and a plain blob, stripes on top in 8 and below in 9: the same amount
    of stripe texture overall, in opposite halves."""
    result = synthetic_cifar(1000, 10, seed=0)
    stripes = (result.train_x[..., 1:].float() - result.train_x[..., :-1].float()).abs().mean(dim=(1, 3))  # [N, 32]
    upper, lower = stripes[:, :16].mean(1), stripes[:, 16:].mean(1)
    top_striped, bottom_striped = result.train_y == 8, result.train_y == 9
    assert (upper - lower)[top_striped].mean() > 0.5 and (upper - lower)[bottom_striped].mean() < -0.5
    total = upper + lower
    assert abs(total[top_striped].mean() - total[bottom_striped].mean()) < 0.05 * total[top_striped].mean()


# --- BatchStream, augmentation and normalisation -------------------------------------------------------------------

def small_data(n: int = 100) -> data.ImageData:
    return synthetic_cifar(n, 10, seed=3)


def test_batch_stream_is_deterministic_by_seed_and_epoch():
    images = small_data()
    stream = BatchStream(images, 32, True, "cpu", seed=5)
    assert stream.steps_per_epoch == 3  # drop-last: 100 // 32
    first = list(stream.epoch(0))
    again = list(BatchStream(images, 32, True, "cpu", seed=5).epoch(0))
    assert len(first) == 3
    for (x1, y1), (x2, y2) in zip(first, again):
        assert x1.shape == (32, 3, 32, 32) and x1.dtype == torch.float32 and y1.dtype == torch.int64
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(first[0][1], next(stream.epoch(1))[1])
    assert not torch.equal(first[0][1], next(BatchStream(images, 32, True, "cpu", seed=6).epoch(0))[1])


def test_batch_stream_smaller_than_one_batch_and_layouts():
    stream = BatchStream(small_data(20), 128, False, "cpu", seed=0, channels_last=True, dtype=torch.bfloat16)
    batches = list(stream.epoch(0))
    assert stream.steps_per_epoch == 1 and len(batches) == 1
    x, y = batches[0]
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.bfloat16
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert sorted(y.tolist()) == sorted(small_data(20).train_y.tolist())  # every image once


def test_augmentation_keeps_shapes_and_labels_but_changes_pixels():
    images = small_data()
    plain = list(BatchStream(images, 50, False, "cpu", seed=1).epoch(0))
    augmented = list(BatchStream(images, 50, True, "cpu", seed=1).epoch(0))
    for (x1, y1), (x2, y2) in zip(plain, augmented):
        assert x1.shape == x2.shape and torch.equal(y1, y2)
        assert not torch.equal(x1, x2)
    stored = normalize(images.train_x)

    def unchanged(batch: torch.Tensor) -> int:
        return sum(any(torch.equal(x, image) for image in stored) for x in batch)

    assert unchanged(plain[0][0]) == 50  # without augmentation every image is a stored one as it is
    assert unchanged(augmented[0][0]) < 10  # only the unshifted, unflipped few (1 in 162) stay as they were


def test_crop_flip_on_a_hand_made_image():
    image = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4)
    batch = image.repeat(4, 1, 1, 1)
    shifts = torch.tensor([[1, 1], [0, 0], [2, 1], [1, 1]])
    flips = torch.tensor([False, False, False, True])
    out = crop_flip(batch, shifts, flips, pad=1)
    assert out.shape == batch.shape and out.dtype == torch.uint8
    assert torch.equal(out[0], image[0])  # centred crop: unchanged
    shifted_down_right = torch.zeros(1, 4, 4, dtype=torch.uint8)
    shifted_down_right[:, 1:, 1:] = image[0, :, :3, :3]
    assert torch.equal(out[1], shifted_down_right)  # zero padding enters top and left
    shifted_up = torch.zeros(1, 4, 4, dtype=torch.uint8)
    shifted_up[:, :3] = image[0, :, 1:]
    assert torch.equal(out[2], shifted_up)
    assert torch.equal(out[3], image[0].flip(-1))  # mirrored


def test_normalize_uses_cifar10_statistics():
    mean_image = torch.tensor([round(m * 255) for m in CIFAR10_MEAN], dtype=torch.uint8).view(1, 3, 1, 1)
    centred = normalize(mean_image.expand(2, 3, 4, 4))
    assert centred.dtype == torch.float32 and centred.abs().max() < 1 / (255 * min(CIFAR10_STD))
    white = normalize(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    expected = torch.tensor([(1 - m) / s for m, s in zip(CIFAR10_MEAN, CIFAR10_STD)])
    assert torch.allclose(white[0, :, 0, 0], expected)


def test_eval_batches_cover_everything_in_order_without_augmentation():
    images = small_data(70)
    batches = list(eval_batches(images.train_x, images.train_y, 32, "cpu"))
    assert [len(y) for _, y in batches] == [32, 32, 6]
    assert torch.equal(torch.cat([x for x, _ in batches]), normalize(images.train_x))
    assert torch.equal(torch.cat([y for _, y in batches]), images.train_y)
