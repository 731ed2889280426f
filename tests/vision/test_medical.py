"""DICOM: Hounsfield units from stored pixels, windows, histogram scaling, the metadata table, and DicomBlock from
a DataBlock to an exported model that predicts on a .dcm file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pydicom = pytest.importorskip("pydicom")

from ember.core.errors import ConfigError, DataError, EmberError  # noqa: E402
from ember.data.block import CategoryBlock, DataBlock  # noqa: E402
from ember.data.items import GrandparentSplitter, parent_label  # noqa: E402
from ember.medical import (  # noqa: E402
    DicomBlock,
    dcmread,
    dicom_metadata,
    dicom_pixels,
    dicom_windows,
    freqhist_bins,
    get_dicom_files,
    hist_scaled,
    windowed,
)
from ember.vision.augment import Resize  # noqa: E402


def write_dicom(
    path,
    stored: np.ndarray,
    slope: float | None = 1.0,
    intercept: float | None = -1024.0,
    signed: bool = False,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    frames: int | None = None,
    patient: str = "P1",
    pixels: bool = True,
):
    """A small CT file: 16 bits allocated, `stored` as its stored values (``(H, W)``, or ``(F, H, W)``)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    if int(pydicom.__version__.split(".")[0]) < 3:
        ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "CT", patient
    ds.ImagePositionPatient = [0.0, -12.5, float(len(patient))]
    rows, cols = stored.shape[-2:]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if frames is not None:
        ds.NumberOfFrames = frames
    if pixels:
        ds.PixelData = stored.astype("<i2" if signed else "<u2").tobytes()
    ds.save_as(str(path))
    return path


# Stored values of a 12-bit unsigned CT slice with intercept -1024: 0 -> -1024 HU (air), 1024 -> 0 HU (water) …
_STORED = np.array([[0, 1000, 1024, 1034], [1044, 1064, 1124, 2024], [3024, 4095, 24, 1104]], dtype=np.uint16)


def test_pixels_in_hounsfield_units(tmp_path):
    ds = dcmread(write_dicom(tmp_path / "a.dcm", _STORED))
    hu = dicom_pixels(ds)
    assert hu.dtype == torch.float32 and hu.shape == (3, 4)
    assert hu[0].tolist() == [-1024.0, -24.0, 0.0, 10.0]
    assert hu[2].tolist() == [2000.0, 3071.0, -1000.0, 80.0]
    # a path works as well as a dataset
    assert torch.equal(dicom_pixels(tmp_path / "a.dcm"), hu)


def test_signed_pixels_with_slope(tmp_path):
    stored = np.array([[-2000, -1000, 0], [5, 100, 2047]], dtype=np.int16)
    ds = dcmread(write_dicom(tmp_path / "s.dcm", stored, slope=0.5, intercept=-10.0, signed=True, bits_stored=16))
    assert dicom_pixels(ds).tolist() == [[-1010.0, -510.0, -10.0], [-7.5, 40.0, 1013.5]]
    # without rescale tags, the stored values are the values
    plain = dcmread(write_dicom(tmp_path / "p.dcm", stored, slope=None, signed=True, bits_stored=16))
    assert dicom_pixels(plain).tolist() == stored.astype(np.float32).tolist()


def test_monochrome1_is_inverted(tmp_path):
    stored = np.array([[0, 95], [4000, 4095]], dtype=np.uint16)
    ds = dcmread(write_dicom(tmp_path / "m1.dcm", stored, slope=1.0, intercept=0.0, photometric="MONOCHROME1"))
    # reflected within the 12-bit range: 0 (shown white in MONOCHROME1) becomes the largest value
    assert dicom_pixels(ds).tolist() == [[4095.0, 4000.0], [95.0, 0.0]]
    ds = dcmread(write_dicom(tmp_path / "m1b.dcm", stored, slope=2.0, intercept=-100.0, photometric="MONOCHROME1"))
    assert dicom_pixels(ds).tolist() == [[8090.0, 7900.0], [90.0, -100.0]]


def test_multiframe_needs_a_frame(tmp_path):
    stored = np.stack([_STORED, _STORED + 10])  # (2, 3, 4)
    ds = dcmread(write_dicom(tmp_path / "mf.dcm", stored, frames=2))
    with pytest.raises(DataError, match=r"mf\.dcm holds 2 frames.*frame=i"):
        dicom_pixels(ds)
    assert dicom_pixels(ds, frame=1)[0, 0] == -1014.0
    with pytest.raises(ConfigError, match="frame"):
        dicom_pixels(ds, frame=2)


def test_windowed_numbers():
    x = torch.tensor([-1000.0, -50, 0, 10, 20, 40, 60, 80, 100, 3000])
    # the same numbers as fastai's windowed (brain: 0..80 HU; lungs: -1350..150 HU)
    assert windowed(x, *dicom_windows.brain).tolist() == [0, 0, 0, 0.125, 0.25, 0.5, 0.75, 1, 1, 1]
    lungs = windowed(x, *dicom_windows.lungs)
    expected_lungs = [0.23333333, 0.86666667, 0.9, 0.90666667, 0.91333333, 0.92666667, 0.94, 0.95333333, 0.96666667, 1]
    assert torch.allclose(lungs, torch.tensor(expected_lungs))
    assert windowed(np.array([25.0, 50.0]), 50, 25).tolist() == [0.5, 1.0]  # arrays too
    assert dicom_windows.abdomen_soft == (400, 50) and dicom_windows.subdural == (254, 100)
    assert len(dicom_windows._asdict()) == 11
    with pytest.raises(ConfigError, match="`w`"):
        windowed(x, 0, 40)


def test_hist_scaled_matches_fastai():
    # the outputs of fastai's hist_scaled (CPU) on the same values
    x = torch.tensor(
        [[-1000.0, -1000, -50, 0, 10], [20, 30, 40, 40, 40], [60, 80, 100, 200, 400], [700, 1000, 1500, 2000, 3000]]
    )
    brks = freqhist_bins(x, n_bins=5)
    assert brks.tolist() == [-1000.0, -50.0, 30.0, 60.0, 400.0, 2000.0, 3000.0]
    expected = [
        [0.0, 0.0, 0.16666667, 0.27083334, 0.29166666],
        [0.3125, 0.33333334, 0.3888889, 0.3888889, 0.3888889],
        [0.5, 0.50980395, 0.51960784, 0.56862748, 0.66666669],
        [0.69791669, 0.72916669, 0.78125, 0.83333331, 1.0],
    ]
    assert torch.allclose(hist_scaled(x, brks), torch.tensor(expected), atol=1e-6)
    fixed = hist_scaled(x, brks=[-100.0, 0, 100, 1000])  # below the first edge 0, above the last 1
    assert torch.allclose(fixed[0], torch.tensor([0.0, 0.0, 0.16666667, 0.33333334, 0.36666667]))
    assert torch.allclose(fixed[2], torch.tensor([0.53333336, 0.6, 0.66666669, 0.7037037, 0.77777779]))
    # default edges (100 bins) on 144 values with repeats
    z = ((torch.arange(144) * 37) % 101).float().reshape(12, 12) ** 2
    assert len(freqhist_bins(z)) == 84
    row0 = [0.0, 0.36144578, 0.73493975, 0.09638554, 0.46987951, 0.81927711]
    row0 += [0.19277108, 0.57831323, 0.92771083, 0.28915662, 0.67469877, 0.03614458]
    assert torch.allclose(hist_scaled(z)[0], torch.tensor(row0), atol=1e-6)
    with pytest.raises(ConfigError, match="brks"):
        hist_scaled(x, brks=[3.0, 1.0])


def test_get_files_metadata_and_errors(tmp_path):
    (tmp_path / "a").mkdir()
    write_dicom(tmp_path / "a" / "one.dcm", _STORED, patient="P1")
    write_dicom(tmp_path / "a" / "two.DICOM", _STORED[:2], patient="P22")
    write_dicom(tmp_path / "hdr.ima", _STORED, pixels=False, patient="P333")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    files = get_dicom_files(tmp_path)
    assert [f.name for f in files] == ["one.dcm", "two.DICOM", "hdr.ima"]
    assert get_dicom_files(tmp_path, recurse=False) == [tmp_path / "hdr.ima"]

    df = dicom_metadata(files, n_workers=0, progress=False)
    assert list(df["PatientID"]) == ["P1", "P22", "P333"]
    assert df.columns[0] == "fname" and df["fname"][1].endswith("two.DICOM")
    assert list(df["Rows"]) == [3, 2, 3] and float(df["RescaleIntercept"][0]) == -1024.0
    assert (df["MultiImagePositionPatient"] == 1).all() and list(df["ImagePositionPatient2"]) == [2.0, 3.0, 4.0]
    assert df["img_min"][0] == -1024.0 and df["img_max"][0] == 3071.0
    assert df["img_pct_window"][0] == pytest.approx(5 / 12)  # 0, 10, 20, 40 and 80 HU are in the brain window
    assert df["img_mean"][1] == pytest.approx(np.mean(_STORED[:2] - 1024.0))
    assert np.isnan(df["img_mean"][2])  # no pixel data: no summary
    assert "PixelData" not in df.columns

    # in worker processes: the same table
    df2 = dicom_metadata(files, px_summ=False, n_workers=2, progress=False)
    assert list(df2["PatientID"]) == ["P1", "P22", "P333"] and "img_mean" not in df2.columns

    # clear errors, naming the file
    with pytest.raises(DataError, match=r"notes\.txt is not a DICOM file"):
        dcmread(tmp_path / "a" / "notes.txt")
    with pytest.raises(DataError, match=r"hdr\.ima holds no image \(no PixelData"):
        dicom_pixels(dcmread(tmp_path / "hdr.ima"))
    with pytest.raises(EmberError, match=r"notes\.txt"):
        dicom_metadata([*files, tmp_path / "a" / "notes.txt"], n_workers=0, progress=False)


def test_metadata_lists_a_colour_file_with_the_reason_its_pixels_are_not_summarized(tmp_path):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

    write_dicom(tmp_path / "ct.dcm", _STORED)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = UltrasoundImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    us = FileDataset(str(tmp_path / "us.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    if int(pydicom.__version__.split(".")[0]) < 3:
        us.is_little_endian, us.is_implicit_VR = True, False
    us.SOPClassUID, us.Modality, us.Rows, us.Columns = UltrasoundImageStorage, "US", 2, 2
    us.SamplesPerPixel, us.PhotometricInterpretation, us.PlanarConfiguration = 3, "RGB", 0
    us.BitsAllocated, us.BitsStored, us.HighBit, us.PixelRepresentation = 8, 8, 7, 0
    us.PixelData = np.zeros((2, 2, 3), np.uint8).tobytes()
    us.save_as(str(tmp_path / "us.dcm"))

    df = dicom_metadata([tmp_path / "ct.dcm", tmp_path / "us.dcm"], n_workers=0, progress=False)
    assert list(df["Modality"]) == ["CT", "US"]
    assert df["img_max"][0] == 3071.0 and np.isnan(df["img_max"][1]) and np.isnan(df["img_pct_window"][1])
    assert not isinstance(df["img_error"][0], str) and "colour image" in df["img_error"][1]
    # a file that cannot be read at all still stops the table, named, without the name of an internal helper
    (tmp_path / "notes.dcm").write_text("not an image")
    with pytest.raises(DataError, match=r"dicom_metadata stopped on a file it cannot read: .*notes\.dcm") as e:
        dicom_metadata([tmp_path / "ct.dcm", tmp_path / "notes.dcm"], n_workers=0, progress=False)
    assert "_metadata_row" not in str(e.value)


def test_dicom_block_encodes_windows_and_checks_arguments(tmp_path):
    f = write_dicom(
        tmp_path / "a.dcm", _STORED
    )  # HU: [-1024, -24, 0, 10], [20, 40, 100, 1000], [2000, 3071, -1000, 80]
    brain = DicomBlock(window=dicom_windows.brain).encode(f)
    assert brain.dtype == torch.uint8 and brain.shape == (1, 3, 4)
    assert brain[0].tolist() == [[0, 0, 0, 32], [64, 128, 255, 255], [255, 255, 0, 255]]
    rgb = DicomBlock(window=dicom_windows.brain, channels=3).encode(f)
    assert rgb.shape == (3, 3, 4) and torch.equal(rgb[2], brain[0])
    three = DicomBlock(window=[dicom_windows.brain, dicom_windows.subdural, "hist"])
    x = three.encode(f)
    assert three.channels == 3 and torch.equal(x[0], brain[0])
    assert x[1, 0].tolist() == [0, 3, 27, 37]  # subdural: -27..227 HU, so 0 HU is 27 / 254 * 255 = 27.1
    minmax = DicomBlock().encode(f)[0]
    assert minmax[0, 0] == 0 and minmax[2, 1] == 255 and minmax[0, 2] == round(1024 / 4095 * 255)
    assert torch.equal(DicomBlock(window="hist").encode(f)[0], (hist_scaled(dicom_pixels(f)) * 255).round().byte())
    one = DicomBlock(window=dicom_windows.brain)
    assert torch.equal(one.encode(dicom_pixels(f)), brain)  # values in HU, the bytes of a file, a dataset
    assert torch.equal(one.encode(f.read_bytes()), brain) and torch.equal(one.encode(dcmread(f)), brain)

    for bad in [dict(window="brain"), dict(window=(0, 40)), dict(channels=2), dict(window=[(80, 40), (254, 100)])]:
        with pytest.raises(ConfigError, match="window|channels"):
            DicomBlock(**bad)
    block = DicomBlock(window=dicom_windows.lungs, channels=3)
    assert DicomBlock.from_recipe(block.to_recipe()).encode(f).tolist() == block.encode(f).tolist()
    with pytest.raises(DataError, match=r"No DICOM file .*missing\.dcm"):
        block.validate(tmp_path / "missing.dcm")
    (tmp_path / "fake.dcm").write_bytes(b"\x89PNG not dicom")
    with pytest.raises(DataError, match=r"fake\.dcm is not a DICOM file"):
        block.encode(tmp_path / "fake.dcm")


@pytest.mark.slow
def test_dicom_block_trains_exports_and_predicts(tmp_path):
    import ember
    from ember.vision.learner import vision_learner

    g = np.random.default_rng(0)
    root = tmp_path / "ct"
    for split, n in (("train", 6), ("valid", 2)):
        for label, hu in (("blood", 70), ("fluid", 10)):  # two kinds of slice, told apart in the brain window
            (root / split / label).mkdir(parents=True)
            for i in range(n):
                stored = np.clip(g.normal(hu + 1024, 6, size=(16, 16)), 0, 4095).astype(np.uint16)
                write_dicom(root / split / label / f"{i}.dcm", stored)
    dls = DataBlock(
        blocks=(DicomBlock(window=dicom_windows.brain, channels=3), CategoryBlock),
        get_items=get_dicom_files,
        splitter=GrandparentSplitter(),
        get_y=parent_label,
        item_tfms=[Resize(16)],
    ).dataloaders(root, bs=4, device="cpu", num_workers=0)
    xb, yb = dls.valid.one_batch()  # both classes (a shuffled training batch may hold only the darker one)
    assert xb.shape == (4, 3, 16, 16) and xb.dtype == torch.float32 and 0.5 < float(xb.max()) <= 1.0
    assert sorted(yb.tolist()) == [0, 0, 1, 1]
    dls.show_batch(max_n=2)
    learn = vision_learner(dls, "xresnet_tiny", pretrained=False, lin_ftrs=[8], path=tmp_path)
    learn.fit(1, 1e-3)
    item = root / "valid" / "blood" / "1.dcm"
    label, idx, probs = learn.predict(item)
    loaded = ember.load_learner(learn.export("ct.ember", verbose=False))
    block = loaded.dls.blocks[0]
    assert isinstance(block, DicomBlock) and block.window == (80, 40) and block.channels == 3
    label2, idx2, probs2 = loaded.predict(str(item))
    assert label2 == label and label in ("blood", "fluid") and torch.allclose(probs2, probs, atol=1e-5)
