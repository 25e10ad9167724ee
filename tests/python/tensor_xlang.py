"""Cross-language check of tensor chunks: LZ4 frames and little-endian elements.

Reads one JSON object from stdin:
  {"chunks": [{"hex": ..., "dtype": ...}],   TensorChunk bytes written by Rust
   "tensors": [hex, ...],                     Rust `Tensor`s (TensorInitializer bytes)
   "make": [{"dtype", "start", "values", "lz4", "seconds", "nanos"}],
   "initializers": [{"dtype", "shape", "fill", "chunks": [make...]}]}
decodes Rust's messages with Python protobuf and `lz4.frame` (as the reference does), and
prints one JSON object: what it decoded, and the hex of the chunks and initializers it made
(compressed with `lz4.frame.compress`, as the reference's SerializableTensorChunk does) for
Rust to decode.
"""

import json
import struct
import sys

import lz4.frame

from tsercom import tensor_pb2

FORMATS = {
    "bool": "?",
    "float16": "e",
    "float32": "f",
    "float64": "d",
    "int8": "b",
    "uint8": "B",
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
}


def size(dtype):
    return 2 if dtype == "bfloat16" else struct.calcsize("<" + FORMATS[dtype])


def decode_values(dtype, raw):
    n = len(raw) // size(dtype)
    assert n * size(dtype) == len(raw), (dtype, len(raw))
    if dtype == "bfloat16":
        return [
            struct.unpack("<f", b"\x00\x00" + raw[2 * i : 2 * i + 2])[0]
            for i in range(n)
        ]
    values = list(struct.unpack("<%d%s" % (n, FORMATS[dtype]), raw))
    return [int(v) if dtype == "bool" else v for v in values]


def encode_values(dtype, values):
    if dtype == "bfloat16":
        return b"".join(struct.pack("<f", float(v))[2:] for v in values)
    if dtype == "bool":
        values = [bool(v) for v in values]
    elif not dtype.startswith("float"):
        values = [int(round(v)) for v in values]
    return struct.pack("<%d%s" % (len(values), FORMATS[dtype]), *values)


def chunk_data(chunk):
    if chunk.compression == tensor_pb2.LZ4:
        return lz4.frame.decompress(chunk.data_bytes)
    assert chunk.compression == tensor_pb2.NONE, chunk.compression
    return chunk.data_bytes


def make_chunk(spec):
    chunk = tensor_pb2.TensorChunk()
    chunk.timestamp.timestamp.seconds = spec["seconds"]
    chunk.timestamp.timestamp.nanos = spec["nanos"]
    chunk.starting_index = spec["start"]
    raw = encode_values(spec["dtype"], spec["values"])
    if spec["lz4"]:
        chunk.data_bytes = lz4.frame.compress(raw)
        chunk.compression = tensor_pb2.LZ4
    else:
        chunk.data_bytes = raw
    return chunk


def main():
    request = json.load(sys.stdin)
    out = {"chunks": [], "tensors": [], "made": [], "initializers": []}
    for item in request["chunks"]:
        chunk = tensor_pb2.TensorChunk.FromString(bytes.fromhex(item["hex"]))
        ts = chunk.timestamp.timestamp
        out["chunks"].append(
            {
                "seconds": ts.seconds,
                "nanos": ts.nanos,
                "start": chunk.starting_index,
                "compression": chunk.compression,
                "values": decode_values(item["dtype"], chunk_data(chunk)),
            }
        )
    for text in request["tensors"]:
        init = tensor_pb2.TensorInitializer.FromString(bytes.fromhex(text))
        n = 1
        for d in init.shape:
            n *= d
        raw = bytearray(encode_values(init.dtype, [init.fill_value] * n))
        width = size(init.dtype)
        for chunk in init.initial_state.chunks:
            data = chunk_data(chunk)
            at = chunk.starting_index * width
            raw[at : at + len(data)] = data
        out["tensors"].append(
            {
                "shape": list(init.shape),
                "dtype": init.dtype,
                "values": decode_values(init.dtype, bytes(raw)),
            }
        )
    for spec in request["make"]:
        out["made"].append(make_chunk(spec).SerializeToString().hex())
    for spec in request["initializers"]:
        init = tensor_pb2.TensorInitializer(
            shape=spec["shape"], dtype=spec["dtype"], fill_value=spec["fill"]
        )
        for c in spec["chunks"]:
            init.initial_state.chunks.append(make_chunk(c))
        out["initializers"].append(init.SerializeToString().hex())
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
