"""The pure choice of an alternative: shares, stickiness, hashing, least_loaded, shadows."""

from __future__ import annotations

from collections import Counter

from router.config.alternatives import Alternatives
from router.config.branches import Branch, Strategy
from router.core.choose import LoadView, QueueLoad, Skip, digest, pick, sampled


def branches(*names: str) -> tuple[Branch, ...]:
    return tuple(Branch("ex", name, name) for name in names)


def weighted(*shares: float) -> Alternatives:
    names = tuple(f"b{i}" for i in range(len(shares)))
    return Alternatives(Strategy.WEIGHTED, branches(*names), shares)


def least_loaded(*names: str) -> Alternatives:
    bs = branches(*names)
    return Alternatives(Strategy.LEAST_LOADED, bs, (0.0,) * len(bs),
                        tuple(("ex", n) for n in names), tuple((f"q.{n}",) for n in names))


def ids(n: int) -> list[int]:
    return [digest(f"message-{i}".encode()) for i in range(n)]


def test_weighted_without_key_lands_within_a_few_percent_of_its_shares() -> None:
    """90/10 over 2,000 message ids: each branch within 3 points of its share."""
    choice = weighted(90, 10)

    taken = Counter(pick(choice, None, m).branch.name for m in ids(2000))

    assert abs(taken["b0"] / 2000 - 0.9) < 0.03
    assert abs(taken["b1"] / 2000 - 0.1) < 0.03


def test_weighted_with_a_key_always_takes_one_branch_for_that_key() -> None:
    """Every message of one customer takes the same branch, whatever its id."""
    choice = weighted(50, 50)
    key = digest(b"customer-7")

    taken = {pick(choice, key, m).branch.name for m in ids(200)}

    assert len(taken) == 1


def test_changing_shares_moves_only_the_keys_between_the_old_and_new_boundary() -> None:
    """From 90/10 to 80/20 only keys move from b0 to b1, about 10 % of them, none back."""
    keys = ids(2000)
    before = [pick(weighted(90, 10), k, 0).branch.name for k in keys]
    after = [pick(weighted(80, 20), k, 0).branch.name for k in keys]

    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]

    assert set(moved) == {("b0", "b1")}
    assert 0.07 < len(moved) / 2000 < 0.13


def test_a_zero_share_branch_takes_nothing() -> None:
    """A branch at 0 % (a canary switched off) gets no copy."""
    taken = {pick(weighted(100, 0), None, m).branch.name for m in ids(500)}

    assert taken == {"b0"}


def test_the_same_message_takes_the_same_branch_every_time() -> None:
    """No clock, no randomness: the decision is a function of its inputs."""
    choice = weighted(33.3, 33.3, 33.4)

    assert len({pick(choice, None, 12345).branch.name for _ in range(20)}) == 1


def test_hash_keeps_each_key_on_one_branch_and_spreads_keys() -> None:
    """Per key one branch; over many keys every branch gets some."""
    choice = Alternatives(Strategy.HASH, branches("a", "b", "c"), (100 / 3,) * 3)

    chosen = {k: pick(choice, k, 0).branch.name for k in ids(900)}
    again = {k: pick(choice, k, 99).branch.name for k in ids(900)}

    assert chosen == again
    assert all(150 < n < 450 for n in Counter(chosen.values()).values())


def test_hash_adding_a_branch_moves_only_keys_to_the_new_branch() -> None:
    """Rendezvous hashing: a fourth branch takes about a quarter of keys, others stay."""
    three = Alternatives(Strategy.HASH, branches("a", "b", "c"), (100 / 3,) * 3)
    four = Alternatives(Strategy.HASH, branches("a", "b", "c", "d"), (25.0,) * 4)

    moved = [(pick(three, k, 0).branch.name, pick(four, k, 0).branch.name) for k in ids(2000)]
    changed = [(old, new) for old, new in moved if old != new]

    assert {new for _, new in changed} == {"d"}
    assert 0.18 < len(changed) / 2000 < 0.32


def test_least_loaded_takes_the_branch_with_fewest_messages_per_consumer() -> None:
    """10 messages for 1 consumer beats 30 for 2."""
    view = LoadView({"q.a": QueueLoad(30, 2), "q.b": QueueLoad(10, 1)})

    assert pick(least_loaded("a", "b"), None, 1, view).branch.name == "b"


def test_least_loaded_skips_a_queue_without_consumer_and_says_why() -> None:
    """An empty queue nobody reads is passed by, named with the reason."""
    view = LoadView({"q.a": QueueLoad(0, 0), "q.b": QueueLoad(500, 1)})

    picked = pick(least_loaded("a", "b"), None, 1, view)

    assert picked.branch.name == "b"
    assert picked.skipped == (("a", Skip.NO_CONSUMER),)


def test_least_loaded_skips_a_missing_queue_and_an_open_breaker() -> None:
    """A queue that does not exist and a destination whose breaker is open are passed by."""
    view = LoadView({"q.a": None, "q.b": QueueLoad(0, 1), "q.c": QueueLoad(100, 1)},
                    {("ex", "b"): "3 consecutive publishes refused"})

    picked = pick(least_loaded("a", "b", "c"), None, 1, view)

    assert picked.branch.name == "c"
    assert dict(picked.skipped) == {"a": Skip.NO_QUEUE, "b": Skip.CIRCUIT_OPEN}


def test_least_loaded_without_fresh_figures_spreads_evenly() -> None:
    """No look at the queues (or only stale ones): the message id spreads copies."""
    taken = Counter(pick(least_loaded("a", "b"), None, m, LoadView()).branch.name
                    for m in ids(1000))

    assert 400 < taken["a"] < 600


def test_least_loaded_ties_are_spread_by_message_id() -> None:
    """Two equally loaded queues share the copies instead of one taking them all."""
    view = LoadView({"q.a": QueueLoad(5, 1), "q.b": QueueLoad(5, 1)})

    taken = Counter(pick(least_loaded("a", "b"), None, m, view).branch.name for m in ids(1000))

    assert 400 < taken["a"] < 600


def test_least_loaded_when_every_branch_is_unavailable_still_picks_one() -> None:
    """No branch can take it: one is picked anyway (its breaker or queue holds the copy)."""
    view = LoadView({"q.a": QueueLoad(0, 0), "q.b": None})

    picked = pick(least_loaded("a", "b"), None, 1, view)

    assert picked.branch.name in {"a", "b"}
    assert len(picked.skipped) == 2


def test_a_shadow_share_samples_that_share_of_messages() -> None:
    """A 25 % shadow gets about a quarter of the messages; no share means all."""
    messages = ids(2000)

    share = sum(sampled(25.0, m, "next") for m in messages) / 2000

    assert 0.22 < share < 0.28
    assert all(sampled(None, m, "next") for m in messages[:50])
