"""Run settings (cnnlab.training.config): a small folder's batches and epochs."""

from cnnlab.training.config import MIN_STEPS, TrainConfig, fit_to_small_data


def test_a_small_folder_gets_small_batches_and_enough_steps():
    config = TrainConfig.from_preset("fast", kind="images")
    note = fit_to_small_data(config, "images", 648)
    assert config.batch_size == 32 and -(-648 // 32) * config.epochs >= MIN_STEPS
    assert note.startswith("note: 648 training images are few") and "--batch-size" in note


def test_chosen_settings_and_large_or_builtin_data_are_left_alone():
    chosen = TrainConfig.from_preset("fast", kind="images", batch_size=64)
    assert fit_to_small_data(chosen, "images", 648) is None and chosen.batch_size == 64
    large = TrainConfig.from_preset("fast", kind="images")
    assert fit_to_small_data(large, "images", 60_000) is None and (large.batch_size, large.epochs) == (256, 3)
    digits = TrainConfig.from_preset("fast")
    assert fit_to_small_data(digits, "digits", 500) is None and digits.batch_size == 128


def test_settings_the_caller_chose_are_not_fitted(tmp_path):
    from cnnlab.training.config import resolve_config

    chosen, _ = resolve_config(None, {"dataset": str(tmp_path), "epochs": 3})
    assert chosen.fit_small_data is False and fit_to_small_data(chosen, "images", 300) is None
    default, _ = resolve_config(None, {"dataset": str(tmp_path)})
    assert default.fit_small_data is True and fit_to_small_data(default, "images", 300) is not None
