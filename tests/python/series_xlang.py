"""Cross-language check of #[tsercom::series] (driven by tests/series_python.rs).

argv: RUST_BYTES_IN PYTHON_BYTES_OUT. Builds the value `sample()` in tests/series_python.rs
builds, checks that Rust's encoding decodes to it, and writes Python's own encoding.
"""

import sys

from google.protobuf import descriptor_pb2

import xlang_pb2 as x


def sample():
    m = x.Everything()
    m.f64_ = 1.5
    m.f32_ = -2.25
    m.i32_ = -7
    m.i64_ = -(1 << 40)
    m.u32_ = 4_000_000_000
    m.u64_ = (1 << 64) - 1
    m.flag = True
    m.text = "héllo wörld"
    m.blob = bytes([0, 1, 2, 255])
    m.shared = b"shared"
    m.s32 = -3
    m.s64 = -(1 << 63)
    m.fx32 = 0xDEADBEEF
    m.fx64 = 1 << 60
    m.sfx32 = -42
    m.sfx64 = -(1 << 50)
    m.opt_f = 0.0
    m.opt_s = ""
    m.packed.extend([1.0, -2.0, 3.5])
    m.ints.extend([-1, 0, 1, (1 << 63) - 1])
    m.strs.extend(["a", "", "c"])
    m.map_s["x"] = 1.0
    m.map_s["y"] = 0.0
    m.map_i[-5].label = "minus five"
    m.map_i[-5].delta = -5
    m.map_i[0].SetInParent()
    m.inner.label = "in"
    m.inner.delta = 12
    m.opt_inner.SetInParent()
    for label, delta in [("a", 1), ("b", -1)]:
        i = m.inners.add()
        i.label = label
        i.delta = delta
    m.at.seconds = 1_700_000_000
    m.at.nanos = 123_456_789
    m.opt_at.seconds = -2
    m.opt_at.nanos = 500_000_000
    m.who.id = "0b5e3c6a-8f2d-4f7e-9c1b-2a3d4e5f6a7b"
    m.mode = x.MODE_FAST
    m.modes.extend([x.MODE_OFF, x.MODE_SLOW, x.MODE_FAST])
    m.renamed_field = 77
    m.cmd.calibrate.SetInParent()
    c = m.cmds.add()
    c.set_rate.hz = 10
    c.set_rate.label = "ten"
    m.cmds.add().set_rate.SetInParent()
    m.cmds.add().calibrate.SetInParent()
    m.cmds.add().rename = ""
    m.cmds.add().rename = "r"
    c = m.cmds.add()
    c.target.label = "t"
    c.target.delta = 3
    m.cmds.add().new_mode = x.MODE_OFF
    m.cmds.add().new_mode = x.MODE_FAST
    return m


def main():
    rust_in, python_out = sys.argv[1], sys.argv[2]
    expected = sample()
    got = x.Everything()
    with open(rust_in, "rb") as f:
        got.ParseFromString(f.read())
    if got != expected:
        print("Rust bytes decode to a different value", file=sys.stderr)
        print("got:\n" + str(got), file=sys.stderr)
        print("expected:\n" + str(expected), file=sys.stderr)
        sys.exit(1)
    # Presence, checked field by field (== already covers it; this names what failed).
    assert got.HasField("opt_f") and not got.HasField("opt_none") and got.HasField("opt_s")
    assert [c.WhichOneof("value") for c in got.cmds] == [
        "set_rate", "set_rate", "calibrate", "rename", "rename", "target", "new_mode", "new_mode",
    ]
    # Reserved numbers and names are in the schema.
    fdp = descriptor_pb2.FileDescriptorProto()
    x.DESCRIPTOR.CopyToProto(fdp)
    (everything,) = [m for m in fdp.message_type if m.name == "Everything"]
    assert list(everything.reserved_name) == ["old", "older"], everything.reserved_name
    # DescriptorProto ranges are end-exclusive.
    assert [(r.start, r.end) for r in everything.reserved_range] == [(20, 21), (30, 33)]
    with open(python_out, "wb") as f:
        f.write(expected.SerializeToString())
    print("ok")


if __name__ == "__main__":
    main()
