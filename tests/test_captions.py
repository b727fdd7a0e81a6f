"""The offline caption sets' parts, exactly: the attributes measured on constructed images (thresholds, moments,
boxes), the per-class thirds and levels at their edges, and every phrasing of the caption scheme with a scripted
random source (which words, which name form, which template). test_text.py builds the real sets from MNIST."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gantrain.data.captions import (DIGIT_SCHEME, FASHION_SCHEME, CaptionScheme, brightness, ink_area, ink_box_area,
                                    levels, slant, stroke_thickness, thirds)


def _image(*pixels: tuple[int, int, int], size: int = 8) -> torch.Tensor:
    x = torch.zeros(1, 1, size, size, dtype=torch.uint8)
    for r, c, v in pixels:
        x[0, 0, r, c] = v
    return x


def test_ink_starts_above_127_for_strokes_and_above_30_for_garments():
    assert stroke_thickness(_image((2, 2, 127))).tolist() == [0.0]  # not ink
    assert stroke_thickness(_image((2, 2, 128))).tolist() == [2.0]  # one pixel: area 1, boundary 1
    assert ink_box_area(_image((2, 2, 127))).tolist() == [0.0]
    assert ink_box_area(_image((2, 3, 200), (5, 10, 200), size=12)).tolist() == [4.0 * 8.0]
    assert ink_box_area(_image((0, 0, 255))).tolist() == [1.0]
    assert ink_box_area(_image((7, 7, 255))).tolist() == [1.0]
    assert ink_area(_image((1, 1, 30), (1, 2, 31), (1, 3, 255))).tolist() == [2.0]
    assert brightness(_image((1, 1, 30), (1, 2, 31), (1, 3, 255))).tolist() == [pytest.approx((31 + 255) / 2)]
    assert brightness(_image((1, 1, 30))).tolist() == [0.0]


def test_stroke_thickness_counts_pixels_with_a_missing_4_neighbour():
    block = torch.zeros(1, 9, 9, dtype=torch.uint8)
    block[0, 2:7, 2:7] = 255  # 5 x 5: 25 ink pixels, 16 on the boundary, 9 inside
    assert stroke_thickness(block).tolist() == [pytest.approx(2 * 25 / 16)]
    corner = torch.zeros(1, 4, 4, dtype=torch.uint8)
    corner[0, :3, :3] = 255  # at the image's edge: the border counts as background
    assert stroke_thickness(corner).tolist() == [pytest.approx(2 * 9 / 8)]
    diagonal = torch.zeros(1, 5, 5, dtype=torch.uint8)
    diagonal[0, [1, 2, 3], [1, 2, 3]] = 255  # diagonal neighbours are not 4-neighbours
    assert stroke_thickness(diagonal).tolist() == [2.0]


def test_slant_is_minus_mu11_over_mu02_of_the_intensities():
    top_right = _image((0, 1, 100), (2, 0, 100))  # centre (1, 0.5): mu11 = -1, mu02 = 2 per unit of intensity
    assert slant(top_right).tolist() == [pytest.approx(0.5)]
    assert slant(_image((0, 0, 100), (2, 1, 100))).tolist() == [pytest.approx(-0.5)]  # the top leans left
    weighted = _image((0, 2, 200), (2, 0, 100))  # centre (2/3, 4/3)
    r, c, w = np.array([0, 2]), np.array([2, 0]), np.array([200.0, 100.0])
    r0, c0 = (w * r).sum() / w.sum(), (w * c).sum() / w.sum()
    expected = -(w * (r - r0) * (c - c0)).sum() / (w * (r - r0) ** 2).sum()
    assert slant(weighted).tolist() == [pytest.approx(expected)] and expected == pytest.approx(1.0)
    assert slant(_image((3, 3, 100), (3, 5, 100))).tolist() == [0.0]  # one row: no height to lean over
    assert slant(_image()).tolist() == [0.0]  # empty


def test_thirds_and_levels_at_their_edges():
    values = np.array([0.0, 1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 40.0])
    classes = np.array([0, 0, 0, 0, 2, 2, 2, 2])
    edges = thirds(values, classes, 3)
    np.testing.assert_allclose(edges, [[1.0, 2.0], [0.0, 0.0], [20.0, 30.0]])  # class 1 has no values
    assert levels(np.array([0.9, 1.0, 2.0, 2.1, 19.0, 20.0, 30.0, 31.0]), classes, edges).tolist() == [
        -1, 0, 0, 1, -1, 0, 0, 1]
    assert levels(np.array([5.0]), np.array([1]), edges).dtype == np.int64


class Scripted:
    """A random source that answers from lists and records what it was asked."""

    def __init__(self, randoms=(), ranges=(), pick=0):
        self.randoms, self.ranges, self.pick, self.asked = list(randoms), list(ranges), pick, []

    def random(self):
        self.asked.append("random")
        return self.randoms.pop(0)

    def randrange(self, n):
        self.asked.append(("randrange", n))
        return self.ranges.pop(0)

    def choice(self, options):
        self.asked.append(("choice", tuple(options)))
        return options[self.pick]


def test_articles_and_every_template():
    for word in ("eight", "8", "upright 7", "ankle boot", "italic 1"):
        assert CaptionScheme.article(word) == "an", word
    for word in ("one", "seven", "thick 7", "heavy", "1", "bag"):
        assert CaptionScheme.article(word) == "a", word
    s = DIGIT_SCHEME
    assert s.phrase(0, "seven", ["thick", "slanted"]) == "a thick slanted seven"
    assert s.phrase(0, "7", ["upright"]) == "an upright 7" and s.phrase(0, "eight", []) == "an eight"
    assert s.phrase(1, "seven", []) == "seven" and s.phrase(1, "seven", ["thin"]) == "seven, thin"
    assert s.phrase(1, "7", ["thin", "upright"]) == "7, thin and upright"
    assert s.phrase(1, "7", ["thin", "upright", "small"]) == "7, thin, upright and small"
    assert s.phrase(2, "7", ["thin", "upright"]) == "the digit 7, thin and upright"
    assert s.phrase(2, "seven", []) == "the digit seven"
    assert FASHION_SCHEME.phrase(2, "coat", ["dark"]) == "the garment coat, dark"
    assert s.phrase(3, "7", ["thin", "upright"]) == "thin upright 7" and s.phrase(3, "7", []) == "7"


def test_words_for_draws_one_adjective_per_kept_attribute_level():
    rng = Scripted(randoms=[0.5, 0.8, 0.74999], pick=0)
    assert DIGIT_SCHEME.words_for([1, -1, 0], rng) == ["thick"]
    assert rng.asked == ["random", ("choice", ("thick", "bold", "heavy")), "random"]  # no draw at the middle level
    rng = Scripted(randoms=[0.1, 0.74999, 0.2], pick=2)
    assert DIGIT_SCHEME.words_for([-1, 1, -1], rng) == ["fine", "leaning", "narrow"]
    rng = Scripted(randoms=[0.75, 0.9], pick=0)
    assert DIGIT_SCHEME.words_for([1, 1, 0], rng) == []  # 0.75 is not below keep=0.75
    rng = Scripted(randoms=[0.9, 0.99], pick=1)
    assert DIGIT_SCHEME.words_for([-1, 1, 0], rng, keep=1.0) == ["light", "italic"]


@pytest.mark.parametrize("template, form_draw, expected", [
    (0, 1, "a thick seven"), (1, 0, "7, thick"), (2, 0, "the digit seven, thick"), (2, 1, "the digit 7, thick"),
    (3, 0, "thick 7")])
def test_training_captions_pick_a_template_and_its_name_form(template, form_draw, expected):
    rng = Scripted(randoms=[0.0], ranges=[template, form_draw], pick=0)
    assert DIGIT_SCHEME.training_caption(7, [1, 0, 0], rng) == expected
    # the form is drawn for every template (used by the third only): the cached sets depend on this order
    assert rng.asked == [("randrange", 4), ("randrange", 2), "random", ("choice", ("thick", "bold", "heavy"))]


def test_held_out_captions_draw_one_of_three_kinds():
    for kind, expected in ((0, "a thick slanted 7"), (1, "seven, thick and slanted"), (2, "a slanted thick seven")):
        rng = Scripted(ranges=[kind])
        assert DIGIT_SCHEME.held_out_caption(7, ["thick", "slanted"], rng) == expected
        assert rng.asked == [("randrange", 3)]
    assert DIGIT_SCHEME.held_out_phrase(2, 7, ["thick"]) == "a thick 7"  # one adjective: read as kind 0
    assert DIGIT_SCHEME.held_out_phrase(2, 8, []) == "an 8"
    assert DIGIT_SCHEME.held_out_phrase(1, 8, []) == "eight"


def test_the_vocabulary_holds_every_word_of_the_scheme():
    tiny = CaptionScheme([["zero", "0"], ["ankle boot", "boot"]], [("x", None, ["thin"], ["t-shirt", "Big"])])
    assert tiny.vocabulary_words() == sorted(["0", "a", "an", "and", "ankle", "big", "boot", "digit", "shirt", "t",
                                              "the", "thin", "zero"])
    tiny.noun = "garment"
    assert "garment" in tiny.vocabulary_words() and "digit" not in tiny.vocabulary_words()
    assert len(DIGIT_SCHEME.vocabulary_words()) == 5 + 20 + 18


def test_measures_take_numpy_arrays_of_any_layout_and_non_square_images():
    wide = np.zeros((1, 3, 7), np.uint8)  # (N, H, W): 3 rows, 7 columns
    wide[0, 0, 5], wide[0, 2, 1] = 200, 200  # the top leans right: 2 columns over 2 rows
    assert slant(wide).tolist() == [pytest.approx(2.0)]
    assert slant(torch.from_numpy(wide[:, None])).tolist() == [pytest.approx(2.0)]  # (N, 1, H, W) as a tensor
    assert ink_box_area(wide).tolist() == [3.0 * 5.0] and stroke_thickness(wide).tolist() == [2.0]
    assert brightness(wide).tolist() == [200.0] and ink_area(wide).tolist() == [2.0]
    assert brightness(_image((3, 4, 255))).tolist() == [255.0]  # one pixel above 30


def test_slant_of_faint_ink_and_the_reversed_phrasing_of_three_adjectives():
    faint = _image((0, 1, 1), (1, 0, 1))  # intensity 1 in two rows: mu02 = 0.5, below 1
    assert slant(faint).tolist() == [pytest.approx(1.0)]
    assert DIGIT_SCHEME.held_out_phrase(2, 7, ["thick", "slanted", "small"]) == "a small slanted thick seven"
