//! A PB server in the test process: pbwire's broker as a listener, logging in
//! `alice`/`secret` and answering every call with `None`, that stops answering for
//! good (stalls) once the bytes it received after the login contain a given pattern.
#![allow(dead_code)]

use pbfuzz::profile::Profile;
use pbwire::broker::{Broker, BrokerConfig, Event, Side};
use pbwire::jelly::Value;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Starts the server on a free loopback port; it runs until the test's runtime ends.
pub async fn fake_target(stall_on: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, stall_on));
        }
    });
    addr
}

async fn serve(mut stream: TcpStream, stall_on: &'static [u8]) {
    let now = std::time::Instant::now();
    let entropy = |buf: &mut [u8]| {
        buf.fill(7);
        true
    };
    let mut broker = Broker::new(BrokerConfig::new(Side::Listener), now, entropy);
    let mut after_login = Vec::new();
    let mut logged_in = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some(out) = broker.poll_transmit() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
        }
        if broker.phase() == pbwire::broker::Phase::Closing {
            return;
        }
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if logged_in {
            after_login.extend_from_slice(&chunk[..n]);
            if !stall_on.is_empty() && after_login.windows(stall_on.len()).any(|w| w == stall_on) {
                // Read on, never answer.
                while let Ok(1..) = stream.read(&mut chunk).await {}
                return;
            }
        }
        broker.handle_input(&chunk[..n], std::time::Instant::now());
        while let Some(e) = broker.poll_event() {
            match e {
                Event::Login(attempt) if attempt.verify(b"secret") => {
                    logged_in = broker
                        .accept_login(attempt.id, std::time::Instant::now())
                        .is_ok();
                }
                Event::Login(attempt) => {
                    let _ = broker.refuse_login(
                        attempt.id,
                        pbwire::pb::failures::unauthorized("wrong password"),
                    );
                }
                Event::Call(call) if call.answer_required => {
                    let _ = broker.answer(call.request_id, Ok(Value::None));
                }
                _ => {}
            }
        }
    }
}

/// A profile for the fake target: alice's avatar, `echo()`.
pub fn profile(addr: SocketAddr) -> Profile {
    let text = format!("address = '{addr}'\nusername = 'alice'\npassword = 'secret'\ncall = {{ method = 'echo' }}\n");
    match Profile::parse(&text) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}
