"""Using a trained model: the Predictor (prepare, answer), predictions for files, the bundled
reader, explanations and export."""
