//! The pcid client against a fake pcid on the other end of a Unix socketpair: framing, partial
//! reads, the length limit, error responses and unexpected variants, each a clear error.
#![cfg(all(unix, not(loom)))]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;

use displayd::platform::pcid::*;

/// A fake pcid: reads one request, then answers with what `answer` writes (in as many pieces as
/// it likes). Returns the request bytes it got.
fn fake_pcid(
    answer: impl FnOnce(&mut UnixStream, PcidClientRequest) + Send + 'static,
) -> (UnixStream, thread::JoinHandle<Vec<u8>>) {
    let (client, mut server) = UnixStream::pair().unwrap();
    let handle = thread::spawn(move || {
        let mut request = vec![0u8; 256];
        let n = server.read(&mut request).unwrap();
        request.truncate(n);
        answer(&mut server, bincode::deserialize(&request).unwrap());
        request
    });
    (client, handle)
}

fn framed(response: &PcidClientResponse) -> Vec<u8> {
    let body = bincode::serialize(response).unwrap();
    [(body.len() as u64).to_le_bytes().to_vec(), body].concat()
}

fn config() -> SubdriverArguments {
    let none = PciBar::None;
    SubdriverArguments {
        func: PciFunction {
            addr: PciAddress { segment: 0, bus: 0, device: 2, function: 0 },
            bars: [
                PciBar::Memory32 { addr: 0xfd00_0000, size: 16 << 20 },
                none,
                PciBar::Memory32 { addr: 0xfebd_4000, size: 4096 },
                none,
                none,
                none,
            ],
            rom: None,
            legacy_interrupt_line: None,
            full_device_id: FullDeviceId {
                vendor_id: 0x1234,
                device_id: 0x1111,
                class: 3,
                subclass: 0x80,
                interface: 0,
                revision: 2,
            },
        },
    }
}

#[test]
fn a_config_request_is_one_write_and_a_response_split_into_pieces_is_reassembled() {
    let (channel, pcid) = fake_pcid(|server, request| {
        assert_eq!(request, PcidClientRequest::RequestConfig);
        for piece in framed(&PcidClientResponse::Config(config())).chunks(3) {
            server.write_all(piece).unwrap();
            server.flush().unwrap();
        }
    });
    let mut client = PcidClient::new(channel);
    assert_eq!(client.config().unwrap(), config());
    assert_eq!(pcid.join().unwrap(), [1, 0, 0, 0], "RequestConfig's exact bytes, in one write");
}

#[test]
fn an_oversized_length_is_refused_before_reading_the_body() {
    let (channel, pcid) = fake_pcid(|server, _| server.write_all(&(MAX_RESPONSE + 1).to_le_bytes()).unwrap());
    let error = PcidClient::new(channel).config().unwrap_err();
    assert!(matches!(error, PcidError::TooLong(n) if n == MAX_RESPONSE + 1), "{error}");
    pcid.join().unwrap();
}

#[test]
fn server_errors_unexpected_variants_and_garbage_are_errors() {
    let refusal = PcidClientResponse::Error(PcidServerResponseError::InvalidBitPattern);
    let (channel, pcid) = fake_pcid(move |server, _| server.write_all(&framed(&refusal)).unwrap());
    let error = PcidClient::new(channel).read_config(0x10).unwrap_err();
    assert!(matches!(error, PcidError::Server(PcidServerResponseError::InvalidBitPattern)), "{error}");
    pcid.join().unwrap();

    let (channel, pcid) =
        fake_pcid(|server, _| server.write_all(&framed(&PcidClientResponse::WriteConfig)).unwrap());
    let error = PcidClient::new(channel).config().unwrap_err();
    assert!(matches!(error, PcidError::Unexpected(_)), "{error}");
    pcid.join().unwrap();

    let (channel, pcid) =
        fake_pcid(|server, _| server.write_all(&[4, 0, 0, 0, 0, 0, 0, 0, 99, 0, 0, 0]).unwrap());
    let error = PcidClient::new(channel).config().unwrap_err();
    assert!(matches!(error, PcidError::Decode(_)), "{error}");
    pcid.join().unwrap();

    let (channel, pcid) = fake_pcid(|_, _| {}); // pcid hangs up without answering
    assert!(matches!(PcidClient::new(channel).config().unwrap_err(), PcidError::Io(_)));
    pcid.join().unwrap();
}

#[test]
fn config_offsets_that_would_crash_pcid_are_never_sent() {
    let (channel, mut other_end) = UnixStream::pair().unwrap();
    let mut client = PcidClient::new(channel);
    for offset in [0x11, 0x1000, 0xffff] {
        assert!(matches!(client.read_config(offset), Err(PcidError::BadConfigOffset(o)) if o == offset));
        assert!(matches!(client.write_config(offset, 1), Err(PcidError::BadConfigOffset(_))));
    }
    other_end.set_nonblocking(true).unwrap();
    assert!(other_end.read(&mut [0u8; 16]).is_err(), "nothing reached pcid");
}

#[test]
fn read_and_write_config_round_trip() {
    let (channel, pcid) = fake_pcid(|server, request| {
        assert_eq!(request, PcidClientRequest::ReadConfig(0x10));
        server.write_all(&framed(&PcidClientResponse::ReadConfig(0xfd00_0008))).unwrap();
    });
    assert_eq!(PcidClient::new(channel).read_config(0x10).unwrap(), 0xfd00_0008);
    assert_eq!(pcid.join().unwrap(), [7, 0, 0, 0, 0x10, 0]);
}
