"""Cross-language check of #[tsercom::runtime] (driven by tests/runtime_macro_python.rs).

The modules `xlang_rt_pb2` / `xlang_rt_pb2_grpc` are compiled by grpcio-tools from the
`.proto` text the macro emits.

  runtime_xlang.py client PORT   calls Latest and Warm on the Rust server at 127.0.0.1:PORT
                                 and prints one line per reply.
  runtime_xlang.py server        serves Station on 127.0.0.1 port 0, prints the port, and
                                 serves until stdin closes (at most 60 s).
  runtime_xlang.py envelope      reads an untyped tsercom.Envelope (Rust's encoding) on stdin,
                                 decodes it as the typed SourceEnvelope, prints its samples and
                                 writes (hex) a typed AggregatorEnvelope for Rust to decode.
  runtime_xlang.py goodbye       the same with a Goodbye: decodes Rust's untyped Goodbye
                                 envelope as the typed SourceEnvelope and answers with the
                                 typed AggregatorEnvelope's Goodbye.
"""

import sys
import threading
from concurrent import futures

import grpc

import xlang_rt_pb2 as pb
import xlang_rt_pb2_grpc as pb_grpc


def client(port):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = pb_grpc.StationStub(channel)
        r = stub.Latest(pb.Query(station="roof"), timeout=10)
        print(f"latest {r.station} {r.celsius}")
        readings = [pb.Reading(celsius=float(i), station=f"s{i}") for i in range(3)]
        for r in stub.Warm(iter(readings), timeout=10):
            print(f"warm {r.station} {r.celsius}")


class Station(pb_grpc.StationServicer):
    def Latest(self, request, context):
        return pb.Reading(celsius=len(request.station) * 1.5, station=request.station.upper())

    def Warm(self, request_iterator, context):
        for r in request_iterator:
            yield pb.Reading(celsius=r.celsius + 1.0, station=r.station.upper())


def server():
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_StationServicer_to_server(Station(), srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    print(port, flush=True)
    done = threading.Event()

    def wait_stdin():
        sys.stdin.read()
        done.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    done.wait(timeout=60)
    srv.stop(grace=1).wait()


def envelope():
    env = pb.SourceEnvelope()
    env.ParseFromString(sys.stdin.buffer.read())
    assert env.WhichOneof("kind") == "frame", env
    for smp in env.frame.samples:
        print(f"sample {smp.seq} {smp.time_ns} {smp.synchronized} {smp.payload.station} {smp.payload.celsius}")
    out = pb.AggregatorEnvelope()
    out.frame.samples.add(seq=7, time_ns=-5, synchronized=True)
    print(out.SerializeToString().hex())


def goodbye():
    env = pb.SourceEnvelope()
    env.ParseFromString(sys.stdin.buffer.read())
    assert env.WhichOneof("kind") == "goodbye", env
    print("goodbye")
    out = pb.AggregatorEnvelope()
    out.goodbye.SetInParent()
    assert out.WhichOneof("kind") == "goodbye"
    print(out.SerializeToString().hex())


if __name__ == "__main__":
    if sys.argv[1] == "envelope":
        envelope()
    elif sys.argv[1] == "goodbye":
        goodbye()
    elif sys.argv[1] == "client":
        client(int(sys.argv[2]))
    else:
        server()
