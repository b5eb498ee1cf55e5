"""service.render: the grayscale heatmap PNG and the colour-mapped overlay."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.render import INFERNO, colorize, heatmap_png, heatmap_to_uint8, overlay, overlay_jpeg


def test_heatmap_png_is_8bit_grayscale_white_means_one():
    heatmap = np.array([[0.0, 0.5, 1.0], [1.2, -0.3, 0.25]], np.float32)
    image = Image.open(io.BytesIO(heatmap_png(heatmap)))
    assert image.format == "PNG" and image.mode == "L" and image.size == (3, 2)
    assert np.asarray(image).tolist() == [[0, 128, 255], [255, 0, 64]]


def test_heatmap_png_keeps_odd_sizes():
    heatmap = np.random.default_rng(0).random((37, 101), dtype=np.float32)
    decoded = np.asarray(Image.open(io.BytesIO(heatmap_png(heatmap))))
    assert decoded.shape == (37, 101)
    assert np.abs(decoded.astype(int) - heatmap_to_uint8(heatmap)).max() == 0


def test_inferno_lut_is_perceptually_ordered():
    assert INFERNO.shape == (256, 3) and INFERNO.dtype == np.uint8
    luminance = INFERNO @ np.array([0.2126, 0.7152, 0.0722])
    assert (np.diff(luminance) > -0.5).all()  # brighter with probability (to within rounding): readable in grayscale
    assert luminance[0] < 10 and luminance[-1] > 230


def test_colorize_maps_through_the_lut():
    colours = colorize(np.array([[0.0, 1.0]], np.float32))
    assert colours.tolist() == [[INFERNO[0].tolist(), INFERNO[255].tolist()]]


def test_overlay_shows_the_photo_where_clean_and_the_colour_where_hot():
    photo = np.full((20, 30, 3), 200, np.uint8)
    heatmap = np.zeros((20, 30), np.float32)
    heatmap[:, 15:] = 1.0
    blended = overlay(photo, heatmap).astype(int)
    assert blended.shape == (20, 30, 3)
    cold, hot = blended[0, 0], blended[0, 29]
    assert np.abs(cold - 200).max() < 40  # mostly the photo
    assert np.abs(hot - INFERNO[255]).sum() < np.abs(cold - INFERNO[255]).sum()
    assert np.abs(hot - INFERNO[255]).max() < 60  # mostly the colour


def test_overlay_needs_matching_sizes():
    with pytest.raises(ValueError):
        overlay(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 11), np.float32))


def test_overlay_jpeg_is_the_photo_size():
    photo = np.random.default_rng(1).integers(0, 256, (41, 57, 3), dtype=np.uint8)
    image = Image.open(io.BytesIO(overlay_jpeg(photo, np.zeros((41, 57), np.float32))))
    assert image.format == "JPEG" and image.size == (57, 41) and image.mode == "RGB"
