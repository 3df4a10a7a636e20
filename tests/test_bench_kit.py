"""The benchmark kit (ffnet.engine.bench): interleaved timer, MAC/parameter/memory counters, flags, result files."""
import argparse
import csv

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ffnet.engine.bench import BenchmarkResult, add_bench_arguments, count_macs, count_parameters, figure, \
    peak_memory_bytes, setup_bench, time_interleaved, write_result
from ffnet.engine.errors import UserError


class FakeClock:
    """A clock that only the fake workloads move: every call of an entry advances it by that entry's next cost."""

    def __init__(self):
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def entry(self, name: str, costs: list[float]):
        costs = iter(costs)

        def call():
            self.calls.append(name)
            self.now += next(costs)
        return call


def test_rounds_rotate_the_order_and_report_median_and_spread_exactly():
    clock = FakeClock()
    entries = {"a": clock.entry("a", [9.0, 1.0, 2.0, 4.0]),  # the first cost is the warm-up call's
               "b": clock.entry("b", [9.0, 3.0, 3.0, 3.0]),
               "c": clock.entry("c", [9.0, 5.0, 6.0, 10.0])}
    timings = time_interleaved(entries, rounds=3, warmup=1, clock=clock)
    assert clock.calls == ["a", "b", "c",  # warm-up
                           "a", "b", "c", "b", "c", "a", "c", "a", "b"]  # each round starts one entry later
    assert list(timings) == ["a", "b", "c"]
    assert timings["a"].seconds == [1.0, 2.0, 4.0]  # one figure per round, each entry's own calls in order
    assert timings["a"].median == 2.0 and timings["a"].best == 1.0 and timings["a"].spread == pytest.approx(1.5)
    assert timings["b"].spread == 0.0
    assert timings["c"].seconds == [5.0, 6.0, 10.0] and timings["c"].spread == pytest.approx(5 / 6)


def test_a_measurement_repeats_calls_for_the_time_budget_and_keeps_the_median_call():
    clock = FakeClock()
    timings = time_interleaved({"x": clock.entry("x", [1.0, 3.0, 2.0, 7.0])}, rounds=1, warmup=0, seconds=5.0,
                               clock=clock)
    assert clock.calls == ["x"] * 3  # 1 + 3 < 5 <= 1 + 3 + 2
    assert timings["x"].seconds == [2.0]
    clock = FakeClock()
    timings = time_interleaved({"x": clock.entry("x", [1.0, 3.0, 2.0, 7.0])}, rounds=1, warmup=0, seconds=5.0,
                               iterations=4, clock=clock)
    assert clock.calls == ["x"] * 4 and timings["x"].seconds == [2.5]
    with pytest.raises(ValueError, match="rounds"):
        time_interleaved({"x": lambda: None}, rounds=0)


def test_parameter_and_mac_counts_of_known_layers():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    model = nn.Sequential(conv, nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    assert count_parameters(conv) == 3 * 8 * 9 + 8
    assert count_parameters(model) == 224 + 8 * 16 * 16 * 10 + 10
    assert count_parameters(model, exclude=("2.",)) == 224
    x = torch.randn(1, 3, 16, 16)
    assert count_macs(conv, x) == 8 * 16 * 16 * 3 * 9  # 55,296: one per output element and kernel tap
    assert count_macs(model, x) == 55296 + 8 * 16 * 16 * 10
    # a callable (part of a model's graph) is counted with the module that owns its weights
    assert count_macs(lambda inputs: conv(inputs)[:, :4], x, owner=conv) == 55296


class Attention(nn.Module):
    def __init__(self, fused: bool):
        super().__init__()
        self.fused = fused

    def forward(self, q, k, v):
        if self.fused:
            return F.scaled_dot_product_attention(q, k, v)
        return (q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5).softmax(-1) @ v


def test_fused_attention_counts_as_its_two_matmuls():
    q, k, v = torch.randn(1, 2, 4, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 16)
    expected = 1 * 2 * 4 * 6 * (8 + 16)  # q kᵀ: B·H·Lq·Lk·D, then attention · v: B·H·Lq·Lk·Dv
    assert count_macs(Attention(fused=False), (q, k, v)) == expected
    assert count_macs(Attention(fused=True), (q, k, v)) == expected


def test_peak_memory_counts_what_is_alive_at_once_on_cpu():
    def work():
        a = torch.zeros(1000)  # 4,000 bytes
        b = torch.zeros(500)  # 2,000 bytes while a is alive
        del a, b
        c = torch.zeros(1200)  # 4,800 bytes after both are freed
        return c.sum()

    assert peak_memory_bytes(work, "cpu") == 6000
    weights = torch.zeros(10_000)
    assert peak_memory_bytes(lambda: weights.sum(), "cpu") == 4  # what existed before the call is not counted


def parse(*argv: str, **defaults) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser, **defaults)
    return parser.parse_args(list(argv))


def test_common_flags_defaults_and_old_spellings():
    args = parse(rounds=1, threads=1, batch_sizes=(1, 16))
    assert (args.rounds, args.warmup, args.seconds_per_measure, args.threads, args.device, args.batch_sizes) == (
        1, 1, 0.0, 1, None, [1, 16])
    assert not hasattr(parse(), "batch_sizes")  # only domains with batch sizes take --batch-sizes
    for old in ("--repeats", "--runs", "--latency-runs"):
        assert parse(old, "5").rounds == 5
    assert parse("--devices", "cpu").device == ["cpu"] and parse("--device", "cpu", "cuda").device == ["cpu", "cuda"]
    assert setup_bench(parse("--device", "cpu")) == ["cpu"]
    assert setup_bench(parse()) == (["cuda"] if torch.cuda.is_available() else ["cpu"])


def test_common_flags_refuse_bad_values_with_one_line():
    with pytest.raises(UserError, match="--rounds must be >= 1"):
        setup_bench(parse("--rounds", "0"))
    with pytest.raises(UserError, match="--batch-sizes must be >= 1"):
        setup_bench(parse("--batch-sizes", "0", batch_sizes=(1,)))
    with pytest.raises(UserError, match="--device tpu: not a torch device"):
        setup_bench(parse("--device", "tpu"))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--device cuda: CUDA is not available here"):
            setup_bench(parse("--device", "cuda"))


def test_write_result_writes_markdown_csv_and_plot(tmp_path, capsys):
    def plot(path):
        with figure(path, 1, 2) as (fig, axes):
            assert axes.shape == (1, 2)
            axes[0][0].bar(["a", "b"], [1.0, 2.0])

    rows = [{"model": "a", "ms": 1.5}, {"model": "b", "ms": 2.25}]
    more = BenchmarkResult(name="toy_more", title="Second table", rows=[{"n": 1}])
    result = BenchmarkResult(name="toy", title="Toy table", rows=rows, notes=["One note."], plot=plot, also=[more])
    md = write_result(result, tmp_path / "out")
    assert md == tmp_path / "out" / "toy.md"
    text = md.read_text()
    assert text.startswith("# Toy table\n\n| model   |   ms |\n|---------|------|\n| a       | 1.5  |\n")
    assert "- One note.\n" in text and text.endswith("![Toy table](toy.png)\n")
    assert list(csv.DictReader(open(tmp_path / "out" / "toy.csv"))) == [{"model": "a", "ms": "1.5"},
                                                                          {"model": "b", "ms": "2.25"}]
    assert (tmp_path / "out" / "toy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out" / "toy_more.csv").read_bytes() == b"n\r\n1\r\n"  # tables of the same run, beside it
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [  # and no temporaries
        "toy.csv", "toy.md", "toy.png", "toy_more.csv", "toy_more.md"]
    assert capsys.readouterr().out.startswith(text)  # the tables are also printed
    with pytest.raises(ValueError, match="produced no rows"):
        write_result(BenchmarkResult(name="empty", title="", rows=[]), tmp_path)
