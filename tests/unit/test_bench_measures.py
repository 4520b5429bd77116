"""The benchmark's arithmetic: percentiles, the warm-up, late load, which part is the limit."""

from __future__ import annotations

from bench.latency import Latency, Round, gap
from bench.loadgen import percentile, summary
from bench.scaling import ScalingResult, bound, limit, saturation
from bench.throughput import turn

SECOND = 1_000_000_000


def test_percentiles_are_nearest_rank() -> None:
    """Of 1..1000 ns: p50 is 500, p99 990, p99.9 999; no samples give 0."""
    ordered = list(range(1, 1001))

    ranks = [percentile(ordered, q) for q in (0.5, 0.99, 0.999)]

    assert ranks == [500, 990, 999]
    assert percentile([], 0.99) == 0


def test_the_warm_up_second_is_not_timed() -> None:
    """Messages sent before the warm-up ends are left out; arrivals count per second after it."""
    warm = 10 * SECOND
    early = [(warm - SECOND // 2, warm + 400_000_000)]  # 900 ms: a cold start
    timed = [(warm + i * SECOND // 100, warm + i * SECOND // 100 + 2_000_000) for i in range(200)]

    out = summary(early + timed, sent=201, warm_ns=warm, seconds=2.0, late=0.0)

    assert (out["received"], out["measured"]) == (201, 200)
    assert out["p99"] == 2.0  # ms: the cold start is not in it
    assert out["rate"] == 100.5  # the early message arrived in the window too


def _latency(late: float = 0.0, rate: float = 500.0) -> Latency:
    return Latency(target=500.0, sent=3000, received=3000, measured=2500, p50=2.0, p99=5.0,
                   p999=9.0, late=late, rate=rate)


def test_a_row_whose_load_fell_behind_says_so() -> None:
    """Sent 6 % behind schedule: the note says the rate was not kept; 4 % passes."""
    assert "LOADGEN FELL BEHIND" in _latency(late=0.06).note()
    assert "FELL BEHIND" not in _latency(late=0.04).note()


def test_a_row_whose_path_did_not_keep_up_says_so() -> None:
    """Sent on time but 400 of 500 msg/s arrived: the latency is a queue's, and it says so."""
    assert "NOT KEPT UP" in _latency(rate=400.0).note()
    assert "NOT KEPT UP" not in _latency(rate=490.0).note()


def test_the_broker_is_the_limit_when_it_uses_what_is_left() -> None:
    """2 cores, router 1.0, others 0.1: a broker at 0.85 of the 0.9 left is the limit."""
    s = ScalingResult(2, 1500.0, broker_cores=0.85, router_cores=1.0, machine_cores=1.95,
                      cpus=2)

    assert bound(s) == "broker"
    assert limit(s).startswith("limit: the broker, saturated: beam.smp 0.85 of the 0.90 cores")


def test_the_router_is_the_limit_when_its_worker_uses_a_core() -> None:
    """One worker at 0.97 of a core, the broker with room: the router is the limit."""
    s = ScalingResult(1, 900.0, broker_cores=0.5, router_cores=0.97, machine_cores=1.5, cpus=2)

    assert bound(s) == "router"


def test_a_full_machine_shared_with_others_tells_nothing_about_the_broker() -> None:
    """The cores full, 1.0 of them with other processes: the limit is theirs, not the broker's."""
    one = ScalingResult(1, 573.0, broker_cores=0.6, router_cores=0.38, machine_cores=1.99,
                        cpus=2)
    two = ScalingResult(2, 1286.0, broker_cores=0.5, router_cores=0.75, machine_cores=1.98,
                        cpus=2)

    assert (bound(one), bound(two)) == ("shared", "shared")
    assert saturation([one, two]).startswith("where the broker saturates cannot be told")


def test_saturation_names_the_first_worker_count_that_saturates_the_broker() -> None:
    """Room at 1 worker, the broker saturated at 2: it saturates at 2 workers."""
    one = ScalingResult(1, 900.0, broker_cores=0.5, router_cores=0.6, machine_cores=1.2, cpus=2)
    two = ScalingResult(2, 1500.0, broker_cores=0.85, router_cores=1.0, machine_cores=1.95,
                        cpus=2)

    assert bound(one) == "neither"
    assert saturation([one, two]).startswith("the broker saturates at 2 workers")
    assert "did not saturate" in saturation([one])


def test_rounds_pool_every_timed_message_and_gap_pairs_rounds() -> None:
    """Two rounds pooled: percentiles over both; the gap is per round, median and range."""
    ms = 1_000_000
    base = Latency.pooled(100.0, [Round(100, 100, [2 * ms] * 99 + [10 * ms], 0.0, 100.0),
                                  Round(100, 100, [2 * ms] * 99 + [40 * ms], 0.0, 100.0)])
    row = Latency.pooled(100.0, [Round(100, 100, [3 * ms] * 100, 0.01, 99.0),
                                 Round(100, 100, [3 * ms] * 99 + [45 * ms], 0.02, 98.0)])

    assert (base.sent, base.measured, base.p50, base.p999) == (200, 200, 2.0, 40.0)
    assert base.round_p99s == (2.0, 2.0)
    assert (row.late, row.rate) == (0.02, 98.0)  # the worst round's
    assert gap(row, base) == (1.0, 1.0, 1.0)


def test_rows_take_turns_round_by_round() -> None:
    """Each round begins one row further on, wrapping around."""
    rows = ["a", "b", "c"]

    assert [turn(rows, n) for n in range(4)] == [  # type: ignore[arg-type]  # any list turns
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]


def test_one_stalled_round_does_not_move_the_row_p99_and_is_named() -> None:
    """Five rounds, one with a 1.5 s stall: p99 is the median round's; the note names it."""
    ms = 1_000_000
    calm = [Round(100, 100, [2 * ms] * 98 + [5 * ms] * 2, 0.0, 100.0) for _ in range(4)]
    stalled = Round(100, 100, [2 * ms] * 90 + [1500 * ms] * 10, 0.0, 100.0)

    lat = Latency.pooled(100.0, [*calm, stalled])

    assert lat.round_p99 == 5.0
    assert "one round's p99 was 1500 ms" in lat.note()
    assert "one round" not in Latency.pooled(100.0, calm).note()
