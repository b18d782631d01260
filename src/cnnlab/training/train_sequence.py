"""Train the sequence reader (:mod:`cnnlab.handwriting.sequence`) again, as it was trained for cnnlab:

    python -m cnnlab.training.train_sequence [--data-dir DIR] [--out FILE]

Numbers of 1-6 MNIST training digits of the reader's split (``val_split=0.1, seed=1``: its
validation digits are never seen), composed as people write them: each digit tilted up to 12
degrees, 80-120% in size and 85-115% in width; neighbours from an overlap of 6 pixels (at most
half the narrower digit) to a gap of 9; the digits at heights up to 10 pixels apart; half of the
numbers slanted (shear up to 0.3); 30% of them in a thicker pen; blurred a little. 60,000 new
numbers each epoch, batches of 64 strips of like width, CTC loss, Adam, in five stages (``STAGES``):
14 epochs of one cycle up to a learning rate of 0.003, then 16 more of a cycle up to 0.0015, 12
of one up to 0.001 and 12 of one up to 0.0005 (each stage was added when the last one's weights
still read better with every epoch); then 10 of one up to 0.001 with half the digits bent by a
smooth elastic field of 2 pixels (:func:`warped`), for writers the networks never saw. On 2
threads of a 2-core CPU an epoch takes 1.8-2.5 minutes (making its numbers about 50 s of it), so
the whole training about 160 minutes. A last check reads 2,000 numbers of validation digits.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save
from scipy import ndimage
from torch import nn

from cnnlab.handwriting.sequence import (
    BLANK,
    HEIGHT,
    STRIDE,
    WEIGHTS,
    SequenceNetwork,
    best_reading,
    strip_log_probs,
    to_strip,
)
from cnnlab.training.augment import AugmentSpec, augment_uint8

INK = 0.25  # a composed number's pixel at least this bright is ink (of 1)
DIGITS = [1, 2, 2, 3, 3, 4, 4, 5, 6]  # how many digits a number has, drawn from this list
BATCH = 64
# (epochs, peak learning rate, share of them warming up, share of the digits bent) of each one-cycle stage
STAGES = ((14, 0.003, 0.3, 0.0), (16, 0.0015, 0.15, 0.0), (12, 0.001, 0.15, 0.0), (12, 0.0005, 0.15, 0.0),
          (10, 0.001, 0.15, 0.5))
WARP_PX = 2.0  # the elastic field's size in pixels: other writers' shapes of the same digit


def varied(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit (uint8 ``(28, 28)``) as written in a number: tilted, resized, cropped to its ink."""
    image = Image.fromarray(digit).rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
    size = rng.uniform(0.8, 1.2)
    image = np.asarray(image.resize((max(8, round(28 * size * rng.uniform(0.85, 1.15))), round(28 * size)),
                                    Image.Resampling.BILINEAR))
    rows, cols = np.flatnonzero(image.max(1) > 30), np.flatnonzero(image.max(0) > 30)
    return image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def compose(digits: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """MNIST digits written as one number: its ink, 0-1 ``(H, W)`` (see the module's docstring)."""
    crops = [varied(d, rng) for d in digits]
    height = max(c.shape[0] for c in crops)
    rise = int(rng.integers(0, 11))
    canvas = np.zeros((height + rise + 4, sum(c.shape[1] + 10 for c in crops) + 20), np.uint8)
    x = 4
    for i, crop in enumerate(crops):
        y = 2 + int(rng.integers(0, rise + height - crop.shape[0] + 1))
        region = canvas[y : y + crop.shape[0], x : x + crop.shape[1]]
        np.maximum(region, crop, out=region)
        if i + 1 < len(crops):
            narrow = min(crop.shape[1], crops[i + 1].shape[1])  # a thin 1 may not vanish into its neighbour
            x += crop.shape[1] + max(int(rng.integers(-6, 10)), -(narrow // 2))
    canvas = canvas[:, : x + crops[-1].shape[1] + 4]
    if rng.random() < 0.5:  # a slant
        shear = rng.uniform(-0.3, 0.3)
        pad = int(abs(shear) * canvas.shape[0]) + 2
        canvas = np.pad(canvas, ((0, 0), (pad, pad)))
        centre = canvas.shape[0] / 2
        canvas = ndimage.affine_transform(canvas, [[1, 0], [shear, 1]], offset=[0, -shear * centre], order=1)
    ink = canvas.astype(np.float32) / 255
    pen = rng.random()
    if pen < 0.3:  # a thicker pen: 1 pixel more each side, or 2
        ink = ndimage.grey_dilation(ink, size=(3, 3) if pen < 0.2 else (5, 5))
    ink = ndimage.gaussian_filter(ink, float(rng.uniform(0, 0.8)))
    strong = ink > 0.3
    return np.clip(ink / max(float(np.percentile(ink[strong], 90)) if strong.any() else 1.0, 0.3), 0, 1)


def warped(images: np.ndarray, share: float, seed: int) -> np.ndarray:
    """MNIST ``images`` ``(N, 28, 28)`` with ``share`` of them bent by a smooth elastic field of
    :data:`WARP_PX` (:func:`cnnlab.training.augment.augment_uint8`): the digits as other writers shape them."""
    if not share:
        return images
    bend = AugmentSpec(rotate_deg=0, scale=0, shift_px=0, elastic_px=WARP_PX)
    bent = augment_uint8(torch.from_numpy(images), bend, seed)
    chosen = np.random.default_rng(seed + 7).random(len(images)) < share
    return np.where(chosen[:, None, None], bent.numpy(), images)


def make_strips(images: np.ndarray, labels: np.ndarray, count: int, seed: int, warp: float = 0.0
                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``count`` numbers composed from MNIST ``images`` ``(N, 28, 28)`` and their ``labels`` ``(N,)``,
    ``warp`` of the images bent first (:func:`warped`): ``(strips, digits)``, uint8 ``(32, W)``
    strips and int64 arrays of their digits."""
    images = warped(images, warp, seed)
    rng = np.random.default_rng(seed)
    strips, texts = [], []
    for _ in range(count):
        chosen = rng.choice(len(images), int(rng.choice(DIGITS)), replace=False)
        ink = compose(list(images[chosen]), rng)
        if (ink > INK).any():
            strips.append(to_strip(ink, ink > INK))
            texts.append(labels[chosen].astype(np.int64))
    return strips, texts


def batches(strips: list[np.ndarray], texts: list[np.ndarray], rng: np.random.Generator
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Batches of strips of like width, in random order: ``(strips (B, 1, 32, W), steps (B,),
    digits (sum of lengths,), lengths (B,))`` as :class:`torch.nn.CTCLoss` takes them."""
    order = np.argsort([s.shape[1] for s in strips], kind="stable")
    groups = [order[i : i + BATCH] for i in range(0, len(order), BATCH)]
    rng.shuffle(groups)
    for group in groups:
        width = -(-max(strips[i].shape[1] for i in group) // STRIDE) * STRIDE
        batch = np.zeros((len(group), 1, HEIGHT, width), np.float32)
        for k, i in enumerate(group):
            batch[k, 0, :, : strips[i].shape[1]] = strips[i] / 255
        yield (torch.from_numpy(batch), torch.tensor([strips[i].shape[1] // STRIDE for i in group]),
               torch.cat([torch.from_numpy(texts[i]) for i in group]), torch.tensor([len(texts[i]) for i in group]))


def train_sequence_reader(make: Callable[[int, float], tuple[list[np.ndarray], list[np.ndarray]]],
                          per_epoch: int, stages: tuple[tuple[int, float, float, float], ...] = STAGES,
                          seed: int = 0, log: Callable[[str], None] = print) -> SequenceNetwork:
    """Train a :class:`SequenceNetwork` with CTC on ``make(epoch, warp)``'s ``(strips, digits)``,
    about ``per_epoch`` of them each epoch, for each of ``stages`` ``(epochs, peak learning rate,
    share of them warming up, warp: the share of digits bent)`` a one-cycle schedule of its own."""
    torch.manual_seed(seed)
    network = SequenceNetwork()
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
    epoch, total_epochs = 0, sum(stage[0] for stage in stages)
    for stage, (epochs, peak, warm_up, warp) in enumerate(stages):
        rng = np.random.default_rng(seed + stage)  # the order of the batches
        optimizer = torch.optim.Adam(network.parameters())
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, peak, total_steps=epochs * -(-per_epoch // BATCH),
                                                       pct_start=warm_up)
        for _ in range(epochs):
            strips, texts = make(epoch, warp)
            network.train()
            start, total = time.time(), 0.0
            for batch, steps, digits, lengths in batches(strips, texts, rng):
                loss = ctc(network(batch).transpose(0, 1), digits, steps, lengths)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                total += float(loss.detach()) * len(lengths)
            epoch += 1
            log(f"epoch {epoch}/{total_epochs}: CTC loss {total / len(texts):.4f}, {time.time() - start:.0f} s")
    return network.eval()


def main() -> None:
    from cnnlab.data import load_dataset
    from cnnlab.files import atomic_write_bytes

    parser = argparse.ArgumentParser(description="Train the sequence reader on numbers of MNIST training digits.")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--numbers", type=int, default=60_000, help="new numbers each epoch")
    parser.add_argument("--out", default=str(WEIGHTS))
    args = parser.parse_args()
    torch.set_num_threads(2)  # another thread count learns other weights
    data = load_dataset("mnist", data_dir=args.data_dir, val_split=0.1, seed=1)  # the reader's split
    images, labels = data.train_images.numpy(), data.train_labels.numpy()
    network = train_sequence_reader(lambda epoch, warp: make_strips(images, labels, args.numbers, 1000 + epoch, warp),
                                    args.numbers, log=lambda line: print(line, flush=True))
    strips, texts = make_strips(data.val_images.numpy(), data.val_labels.numpy(), 2000, 99)
    right = sum(best_reading(strip_log_probs(s, network)) == t.tolist() for s, t in zip(strips, texts, strict=True))
    print(f"sequence reader: {right} of {len(texts)} numbers of validation digits read whole")
    weights = {name: (value.half() if value.is_floating_point() else value).contiguous()
               for name, value in network.state_dict().items()}  # float16: half the size, the same readings
    atomic_write_bytes(args.out, save(weights))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
