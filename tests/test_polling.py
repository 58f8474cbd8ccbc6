"""polling.readable: which connections can be read, as multiprocessing's wait."""

import socket
import threading
from multiprocessing.connection import Connection

import pytest

from parmagic.common.polling import readable


@pytest.fixture
def pair():
    ends = [Connection(end.detach()) for end in socket.socketpair()]
    yield ends
    for end in ends:
        end.close()


def test_nothing_to_read_is_nothing_after_the_timeout(pair):
    assert readable([pair[0]], 0) == []
    assert readable([pair[0]], 0.01) == []


def test_a_message_or_a_closed_end_is_readable(pair):
    mine, theirs = pair
    theirs.send_bytes(b"chunk")
    assert readable([mine], 0) == [mine]
    assert mine.recv_bytes() == b"chunk"
    theirs.close()
    assert readable([mine], None) == [mine]
    with pytest.raises(EOFError):
        mine.recv_bytes()


def test_without_a_timeout_it_waits_for_the_message(pair):
    mine, theirs = pair
    sent = threading.Timer(0.05, theirs.send_bytes, [b"late"])
    sent.start()
    try:
        assert readable([mine]) == [mine]
    finally:
        sent.join()
