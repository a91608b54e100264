"""A minimal HTTP/2 client (cleartext, prior knowledge) for the end-to-end tests: one request per
connection, with optional request trailers, built on the `h2` protocol library.

HTTP/2 is where a request body can end with trailers instead of an end-of-stream DATA frame (gRPC does
this), and Envoy then never marks the body complete: intentgate must finish reading on the trailers.
http.client cannot send either, so the tests use this. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Iterable

import h2.config
import h2.connection
import h2.events


@dataclass
class H2Response:
    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)  # names lower case, pseudo-headers left out
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    # The stream was reset rather than answered (RST_STREAM error code).
    reset: int | None = None

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n == name.lower()]
        assert len(values) <= 1, f"response header {name} appears {len(values)} times: {values}"
        return values[0] if values else None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def h2_request(
    port: int,
    method: str,
    path: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    trailers: Iterable[tuple[str, str]] = (),
    chunk_size: int = 16384,
    timeout_s: float = 15,
) -> H2Response:
    """One request over h2c to 127.0.0.1:`port`. With `trailers` the body is sent without
    END_STREAM and the trailers close the stream; without them, the last DATA frame does."""
    trailers = list(trailers)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    # frames go out as they are made (no Nagle delay between the body and the trailers)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    deadline = time.monotonic() + timeout_s
    response = H2Response()
    try:
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        stream_id = conn.get_next_available_stream_id()
        request_headers = [
            (":method", method),
            (":path", path),
            (":scheme", "http"),
            (":authority", f"127.0.0.1:{port}"),
            *[(n.lower(), v) for n, v in headers],
        ]
        end_with_headers = not body and not trailers
        conn.send_headers(stream_id, request_headers, end_stream=end_with_headers)
        sock.sendall(conn.data_to_send())

        pending = memoryview(body)
        sent_end = end_with_headers
        ended = False

        def handle(events) -> bool:
            """True once the response is complete (or the stream was reset)."""
            done = False
            for event in events:
                if isinstance(event, h2.events.ResponseReceived):
                    for name, value in event.headers:
                        name, value = _text(name), _text(value)
                        if name == ":status":
                            response.status = int(value)
                        elif not name.startswith(":"):
                            response.headers.append((name.lower(), value))
                elif isinstance(event, h2.events.DataReceived):
                    response.body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.TrailersReceived):
                    response.trailers = [(_text(n), _text(v)) for n, v in event.headers]
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    done = True
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream_id:
                    response.reset = event.error_code
                    done = True
                elif isinstance(event, h2.events.ConnectionTerminated):
                    done = True
            return done

        while not ended:
            # send what flow control allows
            while not sent_end and not ended:
                window = conn.local_flow_control_window(stream_id)
                if pending and window <= 0:
                    break
                if pending:
                    size = min(len(pending), window, chunk_size, conn.max_outbound_frame_size)
                    last = size == len(pending) and not trailers
                    conn.send_data(stream_id, pending[:size].tobytes(), end_stream=last)
                    pending = pending[size:]
                    sent_end = last
                elif trailers:
                    conn.send_headers(stream_id, trailers, end_stream=True)
                    sent_end = True
                else:
                    conn.end_stream(stream_id)
                    sent_end = True
                sock.sendall(conn.data_to_send())
            if time.monotonic() > deadline:
                raise TimeoutError(f"no complete HTTP/2 response in {timeout_s}s (status {response.status})")
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = sock.recv(65536)
            if not data:
                break
            ended = handle(conn.receive_data(data))
            outbound = conn.data_to_send()
            if outbound:
                sock.sendall(outbound)
        return response
    finally:
        try:
            conn.close_connection()
            sock.sendall(conn.data_to_send())
        except Exception:  # the peer may already have closed
            pass
        sock.close()
