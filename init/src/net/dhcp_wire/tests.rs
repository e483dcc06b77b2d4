//! Codec tests: round trips, RFC 3396 and overload, and an error (never a panic) for
//! every kind of malformed input.

use super::*;

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

/// A minimal valid reply with `options` bytes after the cookie (no END added).
fn raw(options: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN];
    b[..4].copy_from_slice(&[2, 1, 6, 0]);
    b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    b[16..20].copy_from_slice(&[10, 0, 2, 15]);
    b[28..34].copy_from_slice(&MAC);
    b[COOKIE..HEADER_LEN].copy_from_slice(&MAGIC_COOKIE);
    b.extend_from_slice(options);
    b
}

fn full() -> Message {
    let mut m = Message::request(0xdead_beef, Ipv4Addr::new(10, 0, 2, 15), &MAC);
    m.op = Opcode::BootReply;
    m.hops = 1;
    m.secs = 7;
    m.set_broadcast(true);
    m.yiaddr = Ipv4Addr::new(10, 0, 2, 16);
    m.siaddr = Ipv4Addr::new(10, 0, 2, 2);
    m.giaddr = Ipv4Addr::new(10, 0, 2, 1);
    m.sname[..4].copy_from_slice(b"boot");
    m.file[..5].copy_from_slice(b"pxelx");
    let o = &mut m.options;
    o.set_message_type(MessageType::Ack);
    o.set_server_id(Ipv4Addr::new(10, 0, 2, 2));
    o.set_requested_ip(Ipv4Addr::new(10, 0, 2, 16));
    o.set_client_id(vec![1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    o.set_parameter_request_list(&[1, 3, 6, 12, 15, 26, 42, 51, 58, 59]);
    o.set_hostname("guest");
    o.set_subnet_mask(Ipv4Addr::new(255, 255, 255, 0));
    o.set_routers(&[Ipv4Addr::new(10, 0, 2, 2)]);
    o.set_dns_servers(&[Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)]);
    o.set_domain_name("example.test");
    o.set_mtu(1400);
    o.set_ntp_servers(&[Ipv4Addr::new(10, 0, 2, 4)]);
    o.set_lease_time(3600);
    o.set_renewal_time(1800);
    o.set_rebinding_time(3150);
    o.set(224, vec![]); // unknown, empty: kept
    m
}

#[test]
fn round_trip_every_field_and_option() {
    let m = full();
    let bytes = m.encode();
    assert_eq!(&bytes[COOKIE..HEADER_LEN], &MAGIC_COOKIE);
    let back = Message::decode(&bytes).unwrap();
    assert_eq!(back, m);
    let o = &back.options;
    assert_eq!(o.message_type(), Some(MessageType::Ack));
    assert_eq!(o.server_id(), Some(Ipv4Addr::new(10, 0, 2, 2)));
    assert_eq!(o.requested_ip(), Some(Ipv4Addr::new(10, 0, 2, 16)));
    assert_eq!(
        o.client_id(),
        Some(&[1, 0x52, 0x54, 0, 0x12, 0x34, 0x56][..])
    );
    assert_eq!(o.parameter_request_list().map(<[u8]>::len), Some(10));
    assert_eq!(o.hostname(), Some("guest"));
    assert_eq!(o.subnet_mask(), Some(Ipv4Addr::new(255, 255, 255, 0)));
    assert_eq!(o.routers(), Some(vec![Ipv4Addr::new(10, 0, 2, 2)]));
    assert_eq!(o.dns_servers().map(|d| d.len()), Some(2));
    assert_eq!(o.domain_name(), Some("example.test"));
    assert_eq!(o.mtu(), Some(1400));
    assert_eq!(o.ntp_servers(), Some(vec![Ipv4Addr::new(10, 0, 2, 4)]));
    assert_eq!(o.lease_time(), Some(3600));
    assert_eq!(o.renewal_time(), Some(1800));
    assert_eq!(o.rebinding_time(), Some(3150));
    assert_eq!(o.get(224), Some(&[][..]));
    assert!(back.broadcast());
    assert_eq!(back.hardware_address(), MAC);
    // Order on the wire is insertion order.
    let codes: Vec<u8> = o.iter().map(|(c, _)| c).collect();
    assert_eq!(codes[..3], [53, 54, 50]);
}

#[test]
fn small_messages_end_and_are_padded_to_300_bytes() {
    let mut m = Message::request(1, Ipv4Addr::UNSPECIFIED, &MAC);
    m.options.set_message_type(MessageType::Discover);
    let b = m.encode();
    assert_eq!(b.len(), 300);
    assert_eq!(&b[HEADER_LEN..HEADER_LEN + 4], &[53, 1, 1, 255]);
    assert!(b[HEADER_LEN + 4..].iter().all(|x| *x == 0));
    assert!(!m.broadcast());
    m.set_broadcast(true);
    assert_eq!(m.flags, 0x8000);
    m.set_broadcast(false);
    assert_eq!(m.flags, 0);
}

#[test]
fn long_options_are_split_and_concatenated() {
    let mut m = Message::request(1, Ipv4Addr::UNSPECIFIED, &MAC);
    let name = "a".repeat(300);
    m.options.set_hostname(&name);
    let b = m.encode();
    assert_eq!(&b[HEADER_LEN..HEADER_LEN + 2], &[12, 255]);
    assert_eq!(&b[HEADER_LEN + 257..HEADER_LEN + 259], &[12, 45]);
    assert_eq!(
        Message::decode(&b).unwrap().options.hostname(),
        Some(&*name)
    );
    // Split by a server, with another option in between (RFC 3396 §7).
    let b = raw(&[3, 4, 10, 0, 0, 1, 53, 1, 5, 3, 4, 10, 0, 0, 2, 255]);
    let m = Message::decode(&b).unwrap();
    assert_eq!(
        m.options.routers(),
        Some(vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)])
    );
    let codes: Vec<u8> = m.options.iter().map(|(c, _)| c).collect();
    assert_eq!(codes, [3, 53]);
}

#[test]
fn pad_is_skipped_and_end_is_optional() {
    let m = Message::decode(&raw(&[0, 0, 53, 1, 2, 0])).unwrap();
    assert_eq!(m.options.message_type(), Some(MessageType::Offer));
    // Anything after END is ignored, even garbage.
    let m = Message::decode(&raw(&[53, 1, 2, 255, 3, 200])).unwrap();
    assert_eq!(m.options.iter().count(), 1);
    assert_eq!(m.op, Opcode::BootReply);
    assert_eq!(m.xid, 0x1234_5678);
    assert_eq!(m.yiaddr, Ipv4Addr::new(10, 0, 2, 15));
}

#[test]
fn overload_reads_file_then_sname() {
    let mut b = raw(&[52, 1, 3, 53, 1, 5, 255]);
    b[FILE..FILE + 6].copy_from_slice(&[54, 4, 10, 0, 2, 2]);
    b[FILE + 6] = 255;
    b[SNAME..SNAME + 7].copy_from_slice(&[15, 4, b'a', b'.', b'b', b'c', 255]);
    let m = Message::decode(&b).unwrap();
    assert_eq!(m.options.message_type(), Some(MessageType::Ack));
    assert_eq!(m.options.server_id(), Some(Ipv4Addr::new(10, 0, 2, 2)));
    assert_eq!(m.options.domain_name(), Some("a.bc"));
    assert_eq!(
        m.options.get(code::OVERLOAD),
        None,
        "consumed by the decoder"
    );
    let codes: Vec<u8> = m.options.iter().map(|(c, _)| c).collect();
    assert_eq!(codes, [53, 54, 15]);
    // Without option 52 the same sname and file are names, not options.
    let mut plain = b.clone();
    plain[HEADER_LEN..HEADER_LEN + 3].copy_from_slice(&[0, 0, 0]);
    let m = Message::decode(&plain).unwrap();
    assert_eq!(m.options.server_id(), None);
    // Only file (1): sname is not read.
    b[HEADER_LEN + 2] = 1;
    let m = Message::decode(&b).unwrap();
    assert_eq!(m.options.server_id(), Some(Ipv4Addr::new(10, 0, 2, 2)));
    assert_eq!(m.options.domain_name(), None);
    // An option in file may not run into the cookie.
    b[FILE..COOKIE].fill(code::PAD);
    b[COOKIE - 2..COOKIE].copy_from_slice(&[54, 4]);
    assert_eq!(
        Message::decode(&b),
        Err(DecodeError::PastEnd {
            code: 54,
            offset: COOKIE - 2,
            len: 4,
            end: COOKIE,
            field: Field::File
        })
    );
}

#[test]
fn truncated_header() {
    for len in [0, 1, 100, 236, 239] {
        let err = Message::decode(&raw(&[])[..len]).unwrap_err();
        assert_eq!(err, DecodeError::TruncatedHeader { len });
    }
    let msg = DecodeError::TruncatedHeader { len: 239 }.to_string();
    assert!(msg.contains("239 bytes"), "{msg}");
}

#[test]
fn bad_cookie_op_and_hlen() {
    let mut b = raw(&[255]);
    b[COOKIE] = 0;
    let err = Message::decode(&b).unwrap_err();
    assert_eq!(
        err,
        DecodeError::BadCookie {
            found: [0, 130, 83, 99]
        }
    );
    assert!(err.to_string().contains("offset 236"), "{err}");
    let mut b = raw(&[255]);
    b[0] = 3;
    assert_eq!(Message::decode(&b), Err(DecodeError::BadOpcode { op: 3 }));
    let mut b = raw(&[255]);
    b[2] = 17;
    assert_eq!(
        Message::decode(&b),
        Err(DecodeError::BadHardwareLength { hlen: 17 })
    );
}

#[test]
fn option_past_the_end() {
    let err = Message::decode(&raw(&[53, 1, 5, 6, 8, 1, 1, 1, 1])).unwrap_err();
    assert_eq!(
        err,
        DecodeError::PastEnd {
            code: 6,
            offset: 243,
            len: 8,
            end: 249,
            field: Field::Options
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("option 6 at offset 243") && text.contains("length 8"),
        "{text}"
    );
    assert_eq!(
        Message::decode(&raw(&[0, 53])),
        Err(DecodeError::MissingLength {
            code: 53,
            offset: 241,
            field: Field::Options
        })
    );
}

#[test]
fn wrong_length_for_fixed_size_options() {
    let cases: &[(&[u8], u8, usize, &str)] = &[
        (&[1, 3, 255, 255, 255], 1, 3, "4"),
        (&[53, 2, 1, 2], 53, 2, "1"),
        (&[26, 1, 5], 26, 1, "2"),
        (&[51, 0], 51, 0, "4"),
        (&[54, 5, 1, 2, 3, 4, 5], 54, 5, "4"),
        (&[3, 6, 1, 2, 3, 4, 5, 6], 3, 6, "a non-zero multiple of 4"),
        (&[6, 0], 6, 0, "a non-zero multiple of 4"),
        (&[42, 3, 1, 2, 3], 42, 3, "a non-zero multiple of 4"),
        (&[12, 0], 12, 0, "at least 1"),
        (&[61, 1, 1], 61, 1, "at least 2"),
        (&[55, 0], 55, 0, "at least 1"),
        // Two message types concatenate (RFC 3396) into one of length 2.
        (&[53, 1, 1, 53, 1, 3], 53, 2, "1"),
    ];
    for (opts, code, len, expected) in cases {
        match Message::decode(&raw(opts)) {
            Err(DecodeError::WrongLength {
                code: c,
                offset,
                len: l,
                expected: e,
                ..
            }) => {
                assert_eq!(
                    (c, offset, l, e),
                    (*code, HEADER_LEN, *len, *expected),
                    "{opts:?}"
                );
            }
            other => panic!("{opts:?}: {other:?}"),
        }
    }
    let text = Message::decode(&raw(&[0, 1, 3, 255, 255, 255]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        text,
        "option subnet mask (1) at offset 241: length 3, expected 4"
    );
    assert_eq!(
        Message::decode(&raw(&[52, 2, 1, 1])),
        Err(DecodeError::WrongLength {
            code: 52,
            name: "option overload",
            offset: 240,
            len: 2,
            expected: "1"
        })
    );
    assert_eq!(
        Message::decode(&raw(&[52, 1, 4])),
        Err(DecodeError::BadOverload {
            offset: 240,
            value: 4
        })
    );
}

#[test]
fn text_options_must_be_utf8_and_lose_trailing_nuls() {
    assert!(matches!(
        Message::decode(&raw(&[15, 2, 0xff, 0xfe])),
        Err(DecodeError::NotUtf8 {
            code: 15,
            offset: 240,
            ..
        })
    ));
    let m = Message::decode(&raw(&[12, 5, b'h', b'o', b's', b't', 0])).unwrap();
    assert_eq!(m.options.hostname(), Some("host"));
    // Unchecked options may hold anything, any length.
    let m = Message::decode(&raw(&[2, 3, 0xff, 0xff, 0xff, 119, 1, 0xff])).unwrap();
    assert_eq!(m.options.get(2), Some(&[0xff; 3][..]));
}

#[test]
fn unknown_message_types_read_as_none() {
    let m = Message::decode(&raw(&[53, 1, 13])).unwrap();
    assert_eq!(m.options.message_type(), None);
}

/// Every prefix and every single-byte corruption of a real message decodes or errs,
/// never panics.
#[test]
fn no_panics_on_truncation_or_corruption() {
    let mut b = full().encode();
    b.truncate(b.iter().rposition(|x| *x == 255).unwrap() + 1);
    for len in 0..=b.len() {
        let _ = Message::decode(&b[..len]);
    }
    for at in 0..b.len() {
        for v in [0, 1, 2, 52, 255, 0x80] {
            let mut c = b.clone();
            c[at] = v;
            let _ = Message::decode(&c);
        }
    }
    // Overloaded fields full of length bytes.
    let mut o = raw(&[52, 1, 3, 255]);
    o[SNAME..COOKIE].fill(7);
    assert!(Message::decode(&o).is_err());
}
