"""explorer.data on tiny fixtures built in tmp_path: python batches (md5-checked before unpickling), ImageFolder
copies, data sources by name, the cache, parallel decoding, subsets, class selection, every DataError, the
synthetic set, BatchStream and normalisation."""

import hashlib
import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from explorer import data
from explorer.data import cache, decode, layout, sources
from explorer.config import CIFAR10_CLASSES, MAX_IMAGES, DataConfig
from explorer.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    BatchStream,
    DataError,
    available_sources,
    crop_flip,
    eval_batches,
    find_cifar10,
    load_data,
    normalize,
    select_subset,
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


def trust(folder: Path, monkeypatch) -> None:
    """Make the batch files now in `folder` the 'official' ones: their md5 becomes the published one."""
    for name in data.BATCH_FILES:
        if (folder / name).is_file():
            monkeypatch.setitem(data.BATCH_MD5, name, hashlib.md5((folder / name).read_bytes()).hexdigest())


@pytest.fixture
def cifar_dir(tmp_path, monkeypatch) -> Path:
    """A data directory holding (fake, trusted) CIFAR-10 python batches; the source cifar10 finds it."""
    root = tmp_path / "data"
    write_batches(root / data.BATCHES_FOLDER)
    trust(root / data.BATCHES_FOLDER, monkeypatch)
    monkeypatch.setenv("EXPLORER_DATA_DIR", str(root))
    return root


def cifar(subset: int = 100, test_subset: int = 20, **kwargs) -> DataConfig:
    return DataConfig(source="cifar10", subset=subset, test_subset=test_subset, **kwargs)


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


def image_root(tmp_path, monkeypatch, name: str = "imgs") -> Path:
    """An empty folder that the operator offers as the data root `name` (EXPLORER_DATA_ROOTS)."""
    root = tmp_path / "roots" / name
    root.mkdir(parents=True)
    monkeypatch.setenv("EXPLORER_DATA_ROOTS", f"{name}={root}")
    return root


def folder(subset: int = 10, test_subset: int = 10, **kwargs) -> DataConfig:
    return DataConfig(source="imgs", subset=subset, test_subset=test_subset, **kwargs)


def mean_colour(images: torch.Tensor) -> torch.Tensor:
    return images.float().mean(dim=(-2, -1))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# --- python batches ------------------------------------------------------------------------------------------------

def test_batches_load_with_shapes_dtypes_and_pixels(cifar_dir):
    written = write_batches(cifar_dir / data.BATCHES_FOLDER)  # the same files again (same seed, same md5)
    result = load_data(cifar())
    assert result.train_x.shape == (100, 3, 32, 32) and result.train_x.dtype == torch.uint8
    assert result.train_y.shape == (100,) and result.train_y.dtype == torch.int64
    assert result.test_x.shape == (20, 3, 32, 32) and result.test_y.dtype == torch.int64
    assert result.kind == "cifar10" and "python batches" in result.source
    assert result.classes == list(CIFAR10_CLASSES)
    # the whole set in its original order: pixels and labels are the pickled ones
    assert torch.equal(result.train_x[:PER_BATCH].reshape(PER_BATCH, -1), torch.from_numpy(written["data_batch_1"]))
    assert torch.equal(result.test_x.reshape(20, -1), torch.from_numpy(written["test_batch"]))
    assert result.train_y.tolist() == [i % 10 for i in range(100)]


def test_cifar10_source_searches_the_env_data_dir(cifar_dir):
    result = load_data(cifar(50, 10))
    assert result.kind == "cifar10"
    assert torch.bincount(result.train_y).tolist() == [5] * 10


def test_an_explicit_data_dir_overrides_the_environment(tmp_path, monkeypatch):
    write_batches(tmp_path / "mine" / data.BATCHES_FOLDER)
    trust(tmp_path / "mine" / data.BATCHES_FOLDER, monkeypatch)
    assert len(load_data(cifar(20, 10), tmp_path / "mine").train_y) == 20


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
            trust(Path(root) / "cifar-10-batches-py", monkeypatch)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    reports = []
    result = load_data(cifar(20, 10), tmp_path, progress=lambda fraction, message: reports.append((fraction, message)))
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


def test_a_hosted_server_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_HOSTED", "1")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", lambda root, download: pytest.fail("downloaded"))
    with pytest.raises(DataError, match="not installed on this server"):
        load_data(DataConfig(source="cifar10"), tmp_path)
    assert "cifar10" not in available_sources(tmp_path)


class _Planted:
    """Unpickling this creates `marker`: what a planted pickle could do (any code runs the same way)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_planted_pickle_is_refused_by_its_checksum_and_never_unpickled(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_batches(root / data.BATCHES_FOLDER)
    trust(root / data.BATCHES_FOLDER, monkeypatch)
    marker = tmp_path / "pwned"
    planted = pickle.dumps({b"data": _Planted(marker), b"labels": [0]})
    (root / data.BATCHES_FOLDER / "data_batch_1").write_bytes(planted)
    with pytest.raises(DataError, match="data_batch_1 does not match the official checksum"):
        load_data(cifar(), root)
    assert not marker.exists()
    pickle.loads(planted)  # the fixture is real: unpickling it would have run its code
    assert marker.exists()


def test_the_checksums_are_torchvisions():
    published = dict(torchvision.datasets.CIFAR10.train_list + torchvision.datasets.CIFAR10.test_list)
    assert data.BATCH_MD5 == published and set(published) == set(data.BATCH_FILES)
    assert data.BATCH_MD5["data_batch_1"] == "c99cafc152244af753f735de768cd75f"


# --- data sources by name ------------------------------------------------------------------------------------------

def test_an_unknown_source_name_lists_the_available_ones(tmp_path, monkeypatch):
    write_imagefolder(image_root(tmp_path, monkeypatch, "pets"), ["cat", "dog"])
    with pytest.raises(DataError, match="unknown data source 'flowers': choose one of synthetic, cifar10, pets"):
        load_data(DataConfig(source="flowers"))


def test_a_data_root_is_loaded_by_its_name(tmp_path, monkeypatch):
    write_imagefolder(image_root(tmp_path, monkeypatch, "pets"), ["cat", "dog"], train=6, test=5)
    assert available_sources()["pets"] == "image folder 'pets' (ImageFolder)"
    result = load_data(DataConfig(source="pets", subset=12, test_subset=10))
    assert result.kind == "folder" and result.classes == ["cat", "dog"] and "pets" in result.source
    assert torch.bincount(result.train_y).tolist() == [6, 6]


def test_a_data_dir_holding_other_images_is_offered_under_its_folder_name(tmp_path, monkeypatch):
    root = tmp_path / "My Flowers"
    write_imagefolder(root, ["rose", "tulip", "daisy"], train=4, test=4)
    monkeypatch.setenv("EXPLORER_DATA_DIR", str(root))
    sources = available_sources()
    assert set(sources) == {"synthetic", "cifar10", "my-flowers"}
    assert data.source_classes("my-flowers") == ["daisy", "rose", "tulip"]  # for pickers, without decoding
    result = load_data(DataConfig(source="my-flowers", subset=12, test_subset=12))
    assert result.classes == ["daisy", "rose", "tulip"]  # the class folders, sorted
    assert torch.bincount(result.train_y).tolist() == [4, 4, 4]


def test_nothing_is_written_into_the_data_folder(tmp_path, monkeypatch, cifar_dir):
    images = image_root(tmp_path, monkeypatch)
    write_imagefolder(images, ["c0", "c1"], train=5, test=5)
    before = {root: snapshot(root) for root in (cifar_dir, images)}
    load_data(cifar())
    load_data(folder(10, 10))
    assert {root: snapshot(root) for root in (cifar_dir, images)} == before
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").glob("*.pt"))
    assert cached == ["batches", "imagefolder"]  # the decoded images went to EXPLORER_CACHE_DIR


# --- ImageFolder ---------------------------------------------------------------------------------------------------

def test_imagefolder_resizes_and_labels_by_folder(tmp_path, monkeypatch):
    write_imagefolder(image_root(tmp_path, monkeypatch), ["c0", "c1", "c2"], train=4, test=4)
    result = load_data(folder(12, 12))
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
    root = image_root(tmp_path, monkeypatch)
    write_imagefolder(root, ["c0", "c1"], train=5, test=5)
    first = load_data(folder())
    assert list((tmp_path / "cache").glob("imagefolder-*.pt"))

    def no_decoding(*args):
        raise AssertionError("decoded again although the cache was valid")

    original = cache._decode_images
    monkeypatch.setattr(cache, "_decode_images", no_decoding)
    second = load_data(folder())
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)

    changed = root / "train" / "c0" / "0000.png"
    Image.new("RGB", (40, 36), (0, 0, 0)).save(changed)
    os.utime(changed, ns=(10**18, 10**18))
    with pytest.raises(AssertionError, match="decoded again"):
        load_data(folder())
    monkeypatch.setattr(cache, "_decode_images", original)
    third = load_data(folder())
    assert mean_colour(third.train_x[0]).tolist() == [0.0, 0.0, 0.0]


def test_batches_cache_skips_unpickling(cifar_dir, monkeypatch):
    first = load_data(cifar())
    monkeypatch.setattr(cache, "_read_batch", lambda path: pytest.fail("read a batch although the cache was valid"))
    assert torch.equal(load_data(cifar()).train_x, first.train_x)


def write_noise_images(root: Path, count: int) -> list[str]:
    """Images of random pixels and assorted sizes and modes (some need resizing or RGB conversion)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        size = (32, 32) if i % 3 else (40 + i, 30 + i)
        image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        if i % 4 == 1:
            image = image.convert("L")
        path = root / f"{i:03d}.{'png' if i % 2 else 'jpg'}"
        image.save(path)
        paths.append(str(path))
    return paths


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="parallel decoding needs two cores")
def test_parallel_decoding_gives_the_pixels_of_serial_decoding(tmp_path, monkeypatch):
    paths = write_noise_images(tmp_path, 13)
    serial = decode.decode_files(paths)
    # A spawned process re-runs __main__ by path; after an AppTest in this pytest process that is a page script,
    # which opens the app's store. The workers should see what `python -m explorer worker` gives them: no script.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    monkeypatch.setattr(decode, "PARALLEL_FROM", 4)
    monkeypatch.setattr(decode, "CHUNK", 5)  # three chunks, so their order matters
    spawned = []
    original_pool = decode.ProcessPoolExecutor
    monkeypatch.setattr(decode, "ProcessPoolExecutor", lambda *a, **k: spawned.append(1) or original_pool(*a, **k))
    counts = []
    parallel = decode.decode_many(paths, counts.append)
    assert spawned, "decode_many did not decode in worker processes"
    assert parallel.shape == (13, 32, 32, 3) and parallel.dtype == np.uint8
    assert np.array_equal(parallel, serial)
    assert counts == [5, 10, 13]


def test_serial_decoding_converts_and_resizes(tmp_path):
    paths = write_noise_images(tmp_path, 4)
    pixels = decode.decode_files(paths)
    assert pixels.shape == (4, 32, 32, 3)
    with Image.open(paths[1]) as grey:  # a grey image becomes three equal channels
        assert np.array_equal(pixels[1][..., 0], np.asarray(grey))
        assert np.array_equal(pixels[1][..., 0], pixels[1][..., 2])
    with Image.open(paths[2]) as exact:  # a 32x32 RGB file is taken as it is
        assert np.array_equal(pixels[2], np.asarray(exact))


# --- subsets and class selection -----------------------------------------------------------------------------------

def test_subsets_are_balanced_and_deterministic(cifar_dir):
    first, again = load_data(cifar(30, 10, seed=1)), load_data(cifar(30, 10, seed=1))
    other = load_data(cifar(30, 10, seed=2))
    assert torch.bincount(first.train_y).tolist() == [3] * 10
    assert torch.bincount(first.test_y).tolist() == [1] * 10
    assert torch.equal(first.train_x, again.train_x) and torch.equal(first.test_x, again.test_x)
    assert not torch.equal(first.train_x, other.train_x)
    uneven = load_data(cifar(13, 10))
    assert torch.bincount(uneven.train_y).tolist() == [2, 2, 2] + [1] * 7


def test_class_selection_remaps_labels_in_the_given_order(tmp_path, monkeypatch):
    write_imagefolder(image_root(tmp_path, monkeypatch), ["c0", "c1", "c2"], train=6, test=6)
    result = load_data(folder(12, 10, classes=("c2", "c0")))
    assert result.classes == ["c2", "c0"]
    assert sorted(set(result.train_y.tolist())) == [0, 1]
    assert torch.bincount(result.train_y).tolist() == [6, 6]
    colours = mean_colour(result.train_x)
    assert colours[result.train_y == 0, 0].eq(class_colour(2)[0]).all()
    assert colours[result.train_y == 1, 0].eq(class_colour(0)[0]).all()


def subsets_equal(a: data.ImageData, b: data.ImageData) -> bool:
    return a.classes == b.classes and all(torch.equal(getattr(a, k).cpu(), getattr(b, k).cpu())
                                          for k in ("train_x", "train_y", "test_x", "test_y"))


def test_a_subset_of_a_resident_set_equals_the_subset_of_a_fresh_copy():
    full = synthetic_cifar(100, 40, seed=0)
    expected = select_subset(full, ("dog", "cat", "ship"), 15, 6, seed=4)
    assert expected.classes == ["dog", "cat", "ship"] and torch.bincount(expected.train_y).tolist() == [5] * 3
    copy = full.to("cpu")
    copy.train_x = copy.train_x.clone()  # a separate copy, not a view of the same storage
    assert subsets_equal(select_subset(copy, ("dog", "cat", "ship"), 15, 6, seed=4), expected)
    assert not subsets_equal(select_subset(full, ("dog", "cat", "ship"), 15, 6, seed=5), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_subset_of_a_set_resident_on_the_gpu_equals_the_cpu_one():
    full = synthetic_cifar(100, 40, seed=0)
    on_gpu = select_subset(full.to("cuda"), ("dog", "cat", "ship"), 15, 6, seed=4)
    assert on_gpu.train_x.device.type == "cuda" and on_gpu.train_y.device.type == "cuda"
    assert subsets_equal(on_gpu, select_subset(full, ("dog", "cat", "ship"), 15, 6, seed=4))


# --- errors --------------------------------------------------------------------------------------------------------

def test_missing_data_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_DATA_ROOTS", f"imgs={tmp_path / 'nowhere'}")
    with pytest.raises(DataError, match="does not exist"):
        load_data(folder())


def test_directory_without_data(tmp_path, monkeypatch):
    image_root(tmp_path, monkeypatch)
    with pytest.raises(DataError, match="no images found.*train/<class>"):
        load_data(folder())


def test_corrupt_batch_names_the_file(cifar_dir, monkeypatch):
    (cifar_dir / data.BATCHES_FOLDER / "data_batch_3").write_bytes(b"not a pickle")
    trust(cifar_dir / data.BATCHES_FOLDER, monkeypatch)  # a corrupt file that passes the checksum
    with pytest.raises(DataError, match="data_batch_3 is corrupt.*download it again"):
        load_data(cifar())


def test_batch_with_wrong_pixels_is_corrupt(cifar_dir, monkeypatch):
    with open(cifar_dir / data.BATCHES_FOLDER / "test_batch", "wb") as file:
        pickle.dump({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, file)
    trust(cifar_dir / data.BATCHES_FOLDER, monkeypatch)
    with pytest.raises(DataError, match="test_batch is corrupt"):
        load_data(cifar())


def test_incomplete_batches(tmp_path, monkeypatch):
    root = image_root(tmp_path, monkeypatch)
    write_batches(root / data.BATCHES_FOLDER)
    (root / data.BATCHES_FOLDER / "data_batch_5").unlink()
    with pytest.raises(DataError, match="incomplete.*data_batch_5"):
        load_data(folder())


def test_class_folder_without_images(tmp_path, monkeypatch):
    root = image_root(tmp_path, monkeypatch)
    write_imagefolder(root, ["c0", "c1"])
    (root / "train" / "empty").mkdir()
    (root / "train" / "empty" / "notes.txt").write_text("no image here")
    (root / "test" / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder .*train.empty has no images"):
        load_data(folder())


def test_folder_without_class_folders(tmp_path, monkeypatch):
    root = image_root(tmp_path, monkeypatch)
    (root / "train").mkdir()
    (root / "test").mkdir()
    Image.new("RGB", (32, 32)).save(root / "train" / "loose.png")
    with pytest.raises(DataError, match="no class folders"):
        load_data(folder())


def test_test_classes_must_match_train_classes(tmp_path, monkeypatch):
    root = image_root(tmp_path, monkeypatch)
    write_imagefolder(root, ["c0", "c1"])
    (root / "test" / "c1").rename(root / "test" / "c9")
    with pytest.raises(DataError, match="same class folders"):
        load_data(folder())


def test_subset_larger_than_the_data_says_the_maximum(cifar_dir):
    with pytest.raises(DataError, match="subset 101 .* at most 100 .*subset <= 100"):
        load_data(cifar(101, 10))
    with pytest.raises(DataError, match="test_subset <= 4"):
        load_data(cifar(10, 10, classes=("cat", "dog")))


def test_unknown_class_of_a_folder(tmp_path, monkeypatch):
    write_imagefolder(image_root(tmp_path, monkeypatch), ["c0", "c1"])
    with pytest.raises(DataError, match="unknown class 'cat'.*c0, c1"):
        load_data(folder(classes=("cat", "c0")))


def test_unreadable_image_names_the_file(tmp_path, monkeypatch):
    root = image_root(tmp_path, monkeypatch)
    write_imagefolder(root, ["c0", "c1"])
    (root / "train" / "c1" / "broken.png").write_bytes(b"\x89PNG but truncated")
    with pytest.raises(DataError, match=r"broken\.png"):
        load_data(folder())


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


def test_the_written_out_checksums_and_extensions_are_torchvisions():
    import torchvision
    from torchvision.datasets.folder import IMG_EXTENSIONS

    from explorer import data

    listed = dict(torchvision.datasets.CIFAR10.train_list + torchvision.datasets.CIFAR10.test_list)
    assert listed == data.BATCH_MD5
    assert set(data.IMG_EXTENSIONS) == set(IMG_EXTENSIONS)


# --- a flat ImageFolder (class folders at the top), split here -----------------------------------------------------

def write_flat(root: Path, counts: dict[str, int]) -> None:
    """Class folders at the top of `root`, `counts[class]` PNGs each, no train/ or test/."""
    for label, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("RGB", (40, 36), class_colour(label)).save(root / name / f"{i:04d}.png")


def held_out(source: str) -> dict[str, list[str]]:
    """Class -> the names of its test files, as the source's split puts them."""
    found = layout.folder_files(data.locate_source(source))
    return {name: [e.name for e in files] for name, files in zip(found.classes, found.test)}


def test_a_flat_imagefolder_is_offered_split_and_loaded(tmp_path, monkeypatch):
    write_flat(image_root(tmp_path, monkeypatch, "pets"), {"cat": 30, "dog": 12, "eel": 2})
    assert available_sources()["pets"] == "image folder 'pets' (ImageFolder, 20% of each class held out for testing)"
    assert data.source_classes("pets") == ["cat", "dog", "eel"]
    full = data.load_full("pets")
    assert full.kind == "folder" and full.classes == ["cat", "dog", "eel"]
    train_counts, test_counts = torch.bincount(full.train_y).tolist(), torch.bincount(full.test_y).tolist()
    assert [a + b for a, b in zip(train_counts, test_counts)] == [30, 12, 2]  # every image once, in one split
    assert test_counts[2] == 1 and min(test_counts) >= 1  # a class of 2 still tests on one image
    assert 2 <= test_counts[0] <= 12  # about 20% of 30, by the hash of each path
    assert data.source_sizes("pets") == (sum(train_counts), sum(test_counts),
                                         {c: (a, b) for c, a, b in zip(full.classes, train_counts, test_counts)})
    result = load_data(DataConfig(source="pets", subset=2, test_subset=2, classes=("eel", "cat")))
    assert result.classes == ["eel", "cat"] and torch.bincount(result.test_y).tolist() == [1, 1]
    colours = mean_colour(result.train_x)  # labels follow the folders
    assert colours[result.train_y == 0, 0].eq(class_colour(2)[0]).all()


def test_the_split_is_the_same_on_every_machine_and_stays_when_files_are_added(tmp_path, monkeypatch):
    write_flat(tmp_path / "here" / "pets", {"cat": 30, "dog": 12})
    write_flat(tmp_path / "there" / "pets", {"cat": 30, "dog": 12})
    monkeypatch.setenv("EXPLORER_DATA_ROOTS", f"a={tmp_path / 'here' / 'pets'},b={tmp_path / 'there' / 'pets'}")
    first = held_out("a")
    assert first == held_out("b")  # decided by relative paths, not by where the folder lies
    # SHA-256 of "cat/0004.png" etc., not Python's per-process salted hash: these exact files, on any machine
    assert first == {"cat": ["0004.png", "0006.png", "0022.png", "0024.png", "0025.png", "0028.png"],
                     "dog": ["0004.png", "0007.png"]}
    for i in range(30, 60):
        Image.new("RGB", (8, 8)).save(tmp_path / "here" / "pets" / "cat" / f"{i:04d}.png")
    grown = held_out("a")
    before = {f"{i:04d}.png" for i in range(30)}
    assert set(grown["cat"]) & before == set(first["cat"])  # no file moved, either way
    assert len(grown["cat"]) > len(first["cat"]) and grown["dog"] == first["dog"]
    assert data.data_fingerprint("a") != data.data_fingerprint("b")  # b holds fewer files


def test_the_fingerprint_and_the_cache_cover_the_split_rule(tmp_path, monkeypatch):
    write_flat(image_root(tmp_path, monkeypatch, "pets"), {"cat": 20, "dog": 20})
    monkeypatch.setattr(sources, "FINGERPRINT_SECONDS", 0.0)
    before, loaded = data.data_fingerprint("pets"), data.load_full("pets")
    monkeypatch.setattr(layout, "TEST_FRACTION", 0.5)
    assert data.data_fingerprint("pets") != before
    assert len(data.load_full("pets").test_y) > len(loaded.test_y)  # split again, not the cached split
    flat = data.data_fingerprint("pets")
    assert data.data_fingerprint("pets") == flat  # and stable


def test_a_flat_class_of_one_image_is_refused_with_what_to_do(tmp_path, monkeypatch):
    write_flat(image_root(tmp_path, monkeypatch, "pets"), {"cat": 5, "dog": 1})
    with pytest.raises(DataError, match=r"dog holds 1 image: a class needs at least 2 .*add images"):
        load_data(DataConfig(source="pets", subset=2, test_subset=2))


def test_a_data_dir_that_is_a_flat_imagefolder_is_offered_under_its_name(tmp_path, monkeypatch):
    root = tmp_path / "Holiday Photos"
    write_flat(root, {"beach": 4, "hill": 4})
    monkeypatch.setenv("EXPLORER_DATA_DIR", str(root))
    assert "holiday-photos" in available_sources()
    assert data.source_sizes("holiday-photos").n_train + data.source_sizes("holiday-photos").n_test == 8


def test_source_sizes_count_without_decoding_and_recount_when_a_folder_changes(tmp_path, monkeypatch):
    root = image_root(tmp_path, monkeypatch, "pets")
    write_imagefolder(root, ["cat", "dog"], train=6, test=3)
    monkeypatch.setattr(cache, "_decode_images", lambda *a: pytest.fail("decoded to count"))
    sizes = data.source_sizes("pets")
    assert sizes == (12, 6, {"cat": (6, 3), "dog": (6, 3)}) and sizes.limits(("dog",)) == (6, 3)
    monkeypatch.setattr(layout, "folder_files", lambda location: pytest.fail("counted again"))
    assert data.source_sizes("pets") == sizes  # unchanged folders: from the cache
    monkeypatch.undo()
    monkeypatch.setenv("EXPLORER_DATA_ROOTS", f"pets={root}")
    Image.new("RGB", (8, 8)).save(root / "train" / "cat" / "extra.png")
    os.utime(root / "train" / "cat", ns=(10**18, 10**18))  # the folder's mtime moves on, whatever the clock's grain
    assert data.source_sizes("pets").classes == {"cat": (7, 3), "dog": (6, 3)}
    assert data.source_sizes("synthetic").limits() == (MAX_IMAGES, MAX_IMAGES)
    assert data.source_sizes("cifar10").limits(("cat", "dog")) == (10_000, 2_000)  # not here: official sizes


def test_check_fits_refuses_what_the_data_cannot_give_before_anything_is_queued(tmp_path, monkeypatch):
    write_imagefolder(image_root(tmp_path, monkeypatch, "pets"), ["cat", "dog"], train=16, test=4)
    data.check_fits(DataConfig(source="pets", subset=32, test_subset=8))
    with pytest.raises(DataError, match="subset 33 is larger than the data.*use subset <= 32"):
        data.check_fits(DataConfig(source="pets", subset=33, test_subset=8))
    with pytest.raises(DataError, match="test_subset 10 .*use test_subset <= 8"):
        data.check_fits(DataConfig(source="pets", subset=32, test_subset=10))
    with pytest.raises(DataError, match="unknown class 'cow'.*cat, dog"):
        data.check_fits(DataConfig(source="pets", subset=2, test_subset=2, classes=("cow", "cat")))
    with pytest.raises(DataError, match="unknown data source 'fish'"):
        data.check_fits(DataConfig(source="fish"))
    data.check_fits(DataConfig(source="synthetic", subset=100_000, test_subset=50_000))


def test_the_sources_module_never_imports_torch(tmp_path):
    """The web server asks for sources, classes, sizes and fingerprints without PyTorch (import and call)."""
    write_flat(tmp_path / "pets", {"cat": 3, "dog": 3})
    code = ("import sys, explorer.data.sources\n"
            "from explorer.data import (DataError, available_sources, data_fingerprint, data_roots, find_cifar10,\n"
            "    locate_source, resolve_data_dir, source_classes, source_sizes, check_fits)\n"
            "from explorer.config import DataConfig\n"
            "assert 'pets' in available_sources() and source_classes('pets') == ['cat', 'dog']\n"
            "check_fits(DataConfig(source='pets', subset=4, test_subset=2)); data_fingerprint('pets')\n"
            "print(source_sizes('pets').n_train + source_sizes('pets').n_test, 'torch' in sys.modules)\n")
    env = {**os.environ, "EXPLORER_DATA_ROOTS": f"pets={tmp_path / 'pets'}", "PYTHONPATH": str(Path.cwd())}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.split() == ["6", "False"], result.stderr
