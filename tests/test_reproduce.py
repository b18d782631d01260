from cnnlab.reproduce import ARTICLE_SETTINGS, format_table, reproduce_article


def test_article_settings_are_the_articles():
    # Hard targets: the article's Keras run had no label smoothing and no augmentation (our presets do).
    assert dict(epochs=10, batch_size=200, optimizer="adam", lr=1e-3, schedule="constant", label_smoothing=0.0,
                augment="none", val_split=0.0, normalize=False) == ARTICLE_SETTINGS


def test_reproduction_table_one_quick_epoch(mnist_dir, tmp_path):
    rows = reproduce_article(mnist_dir, epochs=1, models=["seed-cnn-as-printed"], out=tmp_path)
    (row,) = rows
    # One epoch of the as-printed net: far from the MLP's ~2%, far from chance (90%).
    assert 0.03 < row.error < 0.15 and row.seconds > 0
    assert row.to_json()["article_error"] == 0.0341
    table = format_table(rows)
    assert table.splitlines()[0].split()[:3] == ["model", "article", "error"]
    assert "seed-cnn-as-printed" in table and (tmp_path / "seed-cnn-as-printed" / "model.json").is_file()


def test_top_level_api_is_complete_and_its_functions_are_not_shadowed_by_modules():
    import cnnlab.bench  # imports every stage's submodules

    for name in cnnlab.__all__:
        assert getattr(cnnlab, name) is not None
    assert callable(cnnlab.train) and callable(cnnlab.evaluate)
    assert cnnlab.train.__module__ == "cnnlab.using.model"  # returns a TrainedModel
    assert cnnlab.evaluate.__module__ == "cnnlab.reporting.metrics"
