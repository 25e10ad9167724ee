"""Cross-language check of the reference-compatible wire messages.

Reads lines `<message> <hex of Rust's encoding> <expected values...>` from stdin, checks
that Python's protobuf decodes Rust's bytes to the expected values, and prints
`<message> <hex of Python's encoding of the same values>` for Rust to decode.
"""

import sys

from tsercom import caller_id_pb2, tensor_pb2, time_pb2


def server_timestamp(seconds, nanos):
    msg = time_pb2.ServerTimestamp()
    msg.timestamp.seconds = seconds
    msg.timestamp.nanos = nanos
    return msg


def main():
    for line in sys.stdin.read().splitlines():
        name, data, *values = line.split(" ")
        data = bytes.fromhex(data)
        if name == "caller_id":
            got = caller_id_pb2.CallerId.FromString(data)
            assert got.id == values[0], (got.id, values)
            mine = caller_id_pb2.CallerId(id=values[0])
        elif name == "server_timestamp":
            seconds, nanos = int(values[0]), int(values[1])
            got = time_pb2.ServerTimestamp.FromString(data)
            assert (got.timestamp.seconds, got.timestamp.nanos) == (seconds, nanos), got
            mine = server_timestamp(seconds, nanos)
        elif name == "tensor_chunk":
            seconds, nanos, start = int(values[0]), int(values[1]), int(values[2])
            payload = bytes.fromhex(values[3])
            compression = int(values[4])
            got = tensor_pb2.TensorChunk.FromString(data)
            assert got.timestamp.timestamp.seconds == seconds, got
            assert got.timestamp.timestamp.nanos == nanos, got
            assert got.starting_index == start, got
            assert got.data_bytes == payload, got
            assert got.compression == compression, got
            assert tensor_pb2.CompressionType.Name(compression) in ("NONE", "LZ4")
            mine = tensor_pb2.TensorChunk(
                timestamp=server_timestamp(seconds, nanos),
                starting_index=start,
                data_bytes=payload,
                compression=compression,
            )
        else:
            raise SystemExit(f"unknown message {name}")
        print(name, mine.SerializeToString().hex())


if __name__ == "__main__":
    main()
