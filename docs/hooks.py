"""MkDocs hook: performance tables rendered from the results files that ``cnnlab bench`` wrote.

A page asks for one with a comment on a line of its own, the path relative to ``docs/``:

    <!-- bench: results/bench.json -->
    <!-- inference: results/inference.json -->
    <!-- targets: results/reader/handwriting-test.json -->   (benchmarks/targets.py's files)
    <!-- reliability: results/reliability.json -->   (what the fuzz suite, tests/fuzz, tried)
    <!-- serve: results/serve_load.json -->   (benchmarks/serve_load.py: the server under load)
    <!-- transfer: results/transfer_uci.json -->   (benchmarks/transfer_uci.py: fine-tuning on UCI digits)

and gets the table, with the date, the machine and the command that made it, so no figure is
retyped by hand. ``tests/test_docs.py`` uses :func:`headline_table` to check the README's.
``<!-- layers: table -->`` gives the layer language's table of kinds, from cnnlab.models.layers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cnnlab import bench
from cnnlab.models import layers

MARKER = re.compile(r"^<!-- (bench|inference|layers|targets|reliability|serve|transfer): (\S+) -->$", re.MULTILINE)
# Docstrings cross-reference in Sphinx's roles (:func:`name`, :class:`~pkg.Name`); shown as plain code.
SPHINX_ROLE = re.compile(r":(?:func|class|meth|data|mod|attr|exc):<code>~?")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows])


def provenance(results: dict) -> str:
    return f"Measured on {results['date']} on {results['machine']}, by `{results['command']}`."


def bench_section(results: dict) -> str:
    """The table as ``cnnlab bench`` printed it, its long target column as a list below it."""
    kind = bench.BENCH_DATASETS[results.get("dataset", "mnist")]
    cells, notes = bench.bench_table(bench.curves_from_results(results), kind)
    targets = [f"- `{row[0]}`: {row[-1]}" for row in cells if row[-1]]
    table = markdown_table(bench.bench_columns(kind)[:-1], [row[:-1] for row in cells])
    return "\n\n".join([provenance(results), table, "; ".join(notes) + ".",
                         *(["Targets:\n\n" + "\n".join(targets)] if targets else [])])


def inference_section(results: dict) -> str:
    rows = [[r["model"], f"{r['images_per_second_batch_1000']:,.0f}", f"{r['ms_per_image_batch_1']:.3f}"]
            for r in results["results"]]
    header = ["model", "images/s at batch 1000", "ms at batch 1"]
    return "\n\n".join([provenance(results), markdown_table(header, rows)])


HEADLINE = {"fast": "results/bench.json", "accurate": "results/bench.json", "best": "results/best/bench.json",
            "keras-convnet": "results/peers/bench.json", "pytorch-examples": "results/peers/bench.json"}


def headline_table(docs_dir: Path) -> str:
    """The README's small table: test accuracy, training seconds and seconds to 99% of our presets
    and the peers' full recipes, each from the results file named in :data:`HEADLINE`, and where
    and how those files were made."""
    sources = {path: json.loads((docs_dir / path).read_text()) for path in dict.fromkeys(HEADLINE.values())}
    tables = {path: {row[0]: row for row in bench.bench_table(bench.curves_from_results(results))[0]}
              for path, results in sources.items()}
    rows = [[f"`{recipe}`", *tables[path][recipe][1:6]] for recipe, path in HEADLINE.items()]
    first = next(iter(sources.values()))
    commands = ", ".join(f"`{r['command']}`" for r in sources.values())
    return (markdown_table(["recipe", "seeds", "epochs", "MNIST test accuracy", "training s", "s to 99%"], rows) +
            f"\n\nMeasured on {first['date']} on {first['machine']}, one job at a time, by {commands}.")


def layers_table() -> str:
    """Every kind of layer in the layer language: its words, its number, its options and flags."""
    aliases = {kind: [a for a, k in layers.ALIASES.items() if k == kind] for kind in layers.KINDS}
    rows = []
    for name, kind in layers.KINDS.items():
        words = ", ".join(f"`{w}`" for w in [name, *aliases[name]])
        size = kind.size and (f"{kind.size} (required)" if kind.needs_size else
                              f"{kind.size}, default {kind.default_size:g}" if kind.default_size else
                              f"{kind.size}, or none for the output layer")
        options = ", ".join(f"`{k}N` {meaning} (default {'the size' if default is None else default})"
                            for k, (meaning, default) in kind.options.items())
        flags = ", ".join(f"`-{f}`" for f in kind.flags)
        rows.append([words, size or "none", options, flags, kind.summary])
    return markdown_table(["kind", "number after it", "options", "flags", "what it is"], rows)


def targets_section(results: dict) -> str:
    """Figures with their targets (benchmarks/targets.py); a figure without one says where time goes."""
    rows = [[row["what"], row["measured"], row["target"] or "",
             "" if row["met"] is None else ("met" if row["met"] else "**not met**")] for row in results["results"]]
    return "\n\n".join([provenance(results), markdown_table(["figure", "measured", "target", ""], rows)])


def cell_code(text: str) -> str:
    """``text`` as code in a table cell: its pipes escaped, its backticks made quotes."""
    if not text:
        return ""
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def reliability_section(results: dict) -> str:
    """The fuzz suite's ledger (tests/fuzz/ledger.py): per target, what was tried, how many inputs of
    each case, what they got, and an example of the one line a refused input gets."""
    totals = results["totals"]
    failures = ("traceback", "5xx", "wrong answer", "file lost", "over bound")
    lines = [f"Tried on {results['date']} on {results['machine']}, by `{results['command']}`: "
             f"{totals['tried']:,} inputs, {totals.get('answer', 0):,} right answers, "
             f"{totals.get('clean error', 0):,} clean errors; "
             + ", ".join(f"{totals.get(f, 0)} {f}" for f in failures) + "."]
    for target in results["targets"]:
        rows = [[row["case"], f"{row['tried']:,}", f"{row['answer']:,}", f"{row['clean error']:,}",
                 f"{sum(row[f] for f in failures):,}", cell_code(row["example"])]
                for row in sorted(target["cases"], key=lambda r: -r["tried"])]
        lines += [f"### {target['target']}", f"{target['what']}. The most one input took: "
                  f"{target['peak_growth_mb']:,.0f} MB (bound {results['memory_bound_mb']:,} MB).",
                  markdown_table(["case", "tried", "answers", "clean errors", "failures", "what a refused one gets"],
                                 rows)]
    return "\n\n".join(lines)


def serve_section(results: dict) -> str:
    """benchmarks/serve_load.py's run: each scenario's throughput, latency and answers, the server's
    memory around the predict scenarios, and each target met or not."""
    quick = (" A `--quick` run (small counts, on a busy machine), kept so that this page builds: not a measurement."
             if results.get("quick") else "")
    rows = [[r["what"], f"{r['requests']:,}", f"{r['requests_per_second']:,.1f}",
             f"{100 * r['share_of_healthz']:.1f}%" if "share_of_healthz" in r else "",
             f"{r['p50_ms']:,.1f}", f"{r['p99_ms']:,.1f}",
             "; ".join(f"{status}: {count:,}" for status, count in r["status_counts"].items()), f"{r['5xx']:,}"]
            for r in results["results"]]
    memory = results["memory"]
    processes = f"{memory['processes']} process" + ("es" if memory["processes"] != 1 else "")
    verdicts = {True: "met", False: "**not met**", None: "not checked"}
    targets = [[row["what"], row["measured"], row["target"], verdicts[row["met"]]] for row in results["targets"]]
    return "\n\n".join([
        provenance(results) + f" Load from {results['generator']}; the server `{results['server']}`, and for the "
        f"Train tab's scenarios `{results['training_server']}`"
        + (f", RUN being {results['model']}" if "RUN" in results["server"] else "") + f".{quick}",
        markdown_table(["scenario", "requests", "requests/s", "of /healthz's", "p50 ms", "p99 ms", "answers", "5xx"],
                       rows),
        f"The server's resident memory ({processes}): {memory['before_mb']:,.0f} MB before the predict scenarios,"
        f" {memory['after_mb']:,.0f} MB after their {memory['requests']:,} requests. The load "
        f"generator used at most {max(r['generator_cpu_percent'] for r in results['results']):,.0f}% of a core.",
        markdown_table(["target", "measured", "goal", ""], targets)])


def transfer_section(results: dict) -> str:
    """benchmarks/transfer_uci.py's table: each size's mean test accuracy (and range over seeds) for
    training from random weights, the MNIST run as it is and fine-tuning it, then the targets."""
    def cell(values: list[float]) -> str:
        return f"{100 * sum(values) / len(values):.2f}% ({100 * min(values):.1f}-{100 * max(values):.1f})"

    rows = [[str(row["per_class"]), cell(row["random"]), cell(row["mnist"]), cell(row["fine_tuned"])]
            for row in results["transfer"]]
    seeds = len(results["transfer"][0]["random"])
    header = ["labelled photos a class", "(a) from random weights", "(b) the MNIST run as it is",
              "(c) fine-tuned from it"]
    return "\n\n".join([provenance(results) + f" Mean test accuracy over {seeds} seeds (their range).",
                         markdown_table(header, rows), targets_section(results).split("\n\n", 1)[1]])


def render(markdown: str, docs_dir: Path) -> str:
    def section(match: re.Match) -> str:
        if match[1] == "layers":
            return layers_table()
        results = json.loads((docs_dir / match[2]).read_text())
        sections = {"bench": bench_section, "inference": inference_section, "targets": targets_section,
                    "reliability": reliability_section, "serve": serve_section, "transfer": transfer_section}
        return sections[match[1]](results)

    return MARKER.sub(section, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:  # MkDocs' hook signature
    return render(markdown, Path(config["docs_dir"]))


def on_page_content(html: str, page, config, files) -> str:  # MkDocs' hook signature
    return SPHINX_ROLE.sub("<code>", html)
