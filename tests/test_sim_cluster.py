"""bench/sim_cluster.py: the analytic model of `t12k run` on a cluster, checked against its own
discrete-event simulation, and how its bottleneck and makespan move with the GPU and the nodes."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from t12k.pipeline.fetch import pacing
from t12k.pipeline.run.config import RunConfig


def _load():
    path = Path(__file__).resolve().parents[1] / "bench" / "sim_cluster.py"
    spec = importlib.util.spec_from_file_location("sim_cluster", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["sim_cluster"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


sim = _load()


def _case(scenario: str, nodes: int, cores: int = 16, trailers: int = 12_000, **gpu):
    col = sim.Collection(trailers=trailers)
    costs = sim.Costs(download=sim.scenario(scenario, nodes, sim.DownloadCosts()), gpu=replace(sim.GpuCosts(), **gpu))
    return col, costs, sim.Cluster(nodes=nodes, cores=cores)


@pytest.mark.parametrize(
    ("scenario", "nodes", "cores", "bottleneck"),
    [
        ("youtube", 1, 16, "site limit"),
        ("youtube-tuned", 4, 16, "site limit"),
        ("mirror", 2, 16, "normalize cores"),
        ("mirror", 1, 64, "GPU"),
    ],
)
def test_the_analytic_model_and_the_event_simulation_agree(scenario, nodes, cores, bottleneck):
    col, costs, cluster = _case(scenario, nodes, cores, trailers=1500)
    p = sim.plan(col, costs, cluster)
    s = sim.simulate(col, costs, cluster)
    assert p.bottleneck == bottleneck
    assert s.makespan_h == pytest.approx(p.makespan_h, rel=0.05)
    assert s.gpu_busy == pytest.approx(p.gpu_busy, rel=0.08, abs=0.005)


def test_the_simulation_is_slower_where_two_download_limits_tie_and_the_table_names_both():
    # t12k's defaults: 2 download slots of ~10 s against one start every 5 s. The slots wait on
    # the clock, which the analytic bound cannot see; the simulation can.
    col, costs, cluster = _case("youtube", 4, trailers=1500)
    p = sim.plan(col, costs, cluster)
    s = sim.simulate(col, costs, cluster)
    assert sim.limit_label(p) == "download slots ≈ download pacing"
    assert 1.02 < s.makespan_h / p.makespan_h < 1.15


def test_a_short_ready_queue_starves_a_gpu_behind_long_normalizations():
    # The scheduler bounds the trailers waiting for the feature stage, not those being
    # normalized (18 s each): with many normalizing cores they start in waves, and the GPU
    # idles between them. The analytic bound cannot see it; the simulation does, and a longer
    # queue smooths it out.
    col, costs, cluster = _case("mirror", 1, cores=96, trailers=6000)
    assert sim.plan(col, costs, cluster).gpu_busy == pytest.approx(1.0)
    short = sim.simulate(col, costs, cluster)
    long = sim.simulate(col, costs, replace(cluster, queue=32))
    assert short.gpu_busy < 0.92
    assert long.gpu_busy > 0.97
    assert long.makespan_h < short.makespan_h


def test_doubling_the_gpu_speed_moves_the_bottleneck_off_the_gpu():
    col, costs, cluster = _case("mirror", 4, cores=64)
    before = sim.plan(col, costs, cluster)
    faster = replace(costs, gpu=replace(costs.gpu, speed=2.0))
    after = sim.plan(col, faster, cluster)
    assert before.bottleneck == "GPU" and before.gpu_busy == pytest.approx(1.0)
    assert after.bottleneck in ("normalize cores", "decode cores")
    assert after.makespan_h < before.makespan_h
    assert after.gpu_busy < 0.95
    # and the simulation sees the same move
    assert sim.simulate(col, faster, cluster).makespan_h < sim.simulate(col, costs, cluster).makespan_h


def test_makespan_scales_with_nodes_while_the_gpu_is_the_bottleneck():
    spans = {}
    for nodes in (1, 4, 16):
        p = sim.plan(*_case("mirror", nodes, cores=64, trailers=100_000))
        assert p.bottleneck == "GPU"
        spans[nodes] = p.makespan_h
    assert spans[1] / spans[4] == pytest.approx(4, rel=0.02)
    assert spans[1] / spans[16] == pytest.approx(16, rel=0.05)
    # checked by simulation on Trailers12k, start-up and drain included in both
    cases = {n: _case("mirror", n, cores=64) for n in (1, 4)}
    simulated = {n: sim.simulate(*c).makespan_h for n, c in cases.items()}
    analytic = {n: sim.plan(*c).makespan_h for n, c in cases.items()}
    assert simulated[1] / simulated[4] == pytest.approx(analytic[1] / analytic[4], rel=0.03)
    assert simulated[1] / simulated[4] > 3.7


def test_makespan_stops_scaling_when_downloads_are_the_bottleneck():
    # t12k's defaults pace downloads with one clock for the whole cluster, so nodes past the
    # first few add nothing; Trailers12k from one address takes 12,000 / 300 an hour = 40 h.
    spans = {}
    for nodes in (1, 4, 16):
        p = sim.plan(*_case("youtube", nodes))
        assert p.bottleneck in ("site limit", "download slots", "download pacing")
        spans[nodes] = p.makespan_h
    assert spans[1] == pytest.approx(40.0, rel=0.01)
    assert spans[16] == pytest.approx(spans[4], rel=1e-6)
    sims = {n: sim.simulate(*_case("youtube", n, trailers=600)).makespan_h for n in (4, 16)}
    assert sims[16] == pytest.approx(sims[4], rel=0.01)
    # with --sleep and --workers scaled to the nodes, each address reaches the site's limit
    tuned = sim.plan(*_case("youtube-tuned", 16))
    assert tuned.makespan_h == pytest.approx(12_000 / (300 * 16), rel=0.01)


def test_t12k_automatic_core_split_leaves_one_normalizing_core_per_16_core_node():
    # worker_count gives min(cores - 1, 16) decode workers on a GPU, and Ray's placement the
    # rest (at least 1) to normalizing: 1 core at 18 CPU s a trailer, under the site's 300 an hour.
    col, costs, cluster = _case("youtube", 1)
    auto = sim.plan(col, costs, replace(cluster, split="t12k"))
    balanced = sim.plan(col, costs, cluster)
    assert auto.split == (1, 15)
    assert auto.bottleneck == "normalize cores"
    assert auto.throughput * 3600 == pytest.approx(3600 / (0.149 * col.seconds), rel=1e-6)
    assert balanced.bottleneck == "site limit" and balanced.split[0] > 1


def test_inputs_follow_the_code_defaults_and_the_collection():
    costs = sim.Costs()
    assert costs.download.sleep == pacing.DEFAULT_SLEEP
    assert sim.Cluster().queue == RunConfig().queue and sim.Cluster().group == RunConfig().group
    col = sim.Collection()
    assert col.seconds * col.fps * col.trailers == pytest.approx(35_217_616, rel=1e-3)
    lengths = sim.lengths(col, 5000)
    assert min(lengths) >= col.shortest * 0.9 and max(lengths) <= col.longest * 1.1
    assert sum(lengths) / len(lengths) == pytest.approx(col.seconds)


def test_the_command_prints_a_table_with_a_row_per_case_and_the_pacing_warning(capsys):
    text = sim.main(
        ["--trailers", "300", "--nodes", "1", "2", "--scenario", "youtube", "mirror", "--sleep-requests", "0"]
    )
    assert text == capsys.readouterr().out.strip("\n")
    rows = [ln for ln in text.splitlines() if ln.startswith("| youtube") or ln.startswith("| mirror")]
    assert len(rows) == 4
    assert all(len(r.split("|")) == len(sim.HEADER.split("|")) for r in rows)
    assert "--sleep 5 lets 720 downloads an hour start, above the 300" in text
