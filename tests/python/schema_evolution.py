"""A Python data source of schema v1, compiled from the v1 runtime's `.proto`, streaming to
a Rust aggregator of v2 (tests/schema_evolution.rs).

Arguments: port, data and event fingerprints (hex), caller id, sample count. Stdin: the v1
data schema text, a line `---`, the v1 event schema text (what a Rust v1 Hello carries).
Prints `hello <their data type>` and `acked <seq>` when the aggregator acknowledged every
sample.
"""

import queue
import sys
import time

import grpc

import evolve_pb2
import evolve_pb2_grpc
from tsercom import caller_id_pb2, stream_pb2


def main():
    port, data_fp, event_fp, caller, n = sys.argv[1:6]
    n = int(n)
    data_desc, event_desc = sys.stdin.read().split("\n---\n")
    out = queue.Queue()
    out.put(
        evolve_pb2.SourceEnvelope(
            hello=stream_pb2.Hello(
                protocol_version=1,
                runtime="evolve",
                caller_id=caller_id_pb2.CallerId(id=caller),
                role=stream_pb2.ROLE_SOURCE,
                data_schema=int(data_fp, 16),
                event_schema=int(event_fp, 16),
                data_type="evolve.Reading",
                event_type="evolve.Command",
                incarnation=1,
                data_schema_desc=data_desc.encode(),
                event_schema_desc=event_desc.encode(),
            )
        )
    )

    def requests():
        while True:
            item = out.get(timeout=20)
            if item is None:
                return
            yield item

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        replies = evolve_pb2_grpc.StreamStub(channel).Open(requests(), timeout=20)
        theirs = next(replies)
        assert theirs.WhichOneof("kind") == "hello", theirs
        print("hello", theirs.hello.data_type, flush=True)
        first = next(replies)
        assert first.WhichOneof("kind") == "ack", first
        out.put(evolve_pb2.SourceEnvelope(ack=stream_pb2.Ack(seq=0)))
        now = time.time_ns()
        samples = [
            evolve_pb2.DataSample(
                seq=i + 1,
                time_ns=now + i,
                payload=evolve_pb2.Reading(celsius=i + 0.25, count=i),
            )
            for i in range(n)
        ]
        out.put(evolve_pb2.SourceEnvelope(frame=evolve_pb2.DataFrame(samples=samples)))
        for reply in replies:
            if reply.WhichOneof("kind") == "ack" and reply.ack.seq >= n:
                print("acked", reply.ack.seq, flush=True)
                break
        out.put(evolve_pb2.SourceEnvelope(goodbye=stream_pb2.Goodbye()))
        out.put(None)


if __name__ == "__main__":
    main()
