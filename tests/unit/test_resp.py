"""RESP encoding, error types and the request mix of the builtin driver (agent.drivers.resp)."""

from __future__ import annotations

from typing import Any

import hiredis
import pytest

from agent.drivers import resp
from agent.drivers.keyspace import Distribution, Keyspace
from agent.drivers.resp import RequestMix, auth_command, encode_command, error_type
from agent.drivers.templates import default_templates, make_value


def parse_all(payload: bytes) -> list[Any]:
    """Decode a RESP stream with hiredis: commands (arrays of bulk strings) or replies."""
    reader = hiredis.Reader()
    reader.feed(payload)
    commands = []
    while (command := reader.gets()) is not False:
        commands.append(command)
    return commands


def test_commands_are_arrays_of_bulk_strings() -> None:
    assert encode_command("GET", "key:1") == b"*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n"
    assert encode_command("SET", b"k", 12) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"
    assert encode_command("SET", "k", b"") == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
    binary = bytes(range(256)) + b"\r\n"
    assert parse_all(encode_command("SET", "k", binary)) == [[b"SET", b"k", binary]]


def test_auth_takes_a_username_only_with_a_password() -> None:
    assert auth_command(None, None) is None
    assert parse_all(auth_command(None, "s3cret") or b"") == [[b"AUTH", b"s3cret"]]
    assert parse_all(auth_command("bench", "s3cret") or b"") == [[b"AUTH", b"bench", b"s3cret"]]


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("WRONGTYPE Operation against a key holding the wrong kind of value", "WRONGTYPE"),
        ("OOM command not allowed when used memory > 'maxmemory'.", "OOM"),
        ("NOAUTH Authentication required.", "NOAUTH"),
        ("ERR unknown command 'FOO'", "ERR"),
        ("WRONGPASS invalid username-password pair or user is disabled.", "WRONGPASS"),
        ("LOADING Redis is loading the dataset in memory", "LOADING"),
        ("MOVED 3999 127.0.0.1:6381", "MOVED"),
        ("Error without a code", "ERROR"),
        ("", "ERR"),
        ("   ", "ERR"),
        ("42 is not a type", "ERR"),
        ("x" * 40 + " too long", "ERR"),
        ("ünïcode weird", "ERR"),
    ],
)
def test_an_error_reply_is_typed_by_its_first_word(message: str, kind: str) -> None:
    assert error_type(message) == kind


def test_error_types_of_real_hiredis_replies() -> None:
    reader = hiredis.Reader()
    reader.feed(b"-WRONGTYPE Operation against a key\r\n-ERR no\r\n")
    replies = [reader.gets(), reader.gets()]
    assert all(isinstance(reply, hiredis.ReplyError) for reply in replies)
    assert [error_type(str(reply)) for reply in replies] == ["WRONGTYPE", "ERR"]


def mix(**overrides: object) -> RequestMix:
    options: dict[str, object] = {
        "keyspace": 1000,
        "set_ratio": 0.25,
        "value_size": 16,
        "pipeline": 4,
        "seed": 7,
    }
    options.update(overrides)
    return RequestMix(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("keyspace", [1000, resp.POOL_MAX_REQUESTS])  # pooled, then refreshed
def test_batches_match_their_kinds_and_counts(keyspace: int) -> None:
    requests = mix(keyspace=keyspace)
    assert requests.pooled
    assert requests.refreshed == (keyspace != 1000)
    sets = total = 0
    keys = set()
    for _ in range(3000):
        batch = requests.next_batch()
        commands = parse_all(batch.payload)
        assert len(commands) == len(batch) == 4
        assert batch.counts == (batch.kinds.count(RequestMix.GET), batch.kinds.count(1))
        for command, kind in zip(commands, batch.kinds, strict=True):
            assert command[0] == requests.commands[kind].encode()
            assert command[1].startswith(b"key:")
            key = int(command[1][4:])
            assert 0 <= key < keyspace
            keys.add(key)
            if kind == RequestMix.SET:
                assert command[2] == make_value(16)
        sets += batch.counts[RequestMix.SET]
        total += len(batch)
    assert sets / total == pytest.approx(0.25, abs=0.03)
    if keyspace == 1000:
        assert len(keys) > 900  # uniform over the keyspace: nearly every key is drawn


def test_the_request_stream_is_deterministic_per_seed() -> None:
    one = mix()
    first = [one.next_batch().payload for _ in range(50)]
    again = mix()
    assert [again.next_batch().payload for _ in range(50)] == first
    other = mix(seed=8)
    assert [other.next_batch().payload for _ in range(50)] != first


def test_set_ratio_extremes() -> None:
    only_gets = mix(set_ratio=0.0)
    only_sets = mix(set_ratio=1.0)
    for _ in range(100):
        assert only_gets.next_batch().counts == (4, 0)
        assert only_sets.next_batch().counts == (0, 4)


def test_preload_batches_set_every_key_of_a_range_once() -> None:
    batches = list(mix().preload_batches(10, 2513, 1000))
    assert len(batches) == 3
    keys = []
    for payload in batches:
        for command in parse_all(payload):
            assert command[0] == b"SET"
            assert command[2] == make_value(16)
            keys.append(int(command[1][4:]))
    assert keys == list(range(10, 2513))


def test_values_have_the_asked_size() -> None:
    for size in (0, 1, 19, 20, 21, 1000):
        assert len(make_value(size)) == size


def test_an_impossible_mix_is_refused() -> None:
    for bad in ({"keyspace": 0}, {"pipeline": 0}, {"set_ratio": 1.5}, {"value_size": -1}):
        with pytest.raises(ValueError, match="invalid request mix"):
            mix(**bad)


def test_the_pool_is_walked_in_order_round_and_round() -> None:
    requests = mix(keyspace=1000)
    pool = list(requests._pool)
    walked = [requests.next_batch() for _ in range(2 * len(pool) + 3)]
    assert walked == pool + pool + pool[:3]
    assert all(a is b for a, b in zip(walked, pool + pool, strict=False))  # no copies


def test_a_refreshing_walk_renews_one_batch_in_refresh_every_and_the_whole_pool_in_as_many_rounds(
) -> None:
    every = resp.REFRESH_EVERY
    pool = [resp.Batch(b"old %d" % n, (0,), (1,)) for n in range(3 * every + 5)]
    fresh = iter(range(10**6))

    def encode() -> resp.Batch:
        return resp.Batch(b"new %d" % next(fresh), (0,), (1,))

    walk = resp.refreshing_walk(pool, encode)
    first_round = [next(walk) for _ in range(len(pool))]
    renewed = [n for n, batch in enumerate(first_round) if batch.payload.startswith(b"new")]
    assert renewed == list(range(0, len(pool), every))  # one in every, yielded as renewed
    assert first_round == pool  # the pool holds what was yielded
    for _ in range(every - 1):
        for _ in range(len(pool)):
            next(walk)
    assert all(batch.payload.startswith(b"new") for batch in pool)


def test_the_set_get_mix_is_formatted_as_its_templates_expand_it_for_any_keyspace() -> None:
    for keys in (Keyspace(50, "k%:"), Keyspace(10**7, distribution=Distribution("zipf", s=1.1))):
        fast = RequestMix(keyspace=keys, set_ratio=0.3, value_size=8, pipeline=3, seed=9)
        slow = RequestMix(keyspace=keys, set_ratio=0.3, value_size=8, pipeline=3, seed=9,
                          templates=default_templates(0.3))
        assert [fast.encode_batch() for _ in range(50)] == [slow.encode_batch() for _ in range(50)]


@pytest.mark.parametrize("value_size", [8, resp.EXPECTED_REPLIES_MAX_VALUE + 1])
@pytest.mark.parametrize("set_ratio", [0.0, 0.3, 1.0])
def test_the_pipeline_1_pool_is_the_batches_the_templates_give(set_ratio: float,
                                                                value_size: int) -> None:
    """At pipeline 1 the SET/GET mix shares each batch's shape between batches; its pool draws
    as the templates do, makes the same batches, and each expects its own reply."""
    keys = Keyspace(500, distribution=Distribution("zipf", s=1.1))
    built, encoded = (RequestMix(keyspace=keys, set_ratio=set_ratio, value_size=value_size,
                                 pipeline=1, seed=4, templates=templates)
                      for templates in (None, default_templates(set_ratio)))
    pool = [built.next_batch() for _ in range(300)]
    fresh = [encoded.next_batch() for _ in range(300)]
    assert pool == fresh
    value_arg = b"$%d\r\n%s\r\n" % (value_size, make_value(value_size))
    expect = value_size <= resp.EXPECTED_REPLIES_MAX_VALUE
    assert [b.replies for b in pool] == [
        resp.expected_replies(b.kinds, value_arg) if expect else None for b in pool]
    assert [(b.size, b.tally) for b in pool] == [(b.size, b.tally) for b in fresh]
    assert built.encode_batch() == encoded.encode_batch()  # the draws left in the same state


@pytest.mark.parametrize("keyspace", [1000, resp.POOL_MAX_REQUESTS])  # pooled, then refreshed
def test_a_set_get_batch_expects_ok_for_each_set_and_the_value_for_each_get(
    keyspace: int,
) -> None:
    requests = mix(keyspace=keyspace, pipeline=16, set_ratio=0.5, value_size=0 if keyspace
                   == 1000 else 40)  # fmt: skip
    value = make_value(0 if keyspace == 1000 else 40)
    for _ in range(200):
        batch = requests.next_batch()
        assert batch.replies is not None
        assert parse_all(batch.replies) == [
            b"OK" if kind == RequestMix.SET else value for kind in batch.kinds
        ]


def test_template_batches_expect_nothing() -> None:
    requests = mix(templates=default_templates(0.25))
    assert requests.next_batch().replies is None
    assert requests.encode_batch().replies is None


def test_batches_of_large_values_keep_no_expected_replies() -> None:
    """Each GET's expected reply copies the value: above the limit the pool would double."""
    limit = resp.EXPECTED_REPLIES_MAX_VALUE
    assert mix(value_size=limit, pipeline=8).next_batch().replies is not None
    assert mix(value_size=limit + 1, pipeline=8).next_batch().replies is None
