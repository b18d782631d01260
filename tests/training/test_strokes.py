"""The handwriting augmentation's stroke changes: thicker, broken and low-resolution digits."""

import torch

from cnnlab.training import strokes
from cnnlab.training.augment import LEVELS, Augmenter, augment_uint8


def bar_batch(n: int = 64) -> torch.Tensor:
    """Ink (0 = paper) of a vertical bar 4 px wide and 20 tall, centred: ``(n, 1, 28, 28)``."""
    ink = torch.zeros(n, 1, 28, 28)
    ink[:, :, 4:24, 12:16] = 2.0
    return ink


def test_thicken_grows_a_share_of_the_strokes_and_says_how_to_shrink_them_back():
    ink = bar_batch(400)
    grown, shrink = strokes.thicken(ink, torch.Generator().manual_seed(0))
    widths = (grown[:, 0, 14] > 0).sum(1)  # the bar's width on its middle row
    assert set(widths.tolist()) == {4, 6, 8}
    assert torch.equal(shrink[widths == 4], torch.ones(int((widths == 4).sum())))
    assert torch.allclose(shrink[widths == 8], torch.tensor(20 / 24))
    share_grown = (widths > 4).float().mean().item()
    assert abs(share_grown - sum(share for _, share in strokes.THICKER)) < 0.08
    assert grown.max() == ink.max()  # grown, never brightened


def test_breaks_cut_thin_gaps_in_some_images_and_leave_the_others():
    ink = bar_batch(400)
    broken = strokes.break_strokes(ink, torch.Generator().manual_seed(1))
    lost = 1 - broken.sum((1, 2, 3)) / ink.sum((1, 2, 3))
    changed = lost > 0
    # A share of the images draws a gap; some of those gaps fall beside the bar and change nothing.
    assert strokes.BREAK_SHARE / 2 < changed.float().mean().item() < strokes.BREAK_SHARE + 0.05
    assert lost.max() < 0.4  # a short gap, not an erased stroke
    assert (broken <= ink).all()  # ink is only taken away


def test_low_resolution_blurs_a_share_and_keeps_the_brightest_ink():
    ink = bar_batch(400)
    low = strokes.low_resolution(ink, torch.Generator().manual_seed(2))
    changed = (low != ink).flatten(1).any(1)
    assert abs(changed.float().mean().item() - strokes.LOW_RES_SHARE) < 0.08
    assert torch.allclose(low.amax((1, 2, 3)), ink.amax((1, 2, 3)))
    assert ((low[changed] > 0) & (ink[changed] == 0)).flatten(1).any(1).all()  # ink spread past its edges


def test_the_handwriting_level_is_reproducible_and_keeps_paper_as_paper():
    images = torch.zeros(32, 28, 28, dtype=torch.uint8)
    images[:, 6:22, 12:16] = 255
    first, again = augment_uint8(images, "handwriting", 5), augment_uint8(images, "handwriting", 5)
    assert torch.equal(first, again) and not torch.equal(first, augment_uint8(images, "handwriting", 6))
    background = -0.4242
    blank = torch.full((8, 1, 28, 28), background)
    assert torch.allclose(Augmenter(LEVELS["handwriting"], background, 0)(blank), blank, atol=1e-5)


def test_slant_and_width_change_the_shape_but_not_the_height():
    spec = LEVELS["handwriting"]
    assert spec.shear > 0 and spec.stretch > 0 and spec.strokes
    images = torch.zeros(64, 28, 28, dtype=torch.uint8)
    images[:, 4:24, 12:16] = 255
    warped = augment_uint8(images, "handwriting", 0).float()
    columns = (warped > 64).any(1).sum(1)  # how wide the bar's ink spreads: slanted or widened bars spread
    assert (columns > 6).float().mean() > 0.5
