//! Round trips of every wire message through prost encoding.

use prost::Message;
use tsercom_runtime::wire::*;

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(msg: M) {
    let bytes = msg.encode_to_vec();
    let back = M::decode(bytes.as_slice()).unwrap();
    assert_eq!(back, msg);
}

fn ts(seconds: i64, nanos: i32) -> Option<ServerTimestamp> {
    Some(ServerTimestamp {
        timestamp: Some(prost_types::Timestamp { seconds, nanos }),
    })
}

#[test]
fn reference_messages_round_trip() {
    let id = CallerId {
        id: "1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b".into(),
    };
    round_trip(id.clone());
    round_trip(GetIdRequest {});
    round_trip(GetIdResponse { id: Some(id) });
    round_trip(ServerTimestamp {
        timestamp: Some(prost_types::Timestamp {
            seconds: -5,
            nanos: 7,
        }),
    });
    round_trip(TestConnectionCall {});
    round_trip(TestConnectionResponse {});
    let chunk = TensorChunk {
        timestamp: ts(1_700_000_000, 5),
        starting_index: 42,
        data_bytes: vec![1, 2, 3, 4],
        compression: CompressionType::Lz4 as i32,
    };
    round_trip(chunk.clone());
    let update = TensorUpdate {
        chunks: vec![chunk.clone(), chunk],
    };
    round_trip(update.clone());
    round_trip(TensorInitializer {
        shape: vec![2, 3, 4],
        dtype: "float32".into(),
        fill_value: 0.5,
        initial_state: Some(update),
    });
}

#[test]
fn stream_messages_round_trip() {
    let envelopes = vec![
        envelope::Kind::Hello(Hello {
            protocol_version: tsercom_runtime::wire::PROTOCOL_VERSION,
            runtime: "weather".into(),
            caller_id: Some(CallerId {
                id: "1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b".into(),
            }),
            role: Role::Source as i32,
            data_schema: u64::MAX,
            event_schema: 1,
            data_type: "weather.Reading".into(),
            event_type: "weather.Command".into(),
            max_frame_bytes: 4 << 20,
            incarnation: 7,
            idle_timeout_ms: 1500,
            delivery: tsercom_runtime::wire::Delivery::BestEffort as i32,
            ack_every_samples: 1 << 18,
            ack_every_bytes: 16 << 20,
            data_schema_desc: b"package weather;\nmessage Reading {\n}\n".to_vec(),
            event_schema_desc: Vec::new(),
            public_key: vec![7; 32],
            nonce: vec![8; 32],
            proof: vec![9; 64],
        }),
        envelope::Kind::Proof(tsercom_runtime::wire::Proof {
            signature: vec![1; 64],
        }),
        envelope::Kind::Frame(Frame {
            samples: vec![
                Sample {
                    seq: 1,
                    time_ns: -3,
                    payload: bytes::Bytes::from_static(b"\x08\x01"),
                    synchronized: true,
                },
                Sample {
                    seq: 2,
                    time_ns: i64::MAX,
                    payload: bytes::Bytes::new(),
                    synchronized: false,
                },
            ],
        }),
        envelope::Kind::Ack(Ack { seq: 99 }),
        envelope::Kind::Gap(Gap {
            first_seq: 3,
            last_seq: 9,
            first_time_ns: 10,
            last_time_ns: 20,
        }),
        envelope::Kind::TimeProbe(TimeProbe {
            id: 1,
            origin_ns: 5,
            estimated: true,
            offset_ns: -250_000_000,
            uncertainty_ns: 12_000,
            round_trip_ns: 80_000,
            drift_ppm: 99.5,
        }),
        envelope::Kind::Goodbye(Goodbye::default()),
        envelope::Kind::TimeReply(TimeReply {
            id: 1,
            origin_ns: 5,
            receive_ns: 6,
            transmit_ns: 7,
        }),
    ];
    for kind in envelopes {
        round_trip(Envelope { kind: Some(kind) });
    }
}

#[test]
fn reference_field_numbers_are_kept() {
    // TensorChunk{timestamp=1, starting_index=2, data_bytes=3, compression=4}: check the
    // exact bytes so a renumbering can never pass unnoticed.
    let chunk = TensorChunk {
        timestamp: None,
        starting_index: 1,
        data_bytes: vec![0xAB],
        compression: 1,
    };
    assert_eq!(
        chunk.encode_to_vec(),
        vec![0x10, 0x01, 0x1a, 0x01, 0xAB, 0x20, 0x01]
    );
    let id = CallerId { id: "a".into() };
    assert_eq!(id.encode_to_vec(), vec![0x0a, 0x01, b'a']);
}
