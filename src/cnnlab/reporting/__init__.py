"""What a run shows: its metrics, its pictures and its report.html.

    metrics   loss, accuracy, per-class accuracy, the confusion matrix; evaluate() of a saved model
    plots     every picture, drawn with matplotlib (Agg) and written atomically
    report    a run directory's files, pictures and self-contained report.html
"""
