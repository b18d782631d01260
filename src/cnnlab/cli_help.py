"""The ``--help`` text of each ``cnnlab`` command: a one-line summary, what it does, and examples.

Kept apart from cli.py so the commands stay readable. Each example block follows a ``\\b`` line,
which tells click not to rewrap it; the docs' command reference (mkdocs-click) drops that line
and shows the indented examples as code.
"""

from __future__ import annotations


def _help(summary: str, details: str, *examples: str) -> str:
    lines = "\n".join(f"    {e}" for e in examples)
    return f"{summary}\n\n{details}\n\nExamples:\n\n\b\n{lines}"


APP = _help(
    "Train and use convolutional networks for small images (MNIST first), fast, on a CPU.",
    "Run 'cnnlab COMMAND --help' for a command's options and examples. Every command is also a "
    "Python function: import cnnlab.",
    "cnnlab train  # the default model: one epoch, about 99.3%",
    "cnnlab evaluate runs/fast-mnist-seed0",
    "cnnlab predict runs/fast-mnist-seed0 photo.jpg",
    "cnnlab read photo.jpg  # the bundled handwriting reader: no training first",
    "cnnlab serve runs/fast-mnist-seed0  # a draw-a-digit page at http://127.0.0.1:8000/",
)

COMMANDS = {
    "train": _help(
        "Train a model and save its run directory.",
        "Starts from a preset's settings (fast, accurate, best or reader); any option given on the command line "
        "replaces the preset's. Prints a line per epoch and the test error, and writes the model, its "
        "history, pictures and report.html. A checkpoint is saved after every epoch; --resume RUN "
        "continues an interrupted run. One training writes a folder at a time; a folder with files "
        "cnnlab did not write is refused, and --overwrite replaces only a cnnlab run.",
        "cnnlab train  # fast preset: cnn-fast, 1 epoch",
        "cnnlab train --preset accurate --epochs 10",
        "cnnlab train --model mlp --augment none --out runs/mlp",
        "cnnlab train --dataset my-photos/  # a folder of class subfolders",
        "cnnlab train --resume runs/accurate-mnist-seed0",
        "cnnlab train --model mlp --out runs/mlp --overwrite  # replace that run",
    ),
    "evaluate": _help(
        "Score a trained model on a test set.",
        "Prints the test error, the loss and the accuracy of each class; --json adds the confusion "
        "matrix. The test set is the model's own dataset unless --dataset says otherwise.",
        "cnnlab evaluate runs/fast-mnist-seed0",
        "cnnlab evaluate runs/fast-mnist-seed0 --tta --json",
    ),
    "predict": _help(
        "Label images, photos of handwriting and numbers.",
        "Photos and scans are made to look like MNIST first (paper, shadows and polarity handled). "
        "A folder runs in batches; an image that cannot be read gets its own one-line reason and the "
        "rest are answered.",
        "cnnlab predict runs/fast-mnist-seed0 my_digit.jpg",
        "cnnlab predict runs/fast-mnist-seed0 photos/ --min-confidence 0.9",
        "cnnlab predict runs/fast-mnist-seed0 year.jpg --number --json",
    ),
    "read": _help(
        "Read handwritten digits and numbers with the bundled reader.",
        "No model or training needed: cnnlab's bundled reader, a network trained for photos of "
        "handwriting, reads each image as one digit or a number, as it judges best (--digit and --number "
        "force either). Output, folders and bad files as in predict.",
        "cnnlab read photo.jpg",
        "cnnlab read photos/ --json",
        "cnnlab read year.jpg --number",
    ),
    "explain": _help(
        "Show why a model gave its answer, and what each layer saw.",
        "Each image is prepared as predict prepares it. One PNG per image holds your image, the input "
        "the network saw, a heatmap of the pixels that decided for each method (saliency, "
        "integrated-gradients, occlusion, gradcam; computed by Captum), then every layer's activations: "
        "a grid of maps for each conv layer and bars for each dense layer.",
        "cnnlab explain runs/fast-mnist-seed0 my_digit.jpg",
        "cnnlab explain runs/fast-mnist-seed0 photos/ --method saliency --method gradcam --out why/",
        "cnnlab explain runs/fast-mnist-seed0 my_digit.jpg --target 9",
    ),
    "report": _help(
        "Make a run's pictures and report.html again.",
        "Rebuilds the pictures (curves, confusion matrix, mistakes, filters, feature maps) and the "
        "self-contained report.html from the saved model.",
        "cnnlab report runs/fast-mnist-seed0",
    ),
    "export": _help(
        "Export a trained model to ONNX.",
        "Writes model.onnx (any batch size) and model.json, for use outside PyTorch; cnnlab predict and "
        "serve take the .onnx file too. Needs the onnx extra: pip install 'cnnlab[onnx]'.",
        "cnnlab export runs/fast-mnist-seed0 --format onnx",
        "cnnlab predict runs/fast-mnist-seed0/model.onnx my_digit.jpg",
    ),
    "serve": _help(
        "Serve a draw-a-digit page and a JSON API.",
        "The page at / lets you draw or upload a digit and shows the answer and what the network saw; "
        "POST /api/predict answers JSON, and /docs describes the API. Listens on loopback unless --host "
        "says otherwise. Predictions are open to anyone who reaches the server; starting or stopping a "
        "training needs the token in the URL it prints (or --token); --no-train turns the Train tab off.",
        "cnnlab serve runs/fast-mnist-seed0",
        "cnnlab serve  # the handwriting reader that ships with cnnlab",
        "cnnlab serve runs/fast-mnist-seed0 --host 0.0.0.0 --no-train  # share predictions on the network",
        "curl -F file=@my_digit.jpg http://127.0.0.1:8000/api/predict  # from another terminal",
    ),
    "show": _help(
        "Draw a labelled grid of a dataset's images.",
        "Writes a PNG of the first images with their labels; --augment adds rows of the random warps "
        "that training applies.",
        "cnnlab show --dataset mnist --out samples.png",
        "cnnlab show --augment light --count 8",
    ),
    "info": _help(
        "Print a dataset's sizes, class counts and pixel statistics.",
        "For a built-in dataset or your own folder or CSV: check it before you train.",
        "cnnlab info --dataset mnist",
        "cnnlab info --dataset my-photos/ --json",
    ),
    "models": _help(
        "List the architectures with their size, cost and layer spec.",
        "Parameters and multiply-adds per image (MFLOPs) of every registry model, then each one's layer "
        "spec. --model also takes a spec of your own (docs: the layer language).",
        "cnnlab models",
        "cnnlab models --json",
    ),
    "summary": _help(
        "Describe a network layer by layer, as Keras' summary does.",
        "One row per layer: output shape, parameters, MFLOPs per image and receptive field; then the "
        "totals and the memory for the weights and for training's activations. MODEL is a registry name, "
        "a layer spec, a file holding one, or a run directory.",
        "cnnlab summary seed-cnn",
        'cnnlab summary "conv32k3 conv32k3 maxpool dropout0.25 dense128"',
        "cnnlab summary runs/fast-mnist-seed0 --json",
    ),
    "lr-find": _help(
        "Find a learning rate: the range test, as fastai's lr_find.",
        "Trains a fresh network for up to --steps steps while the learning rate grows from --start to --end, "
        "prints the suggested peak learning rate (fastai's 'minimum' rule: the rate of the lowest smoothed loss, "
        "divided by 10; fastai's 'valley' is printed beside it, for comparison) and writes lr_find.png with the "
        "suggestion marked, and lr_find.json. 'cnnlab train --lr auto' does this first and trains with the suggestion.",
        "cnnlab lr-find --model cnn",
        'cnnlab lr-find --model "conv32k3 maxpool dense128" --optimizer sgd',
        "cnnlab train --model cnn --lr auto",
    ),
    "compare": _help(
        "Compare runs: a table, their curves overlaid, and a page.",
        "Prints each run's model, parameters, epochs, test accuracy and training seconds; writes "
        "compare.png (loss and accuracy, training dashed and validation solid, one colour a run) and "
        "compare.html. A folder that is not a run is reported and left out.",
        "cnnlab compare runs/mlp runs/seed-cnn",
        "cnnlab compare runs/* --out comparisons/all",
    ),
    "reproduce": _help(
        "Train the beginner's article's models and compare errors.",
        "Trains the article's MLP, its CNN as printed and its CNN as described, with its settings (Adam, "
        "10 epochs, batch 200), and prints their test errors beside the article's. A full run takes "
        "about 3-6 minutes on a 2-core laptop CPU, most of it for the described CNN; --epochs 1 takes "
        "under a minute.",
        "cnnlab reproduce article",
        "cnnlab reproduce article --epochs 1 --json",
    ),
    "bench": _help(
        "Time our presets against the peers' recipes.",
        "Trains each recipe on MNIST in one run and prints its test accuracy, training seconds, seconds "
        "to 99% and ratios to the fast preset; writes bench.json and bench.png. All of it takes about an "
        "hour on a 2-core CPU; --inference measures prediction speed instead.",
        "cnnlab bench --recipes fast,keras-convnet --peer-epochs 2",
        "cnnlab bench --inference",
    ),
}
