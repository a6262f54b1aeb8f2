"""Smoke test of the planner benchmark: ``--quick`` runs and writes what the README quotes.

No timing assertions (the numbers are noisy on a shared machine); only that every number
the README and the picture use is there and sane.
"""

from __future__ import annotations

import pytest
from helpers.bench import finite_positive, run_quick

OURS = ("ours_mppi", "ours_mppi_with_prediction", "ours_random", "ours_cem_1", "ours_cem_5",
        "ours_gradient")
PEERS = {"pytorch_mppi": "pytorch_mppi", "torchrl_mppi": "torchrl"}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_quick("bench_planner.py", tmp_path_factory.mktemp("bench") / "planner.json",
                     "planner.png")


def test_result_has_provenance_and_peer_status(result: dict) -> None:
    for key in ("date", "machine", "command", "fairness", "config", "planner_descriptions"):
        assert result[key], key
    assert finite_positive(result["matmul_peak_gflops"])
    assert result["cuda"] == "not available" or isinstance(result["cuda"], dict)
    for status in (result["torchrl"], *result["peers"].values()):
        assert status["status"] in ("ok", "failed")
        if status["status"] == "failed":
            assert status["reason"]


def test_points_cover_baoding_size_and_scaling(result: dict) -> None:
    points = {(p["N"], p["H"], p["device"]): p["planners"] for p in result["points"]}
    assert {(700, 7, "cpu"), (4096, 7, "cpu"), (700, 30, "cpu")} <= set(points)
    assert set(OURS) <= set(points[(700, 7, "cpu")])
    for (_, _, device), planners in points.items():
        assert "ours_mppi" in planners
        for peer, status_key in PEERS.items():
            assert (peer in planners) == (result["peers"][status_key]["status"] == "ok")
        for name, stats in planners.items():
            for key in ("p50_ms", "p99_ms", "gflop", "gflops", "us_per_sample_step"):
                assert finite_positive(stats[key]), (name, key, stats[key])
            assert stats["p99_ms"] >= stats["p50_ms"], name
            if device == "cpu":
                assert 0 < stats["efficiency"] <= 1.5, (name, stats["efficiency"])


def test_ratios_and_headline(result: dict) -> None:
    head = result["headline"]
    assert (head["N"], head["H"], head["threads"]) == (700, 7, 1)
    for name in (*OURS, *PEERS):
        if name in PEERS and result["peers"][PEERS[name]]["status"] != "ok":
            assert head[f"{name}_p50_ms"] is None
            continue
        assert finite_positive(head[f"{name}_p50_ms"]), name
        assert head[f"{name}_p99_ms"] >= head[f"{name}_p50_ms"], name
    for prefix in ("", "n4096_", "h30_"):
        assert finite_positive(head[f"{prefix}ours_mppi_p50_ms"] if prefix
                               else head["ours_mppi_p50_ms"])
        for peer, status_key in PEERS.items():
            if result["peers"][status_key]["status"] == "ok":
                assert finite_positive(head[f"{prefix}speedup_vs_{peer}"])
    main = result["ratios"]["N700_H7_cpu"]
    for peer, ratio in main.items():
        assert finite_positive(ratio["p50"]) and finite_positive(ratio["p99"]), peer
    assert 0 < head["ours_mppi_efficiency"] <= 1.5
