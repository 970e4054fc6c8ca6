"""Reading every common image mode as uint8 RGB, and rejecting unusable files with a reason."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
from conftest import ImageFactory, encoded_bytes, save_image, smooth_rgb, write_truncated
from PIL import Image
from skimage.color import rgb2hsv

from leukbench.images import (
    ImageError,
    ImageInfo,
    inspect_image,
    load_rgb,
    rejection_reason,
    sha256_file,
    to_hsv,
    to_rgb,
)


def assert_rgb(array: np.ndarray, height: int, width: int) -> None:
    assert array.dtype == np.uint8
    assert array.shape == (height, width, 3)


# --- modes -------------------------------------------------------------------------------------


def test_rgb_png_round_trips_exactly(image_file: ImageFactory) -> None:
    rgb = smooth_rgb(seed=1, size=40)
    loaded = load_rgb(image_file("rgb.png", rgb))
    assert_rgb(loaded, 40, 40)
    np.testing.assert_array_equal(loaded, rgb)


def test_grayscale_l_is_repeated_on_three_channels(image_file: ImageFactory) -> None:
    gray = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    path = image_file("gray.png", Image.fromarray(gray, mode="L"))
    loaded = load_rgb(path)
    assert_rgb(loaded, 32, 32)
    for channel in range(3):
        np.testing.assert_array_equal(loaded[..., channel], gray)


def test_bilevel_mode_1_becomes_black_and_white(image_file: ImageFactory) -> None:
    bits = np.zeros((16, 16), dtype=bool)
    bits[:, 8:] = True
    path = image_file("bits.png", Image.fromarray(bits))
    assert Image.open(path).mode == "1"
    loaded = load_rgb(path)
    assert (loaded[:, :8] == 0).all()
    assert (loaded[:, 8:] == 255).all()


def test_rgba_transparent_pixels_become_white(image_file: ImageFactory) -> None:
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[..., 3] = 255
    rgba[:10, :, 3] = 0  # top half fully transparent
    rgba[10:, :10, 3] = 128  # half-transparent block is blended with white
    loaded = load_rgb(image_file("rgba.png", Image.fromarray(rgba, mode="RGBA")))
    assert_rgb(loaded, 20, 20)
    assert (loaded[:10] == 255).all()
    np.testing.assert_array_equal(loaded[10:, 10:], np.broadcast_to((10, 20, 30), (10, 10, 3)))
    half = loaded[15, 5].astype(int)
    expected = np.array([10, 20, 30]) * 128 / 255 + 255 * 127 / 255
    np.testing.assert_allclose(half, expected, atol=2)


def test_grayscale_with_alpha_la(image_file: ImageFactory) -> None:
    la = Image.new("LA", (8, 8), (50, 0))
    la.paste((50, 255), (0, 0, 4, 8))
    loaded = load_rgb(image_file("la.png", la))
    assert (loaded[:, :4] == 50).all()
    assert (loaded[:, 4:] == 255).all()


def palette_image() -> Image.Image:
    """A 16x16 palette image: index 0 is red on the left half, index 1 is blue on the right."""
    indices = np.zeros((16, 16), dtype=np.uint8)
    indices[:, 8:] = 1
    image = Image.fromarray(indices, mode="P")
    image.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    return image


def test_palette_without_transparency(image_file: ImageFactory) -> None:
    path = image_file("palette.png", palette_image())
    assert Image.open(path).mode == "P"
    loaded = load_rgb(path)
    assert_rgb(loaded, 16, 16)
    assert (loaded[:, :8] == (255, 0, 0)).all()
    assert (loaded[:, 8:] == (0, 0, 255)).all()


def test_palette_with_transparent_index_becomes_white(image_file: ImageFactory) -> None:
    path = image_file("palette_t.png", palette_image(), transparency=0)
    reopened = Image.open(path)
    assert reopened.mode == "P" and "transparency" in reopened.info
    loaded = load_rgb(path)
    assert (loaded[:, :8] == 255).all()  # the transparent red index
    assert (loaded[:, 8:] == (0, 0, 255)).all()


SIXTEEN_BIT = np.array([[0, 257 * 100], [65535, 257 * 10]], dtype=np.uint16)
SIXTEEN_BIT_AS_8 = np.array([[0, 100], [255, 10]], dtype=np.uint8)


def test_16_bit_grayscale_png_is_scaled_to_8_bit(image_file: ImageFactory) -> None:
    path = image_file("g16.png", Image.fromarray(SIXTEEN_BIT))
    assert Image.open(path).mode.startswith("I")
    loaded = load_rgb(path)
    assert_rgb(loaded, 2, 2)
    for channel in range(3):
        np.testing.assert_array_equal(loaded[..., channel], SIXTEEN_BIT_AS_8)


@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_16_bit_tiff_is_scaled_to_8_bit_in_either_byte_order(
    tmp_path: Path, byteorder: str
) -> None:
    path = tmp_path / "g16.tif"
    tifffile.imwrite(path, SIXTEEN_BIT, byteorder=byteorder)
    assert Image.open(path).mode in ("I;16", "I;16B")
    np.testing.assert_array_equal(load_rgb(path)[..., 0], SIXTEEN_BIT_AS_8)


@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_dark_16_bit_tiff_is_scaled_like_any_16_bit_image(tmp_path: Path, byteorder: str) -> None:
    """A 16-bit image whose values all happen to be <= 255 is still 16-bit data: divide by 257.

    The result must not depend on the file's byte order.
    """
    dark = np.array([[0, 100], [200, 255]], dtype=np.uint16)
    path = tmp_path / "dark.tif"
    tifffile.imwrite(path, dark, byteorder=byteorder)
    np.testing.assert_array_equal(load_rgb(path)[..., 0], [[0, 0], [1, 1]])


def test_32_bit_float_image_in_unit_range(tmp_path: Path) -> None:
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32), mode="F").save(path)
    np.testing.assert_array_equal(load_rgb(path)[..., 1], [[0, 128], [255, 64]])


def test_cmyk_jpeg_is_converted_to_rgb(image_file: ImageFactory) -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 0, 0, 0))  # no ink: white
    cmyk.paste((0, 255, 255, 0), (0, 0, 8, 16))  # magenta + yellow: red
    path = image_file("cmyk.jpg", cmyk, quality=95)
    assert Image.open(path).mode == "CMYK"
    loaded = load_rgb(path)
    assert_rgb(loaded, 16, 16)
    np.testing.assert_allclose(loaded[8, 2], (255, 0, 0), atol=12)
    np.testing.assert_allclose(loaded[8, 13], (255, 255, 255), atol=12)


@pytest.mark.parametrize("name", ["image.bmp", "image.tif", "image.tiff", "IMAGE.PNG"])
def test_lossless_formats_round_trip(image_file: ImageFactory, name: str) -> None:
    rgb = smooth_rgb(seed=2, size=24)
    np.testing.assert_array_equal(load_rgb(image_file(name, rgb)), rgb)


def test_jpeg_is_read_close_to_the_original(image_file: ImageFactory) -> None:
    rgb = smooth_rgb(seed=3, size=32)
    loaded = load_rgb(image_file("image.jpeg", rgb, quality=95))
    assert_rgb(loaded, 32, 32)
    assert np.abs(loaded.astype(int) - rgb).mean() < 3


def test_to_rgb_on_in_memory_images() -> None:
    assert to_rgb(Image.new("L", (5, 3), 7)).shape == (3, 5, 3)
    assert (to_rgb(Image.new("RGBA", (4, 4), (1, 2, 3, 0))) == 255).all()


def test_to_rgb_rejects_an_unsupported_mode_naming_the_file() -> None:
    image = SimpleNamespace(mode="XYZ", info={})  # an image of a mode that no branch handles
    with pytest.raises(ImageError, match=r"some/file\.png: unsupported image mode 'XYZ'"):
        to_rgb(image, "some/file.png")  # type: ignore[arg-type]


def test_to_hsv_matches_skimage_within_one_8_bit_step() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    rgb[0, :4] = [(0, 0, 0), (255, 255, 255), (128, 128, 128), (255, 0, 1)]  # grey, near-red
    fast, reference = to_hsv(rgb), rgb2hsv(rgb)
    assert fast.shape == rgb.shape
    assert fast.min() >= 0 and fast.max() <= 1
    difference = np.abs(fast.astype(np.float64) - reference)
    hue = np.minimum(difference[..., 0], 1 - difference[..., 0])  # hue is an angle
    assert hue.max() <= 1 / 255 + 1e-6
    assert difference[..., 1:].max() <= 1 / 255 + 1e-6


# --- resizing ------------------------------------------------------------------------------------


def test_resize_at_load_time_takes_width_then_height(image_file: ImageFactory) -> None:
    path = image_file("wide.png", smooth_rgb(seed=4, size=48))
    resized = load_rgb(path, size=(30, 20))
    assert_rgb(resized, 20, 30)


def test_no_resize_when_size_already_matches(image_file: ImageFactory) -> None:
    rgb = smooth_rgb(seed=5, size=32)
    path = image_file("same.png", rgb)
    np.testing.assert_array_equal(load_rgb(path, size=(32, 32)), rgb)


def test_resize_of_a_constant_image_keeps_its_colour(image_file: ImageFactory) -> None:
    path = image_file("flat.png", np.full((40, 60, 3), (12, 34, 56), dtype=np.uint8))
    resized = load_rgb(path, size=(17, 9))
    assert_rgb(resized, 9, 17)
    assert (resized == (12, 34, 56)).all()


# --- inspect_image -------------------------------------------------------------------------------


def test_inspect_image_reports_size_and_original_mode(image_file: ImageFactory) -> None:
    path = image_file("gray.png", Image.new("L", (30, 20), 9))
    assert inspect_image(path) == ImageInfo(width=30, height=20, mode="L")


def test_sha256_file_matches_hashlib(image_file: ImageFactory) -> None:
    import hashlib

    path = image_file("a.png", smooth_rgb(seed=6))
    assert sha256_file(path, chunk=100) == hashlib.sha256(path.read_bytes()).hexdigest()


# --- bad files -----------------------------------------------------------------------------------


def assert_unreadable(path: Path, reason: str) -> None:
    """Both inspect_image and load_rgb raise ImageError whose message names the file."""
    for reader in (inspect_image, load_rgb):
        with pytest.raises(ImageError, match=reason) as caught:
            reader(path)
        assert str(path) in str(caught.value)
        assert str(caught.value).startswith(f"{path}: ")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    assert rejection_reason(path) == "zero-byte file"
    assert_unreadable(path, "not a readable image")


@pytest.mark.parametrize(("fmt", "name"), [("JPEG", "cut.jpg"), ("PNG", "cut.png")])
def test_truncated_files(tmp_path: Path, fmt: str, name: str) -> None:
    path = write_truncated(smooth_rgb(seed=7, size=64), tmp_path / name, fmt)
    assert rejection_reason(path) is None  # looks fine from the outside
    assert_unreadable(path, "corrupt or truncated")


def test_file_cut_inside_the_header(tmp_path: Path) -> None:
    data = encoded_bytes(smooth_rgb(seed=8), "PNG")
    path = tmp_path / "header.png"
    path.write_bytes(data[:20])
    assert_unreadable(path, "image")


def test_random_bytes_with_an_image_extension(tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    assert rejection_reason(path) is None
    assert_unreadable(path, "not a readable image")


def test_png_with_corrupted_pixel_data(tmp_path: Path) -> None:
    data = bytearray(encoded_bytes(smooth_rgb(seed=9, size=64), "PNG"))
    middle = len(data) // 2
    data[middle : middle + 64] = b"\x00" * 64  # breaks the IDAT stream and its CRC
    path = tmp_path / "broken.png"
    path.write_bytes(bytes(data))
    assert_unreadable(path, "corrupt or truncated")


def test_text_file_with_jpg_extension(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    assert rejection_reason(path) is None
    assert_unreadable(path, "not a readable image")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("readme.txt", "not an image file (extension '.txt')"),
        ("Thumbs.db", "not an image file (extension '.db')"),
        ("no_extension", "not an image file (extension '<none>')"),
        ("image.gif", "not an image file (extension '.gif')"),
    ],
)
def test_non_image_extensions(tmp_path: Path, name: str, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    assert rejection_reason(path) == reason


@pytest.mark.parametrize("name", [".DS_Store", "._image.jpg", ".hidden.png"])
def test_hidden_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    assert rejection_reason(path) == "hidden file"


def test_a_good_image_has_no_rejection_reason(image_file: ImageFactory) -> None:
    assert rejection_reason(image_file("good.JPG", smooth_rgb(seed=10))) is None


def test_rejection_reason_is_independent_of_extension_case(tmp_path: Path) -> None:
    path = save_image(smooth_rgb(seed=11), tmp_path / "upper.TIFF", format="TIFF")
    assert rejection_reason(path) is None
    assert inspect_image(path).mode == "RGB"
