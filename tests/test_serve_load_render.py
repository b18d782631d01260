"""The performance page's serving table (docs/hooks.py, ``<!-- serve: FILE -->``), rendered from a
small results file of benchmarks/serve_load.py's shape; and the benchmark's targets judged from
given figures. Nothing here measures or times anything."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from benchmarks.serve_load import check_targets

DOCS = Path(__file__).resolve().parents[1] / "docs"


def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks_serve", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scenario(name: str, what: str, requests: int, rps: float, p50: float, p99: float, statuses: dict, **more) -> dict:
    return {"scenario": name, "what": what, "requests": requests, "requests_per_second": rps, "p50_ms": p50,
            "p99_ms": p99, "status_counts": statuses, "5xx": sum(v for k, v in statuses.items() if int(k) >= 500),
            "socket_errors": 0, "generator_cpu_percent": 4.5 if name == "healthz" else 1.0, **more}


def results(quick: bool = False) -> dict:
    return {"date": "2026-12-06", "machine": "AMD EPYC, 2 cores, no GPU, torch 2.13.0+cpu",
            "command": "python benchmarks/serve_load.py --out docs/results/serve_load.json", "quick": quick,
            "generator": "wrk 4.1.0 with a Lua script, 16 keep-alive connections", "server": "cnnlab serve",
            "training_server": "cnnlab serve --workers 1",
            "results": [scenario("healthz", "GET /healthz (the HTTP floor)", 20000, 3000.0, 4.2, 9.5, {"200": 20000}),
                        scenario("digit28", "drawn digit, 28x28 PNG", 4000, 650.5, 12.3, 38.9, {"200": 4000},
                                 share_of_healthz=0.217),
                        scenario("mixed", "mix: photos, drawings, numbers, 5% malformed", 1500, 120.0, 80.0, 140.0,
                                 {"200": 1420, "400": 30, "415": 45, "503": 5}, share_of_healthz=0.04)],
            "memory": {"before_mb": 372.6, "after_mb": 380.1, "growth_mb": 7.5, "requests": 10000, "processes": 3},
            "targets": [{"what": "drawn 28x28: p99", "measured": "38.9 ms", "target": "<= 40 ms", "met": True},
                        {"what": "5xx answers and dropped connections", "measured": "5 and 0", "target": "none",
                         "met": False},
                        {"what": "server memory growth", "measured": "+7.5 MB after 900 requests",
                         "target": "<= +50 MB after 10,000", "met": None}]}


def render(tmp_path: Path, data: dict) -> str:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "serve_load.json").write_text(json.dumps(data))
    return load_hooks().render("# Serving\n\n<!-- serve: results/serve_load.json -->\n", tmp_path)


def test_the_serve_marker_becomes_a_table_of_scenarios_memory_and_targets(tmp_path):
    page = render(tmp_path, results())
    assert "<!--" not in page
    assert ("Measured on 2026-12-06 on AMD EPYC, 2 cores, no GPU, torch 2.13.0+cpu, by "
            "`python benchmarks/serve_load.py --out docs/results/serve_load.json`. Load from wrk 4.1.0 with a Lua "
            "script, 16 keep-alive connections; the server `cnnlab serve`, and for the Train tab's scenarios "
            "`cnnlab serve --workers 1`.") in page
    assert "| scenario | requests | requests/s | of /healthz's | p50 ms | p99 ms | answers | 5xx |" in page
    assert "| GET /healthz (the HTTP floor) | 20,000 | 3,000.0 |   | 4.2 | 9.5 | 200: 20,000 | 0 |" in page
    assert "| drawn digit, 28x28 PNG | 4,000 | 650.5 | 21.7% | 12.3 | 38.9 | 200: 4,000 | 0 |" in page
    assert ("| mix: photos, drawings, numbers, 5% malformed | 1,500 | 120.0 | 4.0% | 80.0 | 140.0 | "
            "200: 1,420; 400: 30; 415: 45; 503: 5 | 5 |") in page
    assert ("(3 processes): 373 MB before the predict scenarios, 380 MB after their 10,000 requests. The load "
            "generator used at most 4% of a core.") in page
    assert "| drawn 28x28: p99 | 38.9 ms | <= 40 ms | met |" in page
    assert "| 5xx answers and dropped connections | 5 and 0 | none | **not met** |" in page
    assert "| server memory growth | +7.5 MB after 900 requests | <= +50 MB after 10,000 | not checked |" in page
    assert "not a measurement" not in page


def test_a_quick_run_says_it_is_not_a_measurement(tmp_path):
    assert "A `--quick` run (small counts, on a busy machine), kept so that this page builds: not a measurement." in (
        render(tmp_path, results(quick=True)))


def test_the_benchmarks_targets_render_as_met_not_met_and_not_checked(tmp_path):
    """The rows the benchmark writes, judged from given figures, are what the table shows."""
    by_name = {"digit28": scenario("digit28", "", 4000, 700.0, 10.0, 45.0, {"200": 4000}),
               "canvas280": scenario("canvas280", "", 3000, 310.0, 30.0, 60.0, {"200": 3000}),
               "photo900": scenario("photo900", "", 1500, 150.0, 90.0, 120.0, {"200": 1499, "500": 1}),
               "idle": scenario("idle", "", 2000, 500.0, 20.0, 40.0, {"200": 2000}),
               "training": scenario("training", "", 2000, 400.0, 25.0, 59.0, {"200": 2000})}
    rows = check_targets(by_name, {"growth_mb": 12.0, "requests": 9_000})
    verdicts = {row["what"]: row["met"] for row in rows}
    assert verdicts == {"drawn 28x28: requests/s": True, "drawn 28x28: p99": False, "280x280 canvas: requests/s": True,
                        "900-px photo: requests/s": False, "900-px photo: p99": True,
                        "p99 while training, of idle's (--workers 1)": True,
                        "5xx answers and dropped connections": False, "server memory growth": None}
    page = render(tmp_path, {**results(), "targets": rows})
    assert "| p99 while training, of idle's (--workers 1) | 1.48x (59.0 / 40.0 ms) | <= 1.5x | met |" in page
    assert "| 5xx answers and dropped connections | 1 and 0 | none | **not met** |" in page
    assert "| server memory growth | +12.0 MB after 9,000 requests | <= +50 MB after 10,000 | not checked |" in page
