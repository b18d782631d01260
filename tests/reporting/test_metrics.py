import torch
from torch import nn

from cnnlab.models.inference import TTA_SHIFTS, predict_logits, predict_logits_tta, shift_images
from cnnlab.reporting.metrics import chance_level_warning


def test_shift_moves_pixels_and_fills_the_edge_with_background():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 2] = 5.0
    moved = shift_images(x, 1, -1, background=-1.0)
    assert moved[0, 0, 2, 1] == 5.0 and moved[0, 0, 1, 2] == 0.0
    assert (moved[0, 0, 0, :] == -1.0).all() and (moved[0, 0, :, 3] == -1.0).all()
    assert moved.shape == x.shape and shift_images(x, 0, 0, -1.0) is x


def test_tta_returns_log_probabilities_that_average_the_shifts():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    x = torch.randn(8, 1, 6, 6)
    out = predict_logits_tta(model, x, background=0.0)
    assert torch.allclose(out.exp().sum(1), torch.ones(8))
    expected = torch.stack([predict_logits(model, shift_images(x, *s, 0.0)).softmax(1) for s in TTA_SHIFTS]).mean(0)
    assert torch.allclose(out.exp(), expected, atol=1e-6)
    alone = predict_logits_tta(model, x, 0.0, shifts=((0, 0),))
    assert torch.allclose(alone, predict_logits(model, x).log_softmax(1), atol=1e-6)


def test_tta_sends_each_chunk_with_all_its_shifts_through_the_network_at_once(monkeypatch):
    from cnnlab.models import inference

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    batches = []
    model.register_forward_hook(lambda module, inputs, output: batches.append(len(inputs[0])))
    x = torch.randn(7, 1, 6, 6)
    expected = torch.stack([predict_logits(model, shift_images(x, *s, 0.0)).softmax(1) for s in TTA_SHIFTS]).mean(0)
    batches.clear()
    monkeypatch.setattr(inference, "EVAL_BATCH", 15)  # chunks of 3 images, 15 shifted images a call
    out = predict_logits_tta(model, x, background=0.0)
    assert batches == [15, 15, 5]
    assert torch.allclose(out.exp(), expected, atol=1e-6)


def test_train_and_evaluate_score_with_tta_when_asked(toy_dataset, tmp_path):
    from cnnlab import evaluate_model, train

    run = train(model="cnn", epochs=2, batch_size=32, tta=True, dataset=toy_dataset, progress=False)
    assert run.metrics["tta"] is True
    again = evaluate_model(run.model, run.info, toy_dataset.test_images, toy_dataset.test_labels, tta=True)
    assert again["test_accuracy"] == run.metrics["test_accuracy"]


def test_chance_level_accuracy_is_said_in_plain_words():
    said = chance_level_warning(0.1135, 10, 1.0)
    assert said.startswith("accuracy 11.3% is chance level for 10 classes") and "learning rate 1 is likely" in said
    assert chance_level_warning(0.185, 10, None) and chance_level_warning(0.54, 2, 0.01)  # under 19% and 55%
    assert chance_level_warning(0.20, 10, 1.0) is None and chance_level_warning(0.9924, 10, 0.01) is None
    assert chance_level_warning(0.56, 2, 0.01) is None
