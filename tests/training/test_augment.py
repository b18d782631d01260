import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.training.augment import LEVELS, Augmenter, AugmentSpec, augment_uint8, get_level
from cnnlab.training.loop import train


def digit_batch(n=16):
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    images[:, 8:20, 12:16] = 255  # a vertical bar, centred
    return images


@pytest.mark.parametrize(("level", "max_area_change"), [("light", 0.3), ("strong", 0.7)])
def test_augmentation_moves_ink_but_keeps_it(level, max_area_change):
    images = digit_batch()
    warped = augment_uint8(images, level, seed=1)
    assert warped.shape == images.shape and warped.dtype == torch.uint8
    assert not torch.equal(warped, images)
    ink_before, ink_after = images.float().sum((1, 2)), warped.float().sum((1, 2))
    # Scaling by s changes the ink's area by s^2 (light: 0.81-1.21); the elastic field of
    # 'strong' stretches thin strokes further. Ink is moved, never lost or multiplied.
    assert ((ink_after / ink_before) - 1).abs().max() < max_area_change
    assert not torch.equal(warped[0], warped[1])  # each image draws its own transform


def test_same_seed_same_warps_and_none_is_identity():
    images = digit_batch()
    assert torch.equal(augment_uint8(images, "strong", 3), augment_uint8(images, "strong", 3))
    assert not torch.equal(augment_uint8(images, "strong", 3), augment_uint8(images, "strong", 4))
    # a spec of one's own, as the sequence reader's training bends digits
    assert torch.equal(augment_uint8(images, LEVELS["strong"], 3), augment_uint8(images, "strong", 3))
    assert torch.equal(augment_uint8(images, "none"), images)


def test_background_stays_background_after_normalisation():
    background = -0.4242
    batch = torch.full((4, 1, 28, 28), background)
    out = Augmenter(LEVELS["strong"], background, 0)(batch)
    assert torch.allclose(out, batch, atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_unknown_level():
    with pytest.raises(CnnlabError, match="--augment must be one of none, light, strong"):
        get_level("heavy")


def test_training_with_augmentation(toy_dataset):
    plain = train(model="cnn", epochs=2, batch_size=32, dataset=toy_dataset, augment="none", progress=False)
    augmented = train(model="cnn", epochs=2, batch_size=32, dataset=toy_dataset, augment="light", progress=False)
    assert augmented.history[0]["loss"] != plain.history[0]["loss"]
    assert augmented.metrics["test_accuracy"] > 0.8


def test_closed_form_grid_equals_affine_grid():
    import math

    import torch.nn.functional as F

    from cnnlab.training.augment import AugmentSpec

    spec = AugmentSpec(rotate_deg=15, scale=0.15, shift_px=3)
    grid = Augmenter(spec, seed=5).grid(8, 28)
    draws = Augmenter(spec, seed=5)  # replay the same random numbers
    angle = draws._uniform(8, 1, 1).view(8) * math.radians(15)
    scale = 1 + draws._uniform(8, 1, 1).view(8) * 0.15
    shift = draws._uniform(2, 8, 1, 1).view(2, 8) * 3 * 2 / 28
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[0]], 1), torch.stack([sin, cos, shift[1]], 1)], 1)
    assert torch.allclose(F.affine_grid(theta, [8, 1, 28, 28], align_corners=False), grid, atol=1e-6)


def test_flip_mirrors_about_half_the_images_exactly():
    image = torch.arange(28 * 28, dtype=torch.float32).view(1, 1, 28, 28) / 784  # no two columns alike
    out = Augmenter(AugmentSpec(0, 0.0, 0, flip=True), seed=3)(image.expand(200, 1, 28, 28).contiguous())
    same = torch.isclose(out, image, atol=1e-5).flatten(1).all(1)
    mirrored = torch.isclose(out, image.flip(-1), atol=1e-5).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 70 < int(mirrored.sum()) < 130


def test_crop_flip_is_a_level_and_digits_levels_never_flip():
    assert LEVELS["crop-flip"].flip and LEVELS["crop-flip"].rotate_deg == 0
    assert not LEVELS["light"].flip and not LEVELS["strong"].flip


def test_crop_flip_moves_whole_pixels_and_never_smooths():
    from cnnlab.models.inference import shift_images

    image = torch.rand(1, 3, 16, 16)
    out = Augmenter(LEVELS["crop-flip"], background=[-1.0, 0.0, 1.0], seed=5)(image.expand(40, 3, 16, 16).contiguous())
    for copy in out:
        candidates = [shift_images(source, down, right, [-1.0, 0.0, 1.0])[0]
                      for source in (image, image.flip(-1)) for down in range(-3, 4) for right in range(-3, 4)]
        assert any(torch.allclose(copy, c, atol=1e-5) for c in candidates)  # a crop of the padded image, exactly
