"""The SSE parser and the upstream chunk decoder, fed bytes split at every possible place."""

from __future__ import annotations

import orjson
import pytest

from bastion.errors import UpstreamError
from bastion.serving.protocols import SSEEvent, SSEParser, UpstreamChunkDecoder

STREAM = (
    b": keep-alive\n\n"
    b'data: {"n": 1}\n\n'
    b"event: message_start\r\n"
    b'data: {"n": 2}\r\n\r\n'
    b"data:first\n"
    b"data: second\n\n"
    b"event: ping\rdata: {}\r\r"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent(b'{"n": 1}'),
    SSEEvent(b'{"n": 2}', "message_start"),
    SSEEvent(b"first\nsecond"),
    SSEEvent(b"{}", "ping"),
    SSEEvent(b"[DONE]"),
]


def feed_in_pieces(data: bytes, cuts: list[int]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    start = 0
    for cut in [*cuts, len(data)]:
        events += parser.feed(data[start:cut])
        start = cut
    return events + parser.flush()


def test_whole_stream_at_once() -> None:
    assert feed_in_pieces(STREAM, []) == EXPECTED


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_every_single_split_point(cut: int) -> None:
    assert feed_in_pieces(STREAM, [cut]) == EXPECTED


def test_one_byte_at_a_time() -> None:
    assert feed_in_pieces(STREAM, list(range(1, len(STREAM)))) == EXPECTED


def test_crlf_split_between_cr_and_lf_does_not_end_the_event_early() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r") == []
    assert parser.feed(b"\n\r\n") == [SSEEvent(b"a\nb")]


def test_flush_dispatches_an_unterminated_last_event() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"last": true}') == []
    assert parser.flush() == [SSEEvent(b'{"last": true}')]


def test_decoder_yields_chunks_until_done() -> None:
    chunks = [
        {"id": "c", "choices": [{"index": 0, "delta": {"content": str(i)}}]} for i in range(3)
    ]
    raw = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
    raw += b'data: [DONE]\n\ndata: {"after": 1}\n\n'
    decoder = UpstreamChunkDecoder()
    out = []
    for i in range(0, len(raw), 5):
        out += decoder.feed(raw[i : i + 5])
    assert out == chunks
    assert decoder.done


def test_decoder_raises_on_upstream_errors() -> None:
    with pytest.raises(UpstreamError, match="context length exceeded"):
        UpstreamChunkDecoder().feed(b'data: {"error": {"message": "context length exceeded"}}\n\n')
    with pytest.raises(UpstreamError, match="not JSON"):
        UpstreamChunkDecoder().feed(b"data: {oops\n\n")
