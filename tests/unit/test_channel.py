"""The JSON-lines channel between the agent and a load process (agent/drivers/channel.py):
lines split over many reads, several lines in one read, and a line beyond the limit refused."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from agent.drivers import channel as channel_module
from agent.drivers.channel import Channel, ChannelClosed


@pytest.fixture
def ends() -> Iterator[tuple[Channel, Channel]]:
    one, other = socket.socketpair()
    sender, receiver = Channel(one), Channel(other)
    yield sender, receiver
    sender.close()
    receiver.close()


def test_a_long_line_read_in_many_pieces_then_short_ones_arrive_whole(
        ends: tuple[Channel, Channel]) -> None:
    sender, receiver = ends
    long = "I" + "AQAAAA" * 500_000  # 3 MB: some 46 reads of 64 KiB
    writer = threading.Thread(target=lambda: [sender.send(m) for m in (
        {"type": "interval_counts", "counts": long}, {"type": "a"}, {"type": "b"})])
    writer.start()
    assert receiver.receive() == {"type": "interval_counts", "counts": long}
    assert receiver.receive() == {"type": "a"}
    assert receiver.receive() == {"type": "b"}
    writer.join()


def test_a_line_beyond_the_limit_closes_the_channel(ends: tuple[Channel, Channel],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    sender, receiver = ends
    monkeypatch.setattr(channel_module, "MAX_MESSAGE_BYTES", 100_000)

    def write() -> None:
        with contextlib.suppress(ChannelClosed):  # the reader gives up part way
            sender.send({"type": "x", "data": "y" * 300_000})

    writer = threading.Thread(target=write)
    writer.start()
    with pytest.raises(ChannelClosed, match="message too long"):
        receiver.receive()
    receiver.close()
    writer.join()
